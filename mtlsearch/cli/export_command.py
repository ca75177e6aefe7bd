"""``mtlsearch export``: a trained trial of a study out as a folder of plain data."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mtlsearch.cli.options import default_storage, storage_options
from mtlsearch.errors import MTLSearchError

AddParser = Callable[[str, str, str], argparse.ArgumentParser]


def add_export(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare ``mtlsearch export``."""
    p = add("export", "Export a trained trial (weights, architecture, pictures, ONNX); "
                      "the best trial unless --trial or --pareto says otherwise.",
            "  mtlsearch export --out best-model            # the best trial\n"
            "  mtlsearch export --study s1 --storage journal:runs/study.log --trial 4 --out m4 --onnx\n"
            "  mtlsearch export --pareto 1 --out smaller-model")
    storage_options(p)
    which = p.add_mutually_exclusive_group()  # none given: the best trial
    which.add_argument("--trial", type=int, help="trial number")
    which.add_argument("--best", action="store_true",
                       help="the best validation Δ_MTL (the default when neither --trial "
                            "nor --pareto is given)")
    which.add_argument("--pareto", type=int, metavar="K",
                       help="entry K (from 0) of the Pareto front as `mtlsearch show` lists it")
    p.add_argument("--out", required=True, metavar="FOLDER", help="export folder")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx")
    p.add_argument("--search-out", default=None, metavar="DIR",
                   help="the search's --out (kept weights); default: as recorded")
    p.add_argument("--artifact-store", default=None, metavar="STORE",
                   help="where the trials' weights were uploaded: a folder, s3://BUCKET or "
                        "gs://BUCKET (default: the store the study recorded, then "
                        "SEARCH_OUT/artifacts)")
    p.add_argument("--no-retrain", action="store_true",
                   help="fail instead of retraining a trial whose kept weights are not found")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from mtlsearch.study import best_trial, export_trial, open_study, pareto_front

    study = open_study(default_storage(args), args.study)
    which: int | str = "best"  # --best, or nothing said
    if args.pareto is not None:
        front = pareto_front(study)
        if not 0 <= args.pareto < len(front):
            raise MTLSearchError(f"the Pareto front of {study.study_name!r} has {len(front)} "
                                 f"entries (0..{len(front) - 1}); --pareto {args.pareto} is outside")
        which = front[args.pareto]["number"]
    elif args.trial is not None:
        which = args.trial
    best = which == "best"
    if best:
        which = best_trial(study).number
    folder = export_trial(study, which, args.out, out=args.search_out, onnx=args.onnx,
                          artifact_store=args.artifact_store, retrain=not args.no_retrain)
    print(f"exported trial {which}{' (the best)' if best else ''} of {study.study_name} "
          f"to {folder}")
    return 0
