"""Predict from files: an export folder and an ``.npz`` of inputs in, an ``.npz`` of outputs out."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import torch

from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.engine.predict import predict
from mtlsearch.errors import ExportError
from mtlsearch.export.read import load
from mtlsearch.tasks.kinds import get_task_kind

__all__ = ["predict_npz"]


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
    edges ``(n, C, H, W)``). Nothing is unpickled: the input is read with
    ``allow_pickle=False``.

    With ``picture``, the first ``picture_samples`` inputs and their dense predictions are
    drawn to ``<picture>.png`` and ``.svg`` (:func:`mtlsearch.viz.dense.draw_dense_maps`);
    arrays of the input file named like a task are drawn as its ground truth.

    Example:
        >>> predict_npz("runs/best", "new_samples.npz", "predictions.npz")  # doctest: +SKIP
        PosixPath('predictions.npz')
    """
    input_npz, output_npz = Path(input_npz), Path(output_npz)
    if not input_npz.is_file():
        raise ExportError(f"no input file {input_npz}; give an .npz with an array {input_key!r}")
    model = load(folder, device=device)
    try:
        with np.load(input_npz, allow_pickle=False) as data:
            if input_key not in data.files:
                raise ExportError(
                    f"{input_npz} has no array {input_key!r}; it has {sorted(data.files)}: pass "
                    "input_key=... (--input-key) naming the inputs"
                )
            x = data[input_key]
            truth = {t: data[t] for t in model.tasks if t in data.files} if picture else {}
    except (ValueError, OSError) as exc:  # object arrays need pickle; bad zip files
        raise ExportError(f"{input_npz} cannot be read as a plain .npz file: {exc}") from None
    outputs = predict(model, x, batch_size=batch_size)
    if picture is not None:
        _draw_prediction_picture(model, x, outputs, truth, Path(picture), picture_samples)
    output_npz.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_npz.with_name(f".{output_npz.name}.tmp-{uuid.uuid4().hex[:8]}.npz")
    try:
        np.savez(tmp, **outputs)
        tmp.replace(output_npz)
    finally:
        tmp.unlink(missing_ok=True)
    return output_npz


def _draw_prediction_picture(
    model: MultiTaskModel,
    x: np.ndarray,
    outputs: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    path: Path,
    samples: int,
) -> None:
    """The picture of :func:`predict_npz`: the first ``samples`` rows, truth where given."""
    from mtlsearch.viz.dense import DENSE_KINDS, draw_dense_maps

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
