"""Predict from files: an export folder and new inputs in, a table or an ``.npz`` out.

:func:`predict_files` takes a folder of images, a CSV/Parquet table or an ``.npz``, prepares
them with the preprocessing the export records (``model.preprocessing``) and writes a table of
per-task predictions (:mod:`mtlsearch.export.prediction_table`) or an ``.npz``.
:func:`predict_npz` is the ``.npz`` to ``.npz`` form.

The ``.npz`` input is read member by member (:class:`mtlsearch.safety.NpzReader`): only the
arrays used are read, each after its header is checked (numeric dtype, the model's per-sample
shape when no preprocessing is recorded, a size consistent with the header, no decompression
bomb). The ``.npz`` output is written with ``zipfile`` and :func:`numpy.lib.format.write_array`,
one member ``<task>.npy`` per task: a task name is never a keyword argument or a path.
"""

from __future__ import annotations

import uuid
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.engine.predict import check_prediction_inputs, predict
from mtlsearch.errors import ExportError, MTLSearchError, UnsafeInputError
from mtlsearch.export.prediction_table import TABLE_SUFFIXES, prediction_columns, write_table
from mtlsearch.export.read import load
from mtlsearch.tasks.kinds import get_task_kind
from mtlsearch.tasks.names import check_task_name, display_name

__all__ = ["PredictionResult", "predict_files", "predict_npz", "write_npz"]


# --------------------------------------------------------------------------------- predict
def predict_npz(
    folder: str | Path,
    input_npz: str | Path,
    output_npz: str | Path,
    *,
    input_key: str = "X",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    picture: str | Path | None = None,
    picture_samples: int = 4,
) -> Path:
    """Load the export in ``folder``, predict ``input_npz[input_key]``, write ``output_npz``.

    The output holds one array per task, keyed by task name (for dense tasks, per-pixel
    maps: class ids ``(n, H, W)``, depth ``(n, 1, H, W)``, unit normals ``(n, 3, H, W)``,
    edges ``(n, C, H, W)``). Nothing is unpickled, and the input array's header is checked
    against the model before its data is read.

    With ``picture``, the first ``picture_samples`` inputs and their dense predictions are
    drawn to ``<picture>.png`` and ``.svg`` (:func:`mtlsearch.viz.draw_dense_maps`);
    arrays of the input file named like a task are drawn as its ground truth.

    Raises:
        ExportError: one line naming the input file and the fix: a missing file, a ``.npy``
            or a file that is not an ``.npz``, no array ``input_key``, text, date, object or
            record inputs, another per-sample shape than the model's, a header that disagrees
            with the data, a member that would inflate to gigabytes, NaN or infinite inputs.

    Example:
        >>> predict_npz("runs/best", "new_samples.npz", "predictions.npz")  # doctest: +SKIP
        PosixPath('predictions.npz')
    """
    input_npz, output_npz = Path(input_npz), Path(output_npz)
    if not input_npz.exists():
        raise ExportError(f"no input file {input_npz}; give an .npz with an array {input_key!r}")
    model = load(folder, device=device)
    x, truth = _read_npz(model, input_npz, input_key, truth=picture is not None)
    outputs = predict(model, x, batch_size=batch_size)
    if picture is not None:
        _draw_prediction_picture(model, x, outputs, truth, Path(picture), picture_samples)
    output_npz.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_npz.with_name(f".{output_npz.name}.tmp-{uuid.uuid4().hex[:8]}.npz")
    try:
        write_npz(tmp, outputs)
        tmp.replace(output_npz)
    finally:
        tmp.unlink(missing_ok=True)
    return output_npz



@dataclass(frozen=True)
class PredictionResult:
    """What :func:`predict_files` wrote.

    Attributes:
        path: The output file.
        rows: Inputs predicted (one row each).
        columns: The table's columns, or the ``.npz``'s arrays.
        skipped: Image files left out (``on_bad_image="skip"``), each ``"name: reason"``.
    """

    path: Path
    rows: int
    columns: list[str]
    skipped: list[str] = field(default_factory=list)


