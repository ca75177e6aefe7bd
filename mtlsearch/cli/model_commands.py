"""``mtlsearch export`` and ``mtlsearch predict``: a trained trial out, predictions in."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtlsearch.cli.options import default_storage, storage_options
from mtlsearch.errors import MTLSearchError

AddParser = Callable[[str, str, str], argparse.ArgumentParser]


def add_export(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare ``mtlsearch export``."""
    p = add("export", "Export a trained trial (weights, architecture, pictures, ONNX).",
            "  mtlsearch export --best --out best-model\n"
            "  mtlsearch export --study s1 --storage journal:runs/study.log --trial 4 --out m4 --onnx\n"
            "  mtlsearch export --pareto 1 --out smaller-model")
    storage_options(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="trial number")
    which.add_argument("--best", action="store_true", help="the best validation Δ_MTL")
    which.add_argument("--pareto", type=int, metavar="K",
                       help="entry K (from 0) of the Pareto front as `mtlsearch show` lists it")
    p.add_argument("--out", required=True, metavar="FOLDER", help="export folder")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx")
    p.add_argument("--search-out", default=None, metavar="DIR",
                   help="the search's --out (kept weights); default: as recorded")
    p.set_defaults(func=cmd_export)


def add_predict(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare ``mtlsearch predict``."""
    p = add("predict", "Predict every task for the inputs of an .npz file.",
            "  mtlsearch predict best-model --input new.npz --output preds.npz")
    p.add_argument("folder", help="an exported model folder")
    p.add_argument("--input", required=True, help=".npz file with the inputs")
    p.add_argument("--output", required=True, help=".npz file to write (one array per task)")
    p.add_argument("--input-key", default="X", help="array holding the inputs (default X)")
    p.add_argument("--device", default="cpu", help="default cpu")
    p.add_argument("--picture", default=None, metavar="PATH",
                   help="dense models: draw inputs and predicted maps to PATH.png and PATH.svg "
                        "(arrays of the input file named like a task are drawn as ground truth)")
    p.add_argument("--picture-samples", type=int, default=4, metavar="N",
                   help="rows of the picture: the first N inputs (default 4)")
    p.set_defaults(func=cmd_predict)


def cmd_export(args: argparse.Namespace) -> int:
    from mtlsearch.study import best_trial, export_trial, open_study, pareto_front

    study = open_study(default_storage(args), args.study)
    if args.best:
        which: int | str = "best"
    elif args.pareto is not None:
        front = pareto_front(study)
        if not 0 <= args.pareto < len(front):
            raise MTLSearchError(f"the Pareto front of {study.study_name!r} has {len(front)} "
                                 f"entries (0..{len(front) - 1}); --pareto {args.pareto} is outside")
        which = front[args.pareto]["number"]
    else:
        which = args.trial
    if which == "best":
        which = best_trial(study).number
    folder = export_trial(study, which, args.out, out=args.search_out, onnx=args.onnx)
    print(f"exported trial {which} of {study.study_name} to {folder}")
    return 0




def cmd_predict(args: argparse.Namespace) -> int:
    from mtlsearch import export
    from mtlsearch.tasks.names import display_name

    path = export.predict_npz(args.folder, args.input, args.output, input_key=args.input_key,
                              device=args.device, picture=args.picture,
                              picture_samples=args.picture_samples)
    import numpy as np

    with np.load(path) as data:
        shapes = {k: data[k].shape for k in data.files}
    print(f"wrote {path}: " + ", ".join(f"{display_name(k)} {tuple(v)}" for k, v in shapes.items()))
    if args.picture:
        stem = Path(args.picture).with_suffix("") if Path(args.picture).suffix.lower() in (
            ".png", ".svg", ".pdf") else Path(args.picture)
        print(f"wrote {stem}.png and {stem}.svg")
    return 0


