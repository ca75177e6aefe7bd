"""``folder:DIR``: a folder of images and a label table (one row per file, a column per task).

The CelebA layout: ``DIR/000001.jpg ...`` and ``DIR/labels.csv`` with a file-name column and
one column per attribute. Any format PIL reads; the size comes from the data (all images the
same size) or ``image_size=``. Images stay ``uint8`` until the batch: in memory for small
folders, read from disk by DataLoader workers for large ones (``streaming="auto"``: when the
float32 inputs would exceed :data:`~mtlsearch.data.streaming.STREAMING_THRESHOLD_BYTES`).

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> rows = ["image,smiling"]
    >>> for i in range(30):
    ...     Image.fromarray(np.full((8, 8, 3), i * 8, np.uint8)).save(root / f"{i}.png")
    ...     rows.append(f"{i}.png,{i % 2}")
    >>> _ = (root / "labels.csv").write_text("\\n".join(rows))
    >>> splits = load_folder(root)
    >>> splits.input_shape, splits.task_names
    ((3, 8, 8), ['smiling'])
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlsearch.data.builtin._common import check_fractions, check_seed
from mtlsearch.data.dataset import MultiTaskDataset
from mtlsearch.data.preprocess import IMAGE_SUFFIXES, Preprocessing
from mtlsearch.data.sources._build import make_splits, name_list
from mtlsearch.data.sources.infer import infer_tasks
from mtlsearch.data.sources.table import _column_values, missing_columns_error, read_table
from mtlsearch.data.streaming import (
    ImageFileSource,
    LoaderOptions,
    StreamingDataset,
    TensorSource,
    decode_image,
    should_stream,
)
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.names import check_task_names

__all__ = ["load_folder", "FILE_COLUMNS"]

log = logging.getLogger(__name__)

#: Column names taken as the file-name column (any case), in this order of preference.
FILE_COLUMNS = ("file", "filename", "file_name", "image", "image_id", "image_name", "img",
                "path", "filepath", "file_path")
_GREY = ("1", "L", "I", "I;16", "F", "LA")
_EXAMPLES = 5


def _labels_path(folder: Path, labels: str | Path) -> Path:
    given = Path(labels)
    for candidate in (given, folder / given):
        if candidate.is_file():
            return candidate
    tables = sorted(p.name for p in folder.iterdir()
                    if p.suffix.lower() in (".csv", ".tsv", ".parquet"))[:10]
    found = f"; label tables in the folder: {tables}" if tables else (
        "; the folder holds no .csv/.tsv/.parquet file")
    raise DatasetError(f"folder {folder}: no label table {str(labels)!r} (looked for {given} and "
                       f"{folder / given}){found}. Pass labels=FILE")


def _file_column(where: str, df: Any, file_column: str | None) -> str:
    columns = [str(c) for c in df.columns]
    if file_column is not None:
        if file_column not in columns:
            raise missing_columns_error(where, "file_column", [file_column], columns)
        return file_column
    lower = {c.lower(): c for c in columns}
    for name in FILE_COLUMNS:
        if name in lower:
            return lower[name]
    for c in columns:  # a text column whose values end like image files
        values = df[c].dropna().astype(str)
        if len(values) and values.str.lower().str.endswith(IMAGE_SUFFIXES).all():
            return c
    raise DatasetError(f"{where}cannot tell which column holds the file names (none is called "
                       f"{'/'.join(FILE_COLUMNS[:4])}... or holds image file names); pass "
                       f"file_column=NAME, one of {columns[:20]}")


def _image_paths(where: str, folder: Path, names: list[str]) -> list[Path]:
    dup = [n for n, k in Counter(names).items() if k > 1]
    if dup:
        raise DatasetError(f"{where}{len(dup)} file names appear more than once in the label "
                           f"table (e.g. {dup[:_EXAMPLES]}); give each image one row")
    paths = [folder / n for n in names]
    missing = [n for n, p in zip(names, paths, strict=True) if not p.is_file()]
    if missing:
        hint = ""
        subdirs = [d for d in folder.iterdir() if d.is_dir()]
        for d in subdirs:
            if (d / missing[0]).is_file():
                hint = f"; they are in the subfolder {d.name!r}: pass the folder {d}"
                break
        if not hint:
            present = sorted(p.name for p in folder.iterdir()
                             if p.suffix.lower() in IMAGE_SUFFIXES)[:3]
            hint = (f"; the folder's images are named like {present}" if present else
                    "; the folder holds no image files")
        raise DatasetError(
            f"{where}{len(missing)} of {len(names)} files named in the label table are not in "
            f"{folder} (e.g. {missing[:_EXAMPLES]}){hint}. Fix the file-name column or the "
            "folder; rows without an image are never dropped silently"
        )
    return paths


def _scan(paths: list[Path]) -> tuple[list[tuple[int, int] | None], list[str], dict[int, str]]:
    """Each image's (height, width) and mode from its header; unreadable ones by row."""
    from PIL import Image

    sizes: list[tuple[int, int] | None] = []
    modes: list[str] = []
    bad: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                sizes.append((im.height, im.width))
                modes.append(im.mode)
        except Exception as exc:  # PIL raises many types for broken files; each is reported
            sizes.append(None)
            modes.append("")
            bad[i] = f"{type(exc).__name__}: {str(exc)[:120]}"
    return sizes, modes, bad