def predict_files(
    folder: str | Path,
    inputs: str | Path,
    output: str | Path,
    *,
    input_key: str = "X",
    file_column: str | None = None,
    image_root: str | Path | None = None,
    input_columns: Sequence[str] | None = None,
    on_bad_image: str = "fail",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    picture: str | Path | None = None,
    picture_samples: int = 4,
) -> PredictionResult:
    """Predict every task for new inputs, prepared as the training inputs were.

    The export's recorded preprocessing (``model.preprocessing``: decoding, resizing,
    scaling, normalisation; never augmentation) is applied to the inputs, which may be:

    - a folder of images (any format PIL reads; rows keyed by file name, sorted);
    - a CSV/TSV/Parquet table: for an image model, a column of image file names
      (``file_column``, else detected: ``file``/``filename``/``image``/``path``... or the
      first column whose values all end like image files), found under ``image_root``
      (default: the table's folder); for a table model, the input columns the export
      records (or ``input_columns``); rows keyed by file name or by row index;
    - an ``.npz`` holding ``input_key`` (rows keyed by index).

    The output is a table (``.csv``, ``.tsv``, ``.parquet``) with the row key and per-task
    columns (:func:`~mtlsearch.export.prediction_table.prediction_columns`: binary label and
    probability, multiclass class and per-class probabilities, regression values), or an
    ``.npz`` with one array per task, as :func:`predict_npz` writes (rows in input order).

    Raises:
        ExportError: a missing input (named), an unknown input or output type, a missing
            column (the ones there are listed), an unreadable image (named; or skipped with
            ``on_bad_image="skip"``, and counted in the result), inputs that do not fit the
            model once prepared.

    Example:
        >>> predict_files("runs/best", "new_images/", "predictions.csv").rows  # doctest: +SKIP
        24
    """
    inputs, output = Path(inputs), Path(output)
    out_suffix = output.suffix.lower()
    if out_suffix not in (*TABLE_SUFFIXES, ".npz"):
        raise ExportError(f"cannot write predictions to {output}: give a file ending in .csv, "
                          ".tsv, .parquet or .npz")
    if on_bad_image not in ("fail", "skip"):
        raise ExportError(f"on_bad_image must be 'fail' or 'skip', got {on_bad_image!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ExportError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not inputs.exists():
        raise ExportError(f"no input {inputs}; give a folder of images, a .csv/.parquet table or "
                          "an .npz")
    in_suffix = inputs.suffix.lower()
    # any other file is read as an .npz, whose reader explains what else it is (.npy, text)
    if inputs.is_file() and in_suffix not in TABLE_SUFFIXES and out_suffix == ".npz":
        path = predict_npz(folder, inputs, output, input_key=input_key, batch_size=batch_size,
                           device=device, picture=picture, picture_samples=picture_samples)
        with np.load(path) as data:
            return PredictionResult(path, len(data[data.files[0]]) if data.files else 0,
                                    list(data.files))
    if picture is not None:
        raise ExportError("a picture is drawn only from an .npz of inputs to an .npz of outputs; "
                          "leave out picture (--picture)")
    model = load(folder, device=device)
    skipped: list[str] = []
    if inputs.is_dir():
        from mtlsearch.data.preprocess import list_images

        try:
            paths = list_images(inputs)
        except MTLSearchError as exc:
            raise ExportError(str(exc)) from None
        key = ("file", [p.name for p in paths])
        batches = _image_batches(model, paths, batch_size, on_bad_image, skipped, key[1])
    elif in_suffix in TABLE_SUFFIXES:
        key, batches = _table_batches(model, inputs, file_column=file_column,
                                      image_root=image_root, input_columns=input_columns,
                                      batch_size=batch_size, on_bad_image=on_bad_image,
                                      skipped=skipped)
    else:
        x, _ = _read_npz(model, inputs, input_key)
        x = torch.as_tensor(x)
        key = ("row", list(range(len(x))))
        batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
    raw = _raw_outputs(model, batches, what=str(inputs))
    n = len(next(iter(raw.values()))) if raw else 0
    if skipped:
        warnings.warn(f"left out {len(skipped)} unreadable image(s) of {inputs}, e.g. "
                      f"{skipped[0]}", stacklevel=2)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{uuid.uuid4().hex[:8]}{out_suffix}")
    try:
        if out_suffix == ".npz":
            specs = {s.name: s for s in model.task_specs}
            arrays = {t: get_task_kind(specs[t].kind).predict(specs[t], out).numpy()
                      for t, out in raw.items()}
            write_npz(tmp, arrays)
            columns = list(arrays)
        else:
            table = prediction_columns(model.task_specs, raw)
            write_table(tmp, (key[0], key[1][:n]), table)
            columns = [key[0], *table]
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return PredictionResult(output, n, columns, skipped)


def _preprocessing_for(model: MultiTaskModel) -> Any:
    """The recorded preprocessing, or, for an image model exported without one, the plain
    decode-resize-scale its input shape implies (with a warning)."""
    from mtlsearch.data.preprocess import Preprocessing

    prep = getattr(model, "preprocessing", None)
    if prep is not None:
        return prep
    shape = tuple(model.space.input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ExportError(f"this model takes inputs of shape {shape} per sample, not images; give "
                          "an .npz (or a table, for a model trained on a table)")
    warnings.warn("the export records no preprocessing: images are only resized to "
                  f"{shape[1:]} and scaled to [0, 1]; re-export from the study to record it",
                  stacklevel=3)
    return Preprocessing(image_size=shape[1:], channels=shape[0])


def _image_batches(model: MultiTaskModel, paths: Sequence[Path], batch_size: int,
                   on_bad_image: str, skipped: list[str], keys: list[Any]) -> Iterator[Tensor]:
    """Decoded, prepared image batches; unreadable files fail or are skipped (and their key
    removed from ``keys``, so keys and rows stay aligned)."""
    prep = _preprocessing_for(model)
    transform = prep.eval_transform()
    kept: list[Any] = []
    for start in range(0, len(paths), batch_size):
        images = []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                images.append(prep.load_image(paths[i]))
            except MTLSearchError as exc:
                if on_bad_image == "fail":
                    raise ExportError(f"{exc}, or pass on_bad_image='skip' "
                                      "(--on-bad-image skip) to leave it out") from None
                skipped.append(f"{paths[i].name}: {str(exc)[:120]}")
                continue
            kept.append(keys[i])
        if images:
            try:
                yield transform(torch.stack(images))
            except (MTLSearchError, RuntimeError) as exc:
                raise ExportError(f"cannot prepare the images: {exc}") from None
    keys[:] = kept


_FILE_COLUMNS = ("file", "filename", "file_name", "image", "image_id", "image_name", "path",
                 "img", "name")


def _table_batches(model: MultiTaskModel, path: Path, *, file_column: str | None,
                   image_root: str | Path | None, input_columns: Sequence[str] | None,
                   batch_size: int, on_bad_image: str,
                   skipped: list[str]) -> tuple[tuple[str, list[Any]], Iterator[Tensor]]:
    from mtlsearch.data.preprocess import IMAGE_SUFFIXES, Preprocessing

    frame = _read_table(path)
    columns = [str(c) for c in frame.columns]
    image_model = len(model.space.input_shape) == 3
    if image_model and input_columns is None:
        if file_column is None:
            lowered = {c.lower(): c for c in columns}
            file_column = next((lowered[c] for c in _FILE_COLUMNS if c in lowered), None)
            if file_column is None:
                file_column = next((c for c in columns if frame[c].map(
                    lambda v: isinstance(v, str) and v.lower().endswith(IMAGE_SUFFIXES)).all()),
                    None)
            if file_column is None:
                raise ExportError(f"{path} has no column of image file names (looked for "
                                  f"{', '.join(_FILE_COLUMNS[:5])}, ...); its columns are "
                                  f"{columns[:30]}: pass file_column=... (--file-column)")
        elif file_column not in columns:
            raise ExportError(f"{path} has no column {file_column!r}; its columns are "
                              f"{columns[:30]}")
        root = Path(image_root) if image_root is not None else path.parent
        names = [str(v) for v in frame[file_column]]
        keys = list(names)
        return ("file", keys), _image_batches(model, [root / n for n in names], batch_size,
                                              on_bad_image, skipped, keys)
    prep = getattr(model, "preprocessing", None)
    if input_columns is not None:
        prep = (prep or Preprocessing()).__class__.from_dict(
            {**(prep or Preprocessing()).to_dict(), "input_columns": list(input_columns)})
    if prep is None or not prep.input_columns:
        raise ExportError(f"the export records no input columns, so the columns of {path} that "
                          "form the inputs are unknown; pass input_columns=... (--input-columns "
                          "a,b,c) in the training order")
    try:
        x = prep.prepare_table(frame, where=str(path))
    except MTLSearchError as exc:
        raise ExportError(str(exc)) from None
    return ("row", list(range(len(x)))), (x[i : i + batch_size]
                                           for i in range(0, len(x), batch_size))


def _read_table(path: Path) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ExportError("reading a table of inputs needs pandas; pip install pandas, or give "
                          "an .npz") from None
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except ImportError as exc:
        raise ExportError(f"reading {path} needs pyarrow ({exc}); pip install pyarrow") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ExportError(f"cannot read the table {path} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def _raw_outputs(model: MultiTaskModel, batches: Iterable[Tensor], *,
                 what: str) -> dict[str, Tensor]:
    """The heads' raw outputs for every batch, concatenated on the CPU."""
    device = next(iter(model.parameters())).device
    parts: dict[str, list[Tensor]] = {t: [] for t in model.tasks}
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                if seen == 0:
                    check_prediction_inputs(model, batch.shape, batch.dtype,
                                            what=f"the inputs of {what}, once prepared,")
                batch = batch.to(device=device, dtype=torch.float32)
                finite = torch.isfinite(batch.reshape(len(batch), -1)).all(dim=1)
                if not bool(finite.all()):
                    row = seen + int((~finite).nonzero()[0, 0])
                    raise ExportError(f"the inputs of {what} hold NaN or infinity (first in row "
                                      f"{row}); clean or drop those rows")
                for task, out in model(batch).items():
                    parts[task].append(out.float().cpu())
                seen += len(batch)
    finally:
        model.train(was_training)
    if seen == 0:
        raise ExportError(f"no inputs to predict in {what}")
    return {t: torch.cat(v) for t, v in parts.items()}


def _read_npz(model: MultiTaskModel, path: Path, input_key: str, *,
              truth: bool = False) -> tuple[Any, dict[str, np.ndarray]]:
    """The inputs ``path[input_key]`` (prepared by the model's recorded preprocessing, if any)
    and, with ``truth``, the arrays named like a task."""
    from mtlsearch.safety import NpzReader

    prep = getattr(model, "preprocessing", None)
    try:
        with NpzReader(path) as data:
            member = data.members.get(input_key)
            if member is None:
                shown = ", ".join(f"'{display_name(k, 40)}'" for k in sorted(data.files)[:20])
                raise ExportError(
                    f"{path} has no array {input_key!r}; it has [{shown}]: pass "
                    "input_key=... (--input-key) naming the inputs"
                )
            what = f"the inputs {input_key!r} of {path}"
            if prep is None:
                check_prediction_inputs(model, member.shape, member.dtype, what=what)
            else:  # raw inputs (e.g. uint8 images of any size): the shape is checked once prepared
                check_prediction_inputs(model, (0, *model.space.input_shape), member.dtype,
                                        what=what)
            x = data.read(input_key)
            found = {t: data.read(t) for t in model.tasks if t in data.members} if truth else {}
    except UnsafeInputError as exc:
        raise ExportError(f"{exc}") from None
    if prep is not None:
        try:
            x = prep.prepare_array(x)
        except MTLSearchError as exc:
            raise ExportError(f"the inputs {input_key!r} of {path}: {exc}") from None
    return x, found


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an ``.npz`` that ``np.load`` reads back under the same names.

    Unlike ``np.savez(path, **arrays)``, a name is never a keyword argument (a task called
    ``file`` or ``allow_pickle`` is just a name) and never a path: every name must be a valid
    task name (:func:`~mtlsearch.tasks.names.check_task_name`: no ``/``, NUL or control
    characters, which zip member names would mangle), and is written as the member
    ``<name>.npy``, uncompressed, without pickle.

    Raises:
        ExportError: an invalid name, or two names giving one member.

    Example:
        >>> write_npz("out.npz", {"file": np.zeros(2)})  # doctest: +SKIP
        PosixPath('out.npz')
    """
    from numpy.lib import format as npy

    path = Path(path)
    members: set[str] = set()
    for name in arrays:
        try:
            check_task_name(name)
        except MTLSearchError as exc:
            raise ExportError(f"cannot write {path}: {exc}") from None
        if f"{name}.npy" in members:
            raise ExportError(f"cannot write {path}: the array {name!r} is given twice")
        members.add(f"{name}.npy")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                npy.write_array(fh, np.asanyarray(value), allow_pickle=False)
    return path


def _draw_prediction_picture(
    model: MultiTaskModel,
    x: np.ndarray,
    outputs: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    path: Path,
    samples: int,
) -> None:
    """The picture of :func:`predict_npz`: the first ``samples`` rows, truth where given."""
    from mtlsearch.viz import draw_dense_maps
    from mtlsearch.viz.dense import DENSE_KINDS

    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ExportError(f"picture_samples must be a positive integer, got {samples!r}")
    specs = {s.name: s for s in model.task_specs}
    if not any(s.kind in DENSE_KINDS for s in specs.values()):
        raise ExportError(
            f"the model's tasks {model.tasks} are not dense (segmentation, depth, normals, "
            "edges): there are no maps to draw; leave out the picture (--picture)"
        )
    n = min(samples, len(x))
    prepared = {}
    for task, labels in truth.items():
        if specs[task].kind not in DENSE_KINDS:
            continue
        if len(labels) != len(x):
            raise ExportError(
                f"the input file's array {task!r} (drawn as ground truth) has {len(labels)} rows "
                f"for {len(x)} inputs; rename it or give one row per input"
            )
        spec = specs[task]
        prepared[task] = get_task_kind(spec.kind).prepare_targets(spec, labels[:n]).numpy()
    draw_dense_maps(x[:n], {t: v[:n] for t, v in outputs.items()}, model.task_specs,
                    truth=prepared, row_labels=[f"#{i}" for i in range(n)], path=path)
