"""``mtlsearch predict``: an exported model's predictions for new inputs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

AddParser = Callable[[str, str, str], argparse.ArgumentParser]


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
