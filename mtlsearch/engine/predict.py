"""Per-task predictions of a multi-task model, in batches, without gradients."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.errors import ExportError
from mtlsearch.tasks.kinds import get_task_kind

__all__ = ["predict"]


def predict(
    model: MultiTaskModel, inputs: np.ndarray | Tensor, *, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Per-task predictions (probabilities, classes or values, per task kind) for ``inputs``.

    Runs in eval mode without gradients, ``batch_size`` samples at a time, on the model's
    device; the model's train/eval mode is restored afterwards.

    Args:
        model: A model from :func:`load` or :func:`~mtlsearch.engine.model.materialize`.
        inputs: ``(n, *input_shape)`` array or tensor.
        batch_size: Samples per forward pass.

    Returns:
        ``{task: array}`` with ``n`` rows per task, in task order.

    Example:
        >>> out = predict(load("runs/best"), np.zeros((4, 8), dtype=np.float32))  # doctest: +SKIP
        >>> out["a"].shape  # doctest: +SKIP
        (4,)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs)
    if x.ndim < 1:
        raise ExportError("inputs must have a batch axis: shape (n, *input_shape)")
    model.space.check_input(tuple(x.shape[1:]))
    device = next(iter(model.parameters())).device
    kinds = {spec.name: (spec, get_task_kind(spec.kind)) for spec in model.task_specs}
    parts: dict[str, list[np.ndarray]] = {t: [] for t in model.tasks}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, max(len(x), 1), batch_size):
                batch = x[start : start + batch_size].to(device=device, dtype=torch.float32)
                for task, output in model(batch).items():
                    spec, kind = kinds[task]
                    parts[task].append(kind.predict(spec, output).cpu().numpy())
    finally:
        model.train(was_training)
    return {t: np.concatenate(parts[t]) for t in model.tasks}


