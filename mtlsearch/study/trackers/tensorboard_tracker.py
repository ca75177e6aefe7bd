"""Log a search to TensorBoard: one run folder per trial, ``LOG_DIR/STUDY/trial-N``.

Written with ``torch.utils.tensorboard`` (it needs only the ``tensorboard`` package), not
optuna-integration's ``TensorBoardCallback``: that one needs TensorFlow, reads
``trial.value`` (so fails on the multi-objective studies mtlsearch runs by default) and sees
no epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtlsearch.study.trackers.base import (
    TrackedTrial,
    Tracker,
    flat_figures,
    iter_params,
    metric_key,
    require,
)

__all__ = ["TensorBoardTracker"]


class TensorBoardTracker(Tracker):
    """Write every trial of a search as a TensorBoard run.

    Args:
        log_dir: The folder ``tensorboard --logdir`` is pointed at; each trial writes to
            ``LOG_DIR/STUDY/trial-N``.
        pictures: Also add each trial's architecture as an image (``architecture``).

    Each run holds the per-epoch scalars (``train_loss``, ``val_loss``; step = epoch), the
    trial's figures once it ends (``objective/<name>`` for each objective, the rest under
    ``result/``: ``result/delta_mtl_test``, ``result/test/<task>/<metric>``...), its
    parameters and ``strategy`` in the HParams dashboard (against the objectives), and the
    graph JSON as text (``graph``).

    Example:
        >>> with TensorBoardTracker("runs/tb"):  # doctest: +SKIP
        ...     search(dataset="synthetic", space="mlp", trials=4)
    """

    kind = "tensorboard"

    def __init__(self, log_dir: str | Path, *, pictures: bool = True) -> None:
        super().__init__()
        tensorboard = require("torch.utils.tensorboard", "tensorboard")
        self._writer_class = tensorboard.SummaryWriter
        self._hparams = tensorboard.summary.hparams
        self.log_dir = Path(log_dir)
        self.pictures = pictures

    def settings(self) -> dict[str, Any]:
        return {"log_dir": str(self.log_dir), "pictures": self.pictures}

    def run_dir(self, trial: TrackedTrial) -> Path:
        """Where ``trial`` writes its events."""
        return self.log_dir / trial.study_name / f"trial-{trial.number}"

    def start(self, trial: TrackedTrial) -> None:
        trial.handle = self._writer_class(log_dir=str(self.run_dir(trial)))

    def epoch(self, trial: TrackedTrial, epoch: int, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            trial.handle.add_scalar(metric_key(key), value, epoch)

    def end(self, trial: TrackedTrial, result: dict[str, Any]) -> None:
        writer = trial.handle
        try:
            objectives = list(trial.settings().get("objectives") or [])
            values = result.get("values") or []
            if len(objectives) != len(values):
                objectives = [f"value_{i}" for i in range(len(values))]
            measured = {metric_key("objective", n): float(v) for n, v in zip(objectives, values)}
            for key, value in flat_figures(result).items():
                writer.add_scalar(metric_key("result", key), value, 0)
            hparams = dict(iter_params(trial.params))
            hparams["strategy"] = trial.strategy
            hparams["state"] = str(result.get("state"))
            # The HParams dashboard: the experiment, this session and its metrics.
            for summary in self._hparams(hparams, measured or {"objective/none": 0.0}):
                writer.file_writer.add_summary(summary)
            for key, value in measured.items():
                writer.add_scalar(key, value, 0)
            if result.get("graph"):
                text = json.dumps(result["graph"], indent=1)
                writer.add_text("graph", f"```json\n{text}\n```", 0)
                if self.pictures:
                    from mtlsearch.viz import draw_architecture

                    writer.add_figure("architecture", draw_architecture(result["graph"]), 0)
            reason = result.get("fail_reason") or result.get("pruned")
            if reason:
                writer.add_text("fail_reason", str(reason), 0)
        finally:
            writer.close()

    def close(self) -> None:
        with self._lock:
            for tracked in self._running.values():
                tracked.handle.close()
