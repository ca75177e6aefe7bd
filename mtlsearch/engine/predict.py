"""Per-task predictions of a multi-task model, in batches, without gradients.

Inputs are checked before anything runs: they must be numbers (not text, dates, Python
objects, records or complex numbers) of the model's per-sample shape, and every batch must be
finite once converted to ``float32``. A refusal is an :class:`~mtlsearch.errors.ExportError`
that blames the input, naming what was expected and what was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.errors import ExportError
from mtlsearch.tasks.kinds import get_task_kind

__all__ = ["check_prediction_inputs", "predict"]

_NOT_NUMBERS = {
    "U": "text", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time spans",
    "V": "records (a structured array)", "c": "complex numbers",
}


def check_prediction_inputs(
    model: MultiTaskModel, shape: Sequence[int], dtype: Any, *, what: str = "the inputs"
) -> None:
    """Raise :class:`ExportError` unless inputs of ``shape`` and ``dtype`` fit ``model``.

    Used on an array's declared shape and dtype before its data is read (``predict_npz``),
    and by :func:`predict`.

    Example:
        >>> check_prediction_inputs(model, (4, 9), np.float32)  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        mtlsearch.errors.ExportError: the inputs have shape (4, 9), i.e. (9,) per sample, ...
    """
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else None
    kind = None if torch_dtype is not None else np.dtype(dtype)
    problem = None
    if torch_dtype is not None:
        problem = "complex numbers" if torch_dtype.is_complex else None
    elif kind.names is not None:
        problem = _NOT_NUMBERS["V"]
    else:
        problem = _NOT_NUMBERS.get(kind.kind)
    if problem is not None:
        raise ExportError(
            f"{what} are {problem} (dtype {dtype}), not numbers; give the model numeric "
            "features prepared like its training inputs"
        )
    shape, want = tuple(int(n) for n in shape), tuple(model.space.input_shape)
    if len(shape) < 1:
        raise ExportError(f"{what} must have a batch axis: shape (n, *{want}), got a scalar")
    if shape[1:] != want:
        raise ExportError(
            f"{what} have shape {shape}, i.e. {shape[1:]} per sample, but this model takes "
            f"{want} per sample: give inputs of shape (n, {', '.join(map(str, want))}), "
            "prepared like its training inputs"
        )


def predict(
    model: MultiTaskModel, inputs: np.ndarray | Tensor, *, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Per-task predictions (probabilities, classes or values, per task kind) for ``inputs``.

    Runs in eval mode without gradients, ``batch_size`` samples at a time, on the model's
    device; the model's train/eval mode is restored afterwards.

    Args:
        model: A model from :func:`load` or :func:`~mtlsearch.engine.model.materialize`.
        inputs: ``(n, *input_shape)`` array or tensor of numbers.
        batch_size: Samples per forward pass.

    Returns:
        ``{task: array}`` with ``n`` rows per task, in task order.

    Raises:
        ExportError: inputs that are not numbers, of another per-sample shape than the
            model's, or holding NaN or infinity (once converted to ``float32``).

    Example:
        >>> out = predict(load("runs/best"), np.zeros((4, 8), dtype=np.float32))  # doctest: +SKIP
        >>> out["a"].shape  # doctest: +SKIP
        (4,)
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(inputs, Tensor):
        try:
            inputs = np.asarray(inputs)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise ExportError(f"the inputs cannot be read as one array ({exc})") from None
    check_prediction_inputs(model, inputs.shape, inputs.dtype)
    x = torch.as_tensor(inputs)
    device = next(iter(model.parameters())).device
    kinds = {spec.name: (spec, get_task_kind(spec.kind)) for spec in model.task_specs}
    parts: dict[str, list[np.ndarray]] = {t: [] for t in model.tasks}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, max(len(x), 1), batch_size):
                batch = x[start : start + batch_size].to(device=device, dtype=torch.float32)
                finite = torch.isfinite(batch.reshape(len(batch), -1)).all(dim=1)
                if not bool(finite.all()):
                    row = start + int((~finite).nonzero()[0, 0])
                    raise ExportError(
                        f"the inputs hold NaN or infinity (first in row {row}, as float32); "
                        "predictions from them would be meaningless: clean or drop those rows"
                    )
                for task, output in model(batch).items():
                    spec, kind = kinds[task]
                    parts[task].append(kind.predict(spec, output).cpu().numpy())
    finally:
        model.train(was_training)
    return {t: np.concatenate(parts[t]) for t in model.tasks}
