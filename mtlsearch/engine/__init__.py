"""The engine: a sharing graph made a PyTorch model, trained, scored and counted.

``model`` materializes a graph (:func:`materialize` → :class:`MultiTaskModel`, walking the
graph's plan); ``train`` is the one :class:`Trainer` every candidate goes through (task
sampling, early stopping, dynamic re-wiring, callbacks); ``scoring`` evaluates per-task
metrics and Δ_MTL; ``predict`` gives per-task predictions; ``compute`` meters what training
costs; ``weighting`` holds the loss weightings and gradient aggregators the
trainer calls every step (a plugin kind: ``register_weightings``); ``acceleration`` decides how training uses the device (bf16, channels-last, data
placement, compile); ``distributed`` trains one candidate on every rank of a ``torchrun``
job. It knows nothing of Optuna or of strategies. This subpackage imports ``tasks``, ``data``,
``graph`` and the base modules; strategies, pictures, export and studies import it.

Example:
    >>> from mtlsearch import SharingGraph, TaskSpec, create_space
    >>> from mtlsearch.engine import materialize
    >>> space = create_space("mlp", input_shape=(8,), widths=(16, 16))
    >>> model = materialize(SharingGraph.hard_sharing(["a", "b"], 2), space,
    ...                     [TaskSpec("a"), TaskSpec("b")])
    >>> sorted(model.tasks)
    ['a', 'b']
"""

from __future__ import annotations

from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.engine.predict import predict
from mtlsearch.engine.scoring import delta_mtl, evaluate
from mtlsearch.engine.train import (
    EpochState,
    StepState,
    TrainConfig,
    Trainer,
    TrainResult,
    build_and_train,
    select_device,
)

__all__ = [
    "EpochState",
    "MultiTaskModel",
    "StepState",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_and_train",
    "delta_mtl",
    "evaluate",
    "materialize",
    "predict",
    "select_device",
]
