"""Predict from files: an export folder and an ``.npz`` of inputs in, an ``.npz`` of outputs out.

The input is read member by member (:class:`mtlsearch.safety.NpzReader`): only the arrays
used are read, each after its header is checked (numeric dtype, the model's per-sample shape,
a size consistent with the header, no decompression bomb). The output is written with
``zipfile`` and :func:`numpy.lib.format.write_array`, one member ``<task>.npy`` per task: a task
name is never a keyword argument or a path.
"""

from __future__ import annotations

import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.engine.predict import check_prediction_inputs, predict
from mtlsearch.errors import ExportError, MTLSearchError, UnsafeInputError
from mtlsearch.export.read import load
from mtlsearch.tasks.kinds import get_task_kind
from mtlsearch.tasks.names import check_task_name, display_name

__all__ = ["predict_npz", "write_npz"]


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
    from mtlsearch.safety import NpzReader

    input_npz, output_npz = Path(input_npz), Path(output_npz)
    if not input_npz.exists():
        raise ExportError(f"no input file {input_npz}; give an .npz with an array {input_key!r}")
    model = load(folder, device=device)
    try:
        with NpzReader(input_npz) as data:
            member = data.members.get(input_key)
            if member is None:
                shown = ", ".join(f"'{display_name(k, 40)}'" for k in sorted(data.files)[:20])
                raise ExportError(
                    f"{input_npz} has no array {input_key!r}; it has [{shown}]: pass "
                    "input_key=... (--input-key) naming the inputs"
                )
            check_prediction_inputs(model, member.shape, member.dtype,
                                    what=f"the inputs {input_key!r} of {input_npz}")
            x = data.read(input_key)
            truth = {t: data.read(t) for t in model.tasks if t in data.members} if picture else {}
    except UnsafeInputError as exc:
        raise ExportError(f"{exc}") from None
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
