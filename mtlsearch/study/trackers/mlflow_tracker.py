"""Log a search to MLflow: one run per study, one nested run per trial.

The trial run gets the trial's parameters and objective values from optuna-integration's
``MLflowCallback`` (which resumes the run through the trial's ``mlflow_run_id`` system
attribute, its own convention), and from this module what that callback cannot see: the
per-epoch losses, every figure of the trial, the graph JSON and the architecture picture.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from mtlsearch.study.trackers.base import (
    TrackedTrial,
    Tracker,
    flat_figures,
    iter_params,
    require,
)

__all__ = ["MLflowTracker", "RUN_ID_ATTR"]

log = logging.getLogger(__name__)

#: The trial system attribute that holds its MLflow run (optuna-integration's name for it).
RUN_ID_ATTR = "mlflow_run_id"
_STUDY_TAG, _ROLE_TAG = "mtlsearch.study", "mtlsearch.role"
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


class MLflowTracker(Tracker):
    """Track every trial of a search as an MLflow run, nested under one run per study.

    Args:
        tracking_uri: Where MLflow stores runs (``sqlite:///mlflow.db``, ``http://host:5000``,
            ``file:./mlruns``); ``None``: MLflow's default (``MLFLOW_TRACKING_URI`` or its own).
        experiment: The MLflow experiment (default: the study's name); created if missing.
        pictures: Also draw each trial's architecture (``architecture.png`` and ``.svg``).

    Each trial run holds: the trial's parameters and ``strategy``; its objective values (named
    after the objectives, e.g. ``delta_mtl``, ``params``) and every other figure
    (``delta_mtl_test``, ``macs``, ``delta/<task>``, ``test/<task>/<metric>``...); the
    per-epoch ``train_loss`` and ``val_loss`` (step = epoch); the artifacts ``graph.json``
    and ``architecture.png`` / ``.svg``; tags ``state`` and, for a failed trial,
    ``fail_reason``. The study run holds the study's settings as parameters.

    Example:
        >>> with MLflowTracker("sqlite:///mlflow.db", experiment="mtl"):  # doctest: +SKIP
        ...     search(dataset="synthetic", space="mlp", trials=4)
    """

    kind = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None, *,
                 pictures: bool = True) -> None:
        super().__init__()
        self.mlflow = require("mlflow", "mlflow")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.pictures = pictures
        self.client = self.mlflow.MlflowClient(tracking_uri)
        self._experiments: dict[str, str] = {}  # experiment name -> id
        self._study_runs: dict[str, str] = {}  # study name -> its run id
        self._callbacks: dict[tuple[str, ...], Any] = {}

    def settings(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "experiment": self.experiment,
                "pictures": self.pictures}

    # --------------------------------------------------------------- study level
    def experiment_id(self, study_name: str) -> str:
        """The id of the experiment a study logs to, created on first use."""
        name = self.experiment or study_name
        if name not in self._experiments:
            found = self.client.get_experiment_by_name(name)
            self._experiments[name] = (found.experiment_id if found is not None
                                       else self.client.create_experiment(name))
        return self._experiments[name]

    def study_run(self, trial: TrackedTrial) -> str:
        """The run of ``trial``'s study: found again when a study resumes, else created."""
        name = trial.study_name
        if name in self._study_runs:
            return self._study_runs[name]
        experiment = self.experiment_id(name)
        found = self.client.search_runs(
            [experiment], filter_string=f"tags.`{_STUDY_TAG}` = '{_quoted(name)}' and "
                                        f"tags.`{_ROLE_TAG}` = 'study'", max_results=1)
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment, run_name=name,
                                         tags={_STUDY_TAG: name, _ROLE_TAG: "study"})
            run_id = run.info.run_id
            settings = _flat(trial.settings())
            if settings:
                self.client.log_batch(run_id, params=[
                    self.mlflow.entities.Param(k, _text(v)) for k, v in settings.items()])
        self._study_runs[name] = run_id
        return run_id

    # --------------------------------------------------------------- trial level
    def start(self, trial: TrackedTrial) -> None:
        parent = self.study_run(trial)
        run = self.client.create_run(
            self.experiment_id(trial.study_name), run_name=f"trial {trial.number}",
            tags={"mlflow.parentRunId": parent, _STUDY_TAG: trial.study_name,
                  _ROLE_TAG: "trial", "strategy": trial.strategy})
        trial.handle = run.info.run_id
        storage = getattr(trial.study, "_storage", None)
        trial_id = _trial_id(trial)
        if storage is not None and trial_id is not None:  # MLflowCallback finds the run by it
            storage.set_trial_system_attr(trial_id, RUN_ID_ATTR, trial.handle)

    def epoch(self, trial: TrackedTrial, epoch: int, logs: dict[str, float]) -> None:
        Metric = self.mlflow.entities.Metric
        now = _now_ms()
        self.client.log_batch(trial.handle, metrics=[
            Metric(key, value, now, epoch) for key, value in logs.items()])

    def end(self, trial: TrackedTrial, result: dict[str, Any]) -> None:
        run_id = trial.handle
        objectives = list(trial.settings().get("objectives") or [])
        Metric = self.mlflow.entities.Metric
        now = _now_ms()
        figures = {k: v for k, v in flat_figures(result).items() if k not in objectives}
        self.client.log_batch(
            run_id, metrics=[Metric(k, v, now, 0) for k, v in figures.items()],
            params=[self.mlflow.entities.Param("strategy", trial.strategy)])
        if result.get("graph"):
            self.client.log_dict(run_id, result["graph"], "graph.json")
            if self.pictures:
                self._log_picture(run_id, result["graph"], trial)
        reason = result.get("fail_reason") or result.get("pruned")
        if reason:
            self.client.set_tag(run_id, "fail_reason", str(reason)[:5000])
        values = result.get("values")
        self._log_values_and_params(trial, objectives, values)
        self.client.update_run(run_id, name=f"trial {trial.number}")  # the callback renames it
        self.client.set_terminated(run_id, status=_STATUS.get(str(result.get("state")),
                                                              "FINISHED"))

    def close(self) -> None:
        # Trials still running were interrupted (the study queues them again): KILLED.
        runs = [(t.handle, "KILLED") for t in self._running.values() if t.handle]
        runs += [(run_id, "FINISHED") for run_id in self._study_runs.values()]
        for run_id, status in runs:
            try:
                self.client.set_terminated(run_id, status=status)
            except Exception as exc:  # a tracking server gone away must not fail the search
                log.warning("could not close the MLflow run %s: %s", run_id, exc)
        self._study_runs.clear()

    # --------------------------------------------------------------- helpers
    def _log_picture(self, run_id: str, graph: dict[str, Any], trial: TrackedTrial) -> None:
        from mtlsearch.viz import draw_architecture

        with tempfile.TemporaryDirectory() as folder:
            stem = Path(folder) / "architecture"
            draw_architecture(graph, stem, title=f"{trial.study_name} trial {trial.number}")
            for suffix in (".png", ".svg"):
                self.client.log_artifact(run_id, str(stem.with_suffix(suffix)))

    def _log_values_and_params(self, trial: TrackedTrial, objectives: list[str],
                               values: list[float] | None) -> None:
        """Objective values and the trial's parameters: MLflowCallback's job where it is."""
        frozen = _frozen(trial)
        callback = self._callback(trial, objectives, values)
        if callback is not None and frozen is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                callback(trial.study, frozen)
            return
        # No optuna-integration (or a future one without MLflowCallback): the same by hand.
        Metric, Param = self.mlflow.entities.Metric, self.mlflow.entities.Param
        names = objectives if values and len(objectives) == len(values) else \
            [f"value_{i}" for i in range(len(values or []))]
        self.client.log_batch(
            trial.handle,
            metrics=[Metric(n, float(v), _now_ms(), 0) for n, v in zip(names, values or [])],
            params=[Param(k, _text(v)) for k, v in iter_params(trial.params)])

    def _callback(self, trial: TrackedTrial, objectives: list[str],
                  values: list[float] | None) -> Any:
        if values is not None and len(objectives) != len(values):
            objectives = [f"value_{i}" for i in range(len(values))]
        key = (self.experiment_id(trial.study_name), *objectives)
        if key not in self._callbacks:
            try:
                from optuna_integration.mlflow import MLflowCallback
            except ImportError:
                self._callbacks[key] = None
            else:
                with warnings.catch_warnings():  # deprecated for a move to OptunaHub
                    warnings.simplefilter("ignore", FutureWarning)
                    self._callbacks[key] = MLflowCallback(
                        tracking_uri=self.tracking_uri or self.mlflow.get_tracking_uri(),
                        metric_name=objectives or "value", create_experiment=False,
                        mlflow_kwargs={"experiment_id": key[0], "nested": True},
                        tag_trial_user_attrs=False)  # graph JSON etc. go in artifacts
        return self._callbacks[key]


def _trial_id(trial: TrackedTrial) -> int | None:
    study = trial.study
    try:
        return study._storage.get_trial_id_from_study_id_trial_number(study._study_id,
                                                                     trial.number)
    except Exception:
        return None


def _frozen(trial: TrackedTrial) -> Any:
    trial_id = _trial_id(trial)
    if trial_id is None:
        return None
    return trial.study._storage.get_trial(trial_id)


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]  # MLflow's limit on a parameter's value


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