def _bad_images(where: str, paths: list[Path], bad: Mapping[int, str], on_bad_image: str) -> None:
    if not bad or on_bad_image == "skip":
        return
    shown = "; ".join(f"{paths[i]} ({why})" for i, why in list(bad.items())[:_EXAMPLES])
    raise DatasetError(f"{where}{len(bad)} image(s) cannot be read: {shown}. Replace or remove "
                       "them, or pass on_bad_image=skip to leave them out (the count is "
                       "reported in info['skipped_images'])")


def _image_size(where: str, sizes: list[tuple[int, int]], image_size: Any) -> tuple[int, int]:
    if image_size is not None:
        if isinstance(image_size, str) and "x" in image_size.lower():
            h, _, w = image_size.lower().partition("x")
            image_size = [int(h), int(w)] if h.isdigit() and w.isdigit() else image_size
        return Preprocessing(image_size=image_size).image_size  # type: ignore[return-value]
    counts = Counter(sizes)
    if len(counts) > 1:
        common = ", ".join(f"{h}x{w} ({n} images)" for (h, w), n in counts.most_common(3))
        raise DatasetError(f"{where}the images differ in size ({len(counts)} sizes: {common}"
                           f"{' ...' if len(counts) > 3 else ''}); pass image_size=64 (or "
                           "[height, width]) to resize them to one")
    return sizes[0]


