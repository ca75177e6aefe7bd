"""``mtlsearch predict``: an exported model's predictions for new inputs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

AddParser = Callable[[str, str, str], argparse.ArgumentParser]


def add_predict(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare ``mtlsearch predict``."""
    p = add("predict",
            "Predict every task for new inputs (a folder of images, a CSV/Parquet table or an "
            ".npz), prepared as the training inputs were.",
            "  mtlsearch predict best-model --input new_images/ --output preds.csv\n"
            "  mtlsearch predict best-model --input new.csv --output preds.parquet\n"
            "  mtlsearch predict best-model --input new.npz --output preds.npz")
    p.add_argument("folder", help="an exported model folder")
    p.add_argument("--input", required=True,
                   help="a folder of images, a .csv/.tsv/.parquet table, or an .npz of inputs")
    p.add_argument("--output", required=True,
                   help=".csv, .tsv or .parquet: a table, one row per input with the per-task "
                        "predictions and probabilities; .npz: one array per task")
    p.add_argument("--input-key", default="X", help=".npz input: the array holding the inputs "
                                                    "(default X)")
    p.add_argument("--file-column", default=None, metavar="COLUMN",
                   help="table input for an image model: the column of image file names "
                        "(default: detected)")
    p.add_argument("--image-root", default=None, metavar="DIR",
                   help="where the table's image files are (default: the table's folder)")
    p.add_argument("--input-columns", default=None, metavar="A,B,...",
                   help="table input for a table model: the input columns, when the export "
                        "does not record them")
    p.add_argument("--on-bad-image", choices=("fail", "skip"), default="fail",
                   help="an unreadable image: stop with its name (default) or leave it out "
                        "(counted)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="default 256")
    p.add_argument("--device", default="cpu", help="default cpu")
    p.add_argument("--picture", default=None, metavar="PATH",
                   help="dense models: draw inputs and predicted maps to PATH.png and PATH.svg "
                        "(arrays of the input file named like a task are drawn as ground truth)")
    p.add_argument("--picture-samples", type=int, default=4, metavar="N",
                   help="rows of the picture: the first N inputs (default 4)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from mtlsearch.export.predict_files import predict_files
    from mtlsearch.tasks.names import display_name

    columns = [c.strip() for c in args.input_columns.split(",")] if args.input_columns else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict_files(args.folder, args.input, args.output, input_key=args.input_key,
                               file_column=args.file_column, image_root=args.image_root,
                               input_columns=columns, on_bad_image=args.on_bad_image,
                               batch_size=args.batch_size, device=args.device,
                               picture=args.picture, picture_samples=args.picture_samples)
    for w in caught:
        if not str(w.message).startswith("left out"):  # said below, with the count
            print(f"mtlsearch: warning: {w.message}", file=sys.stderr)
    path = result.path
    if path.suffix.lower() == ".npz":
        import numpy as np

        with np.load(path) as data:
            shapes = {k: data[k].shape for k in data.files}
        print(f"wrote {path}: "
              + ", ".join(f"{display_name(k)} {tuple(v)}" for k, v in shapes.items()))
    else:
        shown = ", ".join(display_name(c) for c in result.columns[:12])
        more = f" and {len(result.columns) - 12} more" if len(result.columns) > 12 else ""
        print(f"wrote {path}: {result.rows} rows; columns {shown}{more}")
    if result.skipped:
        print(f"left out {len(result.skipped)} unreadable image(s): "
              + "; ".join(result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else ""))
    if args.picture:
        stem = Path(args.picture).with_suffix("") if Path(args.picture).suffix.lower() in (
            ".png", ".svg", ".pdf") else Path(args.picture)
        print(f"wrote {stem}.png and {stem}.svg")
    return 0