def load_folder(
    path: str | Path,
    *,
    labels: str | Path = "labels.csv",
    file_column: str | None = None,
    image_size: Any = None,
    tasks: Any = None,
    kinds: Mapping[str, str] | None = None,
    channels: int | None = None,
    augment: Mapping[str, Any] | None = None,
    mean: Any = None,
    std: Any = None,
    streaming: Any = "auto",
    num_workers: int | None = None,
    on_bad_image: str = "fail",
    metric: Any = None,
    pos_weight: Any = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Any:
    """Load a folder of images and its label table as multi-task splits.

    Args:
        path: The image folder (file names in the table are relative to it).
        labels: The label table (CSV/TSV/Parquet), a path or a name inside the folder.
        file_column: The column of file names (default: one named like ``image``/``file``/
            ``filename``, else the first column of image file names).
        image_size: ``64``, ``[height, width]`` or ``"64x48"``; default: the images' common
            size (an error asks for ``image_size`` when they differ).
        tasks: Task columns (default: every column but the file column).
        kinds: ``{column: kind}`` overriding the inferred kinds.
        channels: 1 (grey) or 3 (RGB); default 1 when every image is grey, else 3.
        augment: Train-only augmentation, e.g. ``{"flip": true, "crop": 4}``.
        mean, std: Per-channel normalisation after scaling to [0, 1] (leave unset with a
            pretrained backbone, which normalises itself).
        streaming: ``True`` (read from disk by DataLoader workers), ``False`` (decode all into
            memory as ``uint8``) or ``"auto"`` (stream above the size threshold).
        num_workers: DataLoader workers when streaming (default 2).
        on_bad_image: ``"fail"`` (default) or ``"skip"``: leave unreadable images out, with the
            count and names in ``info["skipped_images"]``.
        metric, pos_weight: Binary tasks' options (see :func:`mtlsearch.data.sources.load_npz`).
        seed, val_fraction, test_fraction: The seeded split.

    Returns:
        Splits named ``folder:<absolute path>`` whose ``preprocessing`` records the image
        size, channels, normalisation and augmentation (the study and the export keep it;
        ``predict`` applies it); ``load_dataset(splits.name, **splits.kwargs)`` loads them
        again.

    Raises:
        DatasetError: a missing folder, table, column or file (how many, with examples),
            unreadable images (named), images of different sizes without ``image_size``,
            mixed types or a single class in a task column.
    """
    folder = Path(path)
    where = f"folder {folder}: "
    seed = check_seed(f"folder {folder}", seed)
    val_fraction, test_fraction = check_fractions(f"folder {folder}", val_fraction,
                                                  test_fraction)
    if on_bad_image not in ("fail", "skip"):
        raise DatasetError(f"{where}on_bad_image={on_bad_image!r} must be 'fail' or 'skip'")
    if not folder.is_dir():
        raise DatasetError(f"no such image folder: {folder}" + (
            " (it is a file; give the folder that holds the images)" if folder.exists() else
            f"; check the path (relative paths start at {Path.cwd()})"))
    table_path = _labels_path(folder, labels)
    where = f"{table_path}: "
    df = read_table(table_path)
    fcol = _file_column(where, df, file_column)
    columns = [str(c) for c in df.columns]
    task_cols = name_list(where, "tasks", tasks) or [c for c in columns if c != fcol]
    missing = [c for c in task_cols if c not in columns]
    if missing:
        raise missing_columns_error(where, "tasks", missing, columns)
    if fcol in task_cols:
        raise DatasetError(f"{where}{fcol!r} is the file-name column; it cannot be a task")
    if not task_cols:
        raise DatasetError(f"{where}the table has no task column besides {fcol!r}")
    check_task_names(task_cols)
    if len(df) == 0:
        raise DatasetError(f"{where}the label table has no rows")
    if df[fcol].isna().any():
        rows = np.flatnonzero(df[fcol].isna().to_numpy())[:_EXAMPLES].tolist()
        raise DatasetError(f"{where}{int(df[fcol].isna().sum())} rows have no file name in "
                           f"column {fcol!r} (rows {rows}); fill them in or delete those rows")
    names = df[fcol].astype(str).str.strip().tolist()
    paths = _image_paths(where, folder, names)
    sizes, modes, bad = _scan(paths)
    _bad_images(where, paths, bad, on_bad_image)
    good = [i for i in range(len(paths)) if i not in bad]
    if not good:
        raise DatasetError(f"{where}none of the {len(paths)} images can be read")
    size = _image_size(where, [sizes[i] for i in good], image_size)  # type: ignore[misc]
    if channels is None:
        channels = 1 if all(modes[i] in _GREY for i in good) else 3
    prep = Preprocessing(image_size=size, channels=channels, augment=augment or {},
                         mean=mean, std=std)
    n_est = len(good) * channels * size[0] * size[1] * 4
    stream = should_stream(streaming, n_est, source=f"folder {folder}")
    images = None
    if not stream:  # decode now: a truncated file shows up here, not mid-training
        decoded, more_bad = [], {}
        for i in good:
            try:
                decoded.append(decode_image(paths[i], prep))  # as streaming decodes
            except DatasetError as exc:
                more_bad[i] = str(exc)
        _bad_images(where, paths, more_bad, on_bad_image)
        bad.update(more_bad)
        good = [i for i in good if i not in more_bad]
        if not good:
            raise DatasetError(f"{where}none of the {len(paths)} images can be read")
        images = torch.stack(decoded)
    if bad:
        log.warning("%sskipped %d unreadable image(s), e.g. %s", where, len(bad),
                    [str(paths[i]) for i in list(bad)[:_EXAMPLES]])
    sub = df.iloc[good]
    inferred = infer_tasks({c: _column_values(sub, c) for c in task_cols}, kinds, where=where)
    good_paths = [paths[i] for i in good]
    loader = LoaderOptions(num_workers=num_workers)

    def part(rows: np.ndarray, targets: dict[str, np.ndarray], specs: list[Any]) -> Any:
        if images is None:
            return StreamingDataset(ImageFileSource([good_paths[r] for r in rows], prep),
                                    range(len(rows)), targets, specs, preprocessing=prep,
                                    loader=loader)
        if prep.augment.active:  # uint8 in memory, augmented per batch
            return StreamingDataset(TensorSource(images[torch.as_tensor(rows)]),
                                    range(len(rows)), targets, specs, preprocessing=prep)
        x = prep.eval_transform()(images[torch.as_tensor(rows)])
        return MultiTaskDataset(x, targets, specs)

    named = {p.name for p in paths if p.parent == folder}
    unlabelled = sum(1 for p in folder.iterdir()
                     if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in named)
    if unlabelled:  # not an error (a folder may hold more), but never unsaid
        log.info("%s%d image(s) in %s have no row in the label table and are not used",
                 where, unlabelled, folder)
    info = {
        "source": {"format": "folder", "path": str(folder), "labels": str(table_path),
                   "file_column": fcol},
        "unlabelled_images": unlabelled,
        "streaming": stream,
        "estimated_float32_bytes": n_est,
        "skipped_images": {"count": len(bad), "files": [str(paths[i]) for i in bad]},
    }
    splits = make_splits(
        f"folder:{folder.resolve()}", len(good), inferred, part,
        seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
        metric=metric, pos_weight=pos_weight, where=where, info=info, preprocessing=prep,
        kwargs={"labels": str(table_path.resolve()), "file_column": fcol, "image_size": list(size),
                "tasks": task_cols, "kinds": dict(kinds or {}), "channels": channels,
                "augment": prep.augment.to_dict(), "mean": mean, "std": std,
                "streaming": streaming, "on_bad_image": on_bad_image, "metric": metric,
                "pos_weight": pos_weight},
    )
    return splits
