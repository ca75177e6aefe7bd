"""Experiment trackers: a real tiny search logged to a file-backed MLflow store and to
TensorBoard event files, both read back; failures, resumes, missing extras, the CLI options."""

from __future__ import annotations

import argparse
import json
import math
import sys

import optuna
import pytest

from mtlsearch import search
from mtlsearch.cli.options import add_tracker_options, open_trackers
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.plugin_manager import list_plugins
from mtlsearch.study.trackers import (
    RUN_ID_ATTR,
    MLflowTracker,
    TensorBoardTracker,
    active_trackers,
    make_tracker,
    tracking,
)

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("torch.utils.tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

TINY = {"dataset": "synthetic", "space": "mlp", "trials": 2, "progress": False,
        "dataset_kwargs": {"n_tasks": 3, "n_samples": 240}, "space_kwargs": {"widths": [8, 8]},
        "budget": TrainConfig(epochs=1)}


@pytest.fixture
def store(tmp_path, monkeypatch):
    # MLflow 3 keeps the file store in maintenance mode behind this switch; it is the store
    # the tests can read without a server.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return f"file:{tmp_path / 'mlruns'}"


def _runs(uri: str, experiment: str) -> dict[str, object]:
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    return {r.data.tags.get("mtlsearch.role", "?") + ":" + r.data.tags.get(
        "mlflow.runName", ""): r for r in runs}


def test_a_search_is_logged_to_mlflow_and_tensorboard(tmp_path, store):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    with MLflowTracker(store) as tracker, TensorBoardTracker(tmp_path / "tb"):
        result = search(**TINY, storage=storage, study_name="s1", out=str(tmp_path / "out"))
    assert tracker._registered is None and not any("tracker" in p.name for p in list_plugins())
    study = optuna.load_study(study_name="s1", storage=storage)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    objectives = result.study.user_attrs["mtlsearch"]["objectives"]
    assert objectives == ["delta_mtl", "params"]

    # --- MLflow: one study run, one nested run per trial, everything read back
    client = mlflow.MlflowClient(store)
    runs = _runs(store, "s1")  # the experiment defaults to the study's name
    parent = runs["study:s1"]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["dataset"] == "synthetic"
    assert parent.data.params["dataset_kwargs.n_tasks"] == "3"
    for t in trials:
        run = runs[f"trial:trial {t.number}"]
        assert t.system_attrs[RUN_ID_ATTR] == run.info.run_id
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
        assert run.data.params == {**{k: str(v) for k, v in t.params.items()},
                                   "strategy": t.user_attrs["strategy"]}
        # objectives under their names (MLflowCallback), the other figures beside them
        assert run.data.metrics["delta_mtl"] == pytest.approx(t.values[0])
        assert run.data.metrics["params"] == t.values[1] == t.user_attrs["params"]
        assert run.data.metrics["delta_mtl_test"] == pytest.approx(t.user_attrs["delta_mtl_test"])
        for task, delta in t.user_attrs["per_task_delta"].items():
            assert run.data.metrics[f"delta/{task}"] == pytest.approx(delta)
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in history] == [0] and math.isfinite(history[0].value)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"graph.json", "architecture.png", "architecture.svg"}
        graph = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/graph.json")
        assert graph == t.user_attrs["graph"]

    # --- TensorBoard: one run folder per trial
    for t in trials:
        events = EventAccumulator(str(tmp_path / "tb" / "s1" / f"trial-{t.number}"),
                                  size_guidance={"scalars": 0, "tensors": 0, "images": 0})
        events.Reload()
        tags = events.Tags()
        assert [e.step for e in events.Scalars("train_loss")] == [0]
        assert events.Scalars("objective/delta_mtl")[0].value == pytest.approx(t.values[0],
                                                                               rel=1e-6)
        assert events.Scalars("objective/params")[0].value == t.values[1]
        assert events.Scalars("result/delta_mtl_test")[0].value == pytest.approx(
            t.user_attrs["delta_mtl_test"], rel=1e-6)
        assert "architecture" in tags["images"]
        text = events.Tensors("graph/text_summary")[0].tensor_proto.string_val[0].decode()
        assert json.loads(text.removeprefix("```json\n").removesuffix("\n```")) == \
            t.user_attrs["graph"]
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        logged = {k: v.number_value if v.HasField("number_value") else v.string_value
                  for k, v in start.hparams.items()}
        assert logged == {**t.params, "strategy": t.user_attrs["strategy"],
                          "state": "COMPLETE"}


def _fake_trial(study: optuna.Study) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_int("groups", 1, 3)
    return trial


def test_failed_trials_resumed_studies_and_no_optuna_integration(store, monkeypatch):
    study = optuna.create_study(study_name="hand", directions=["maximize", "minimize"])
    study.set_user_attr("mtlsearch", {"objectives": ["delta_mtl", "params"], "seed": 0})
    with MLflowTracker(store, experiment="exp", pictures=False) as tracker:
        trial = _fake_trial(study)
        tracker.on_trial_start(trial=trial, strategy="s", params=trial.params)
        tracker.on_epoch_end(epoch=0, logs={"epoch": 0, "train_loss": 1.5})
        tracker.on_epoch_end(epoch=1, logs={"epoch": 1, "train_loss": 0.5})
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        tracker.on_trial_end(trial=trial, strategy="s",
                             result={"state": "FAIL", "values": None, "fail_reason": "NaN loss"})
        tracker.on_epoch_end(epoch=0, logs={"train_loss": 9.0})  # outside any trial: ignored
    # A second tracker (a resumed study) nests under the same study run; without
    # optuna-integration the values and parameters are logged by hand, under the same names.
    monkeypatch.setitem(sys.modules, "optuna_integration.mlflow", None)
    with MLflowTracker(store, experiment="exp", pictures=False) as tracker:
        trial = _fake_trial(study)
        tracker.on_trial_start(trial=trial, strategy="s", params=trial.params)
        study.tell(trial, [1.25, 300])
        tracker.on_trial_end(trial=trial, strategy="s",
                             result={"state": "COMPLETE", "values": [1.25, 300.0],
                                     "delta_mtl": 1.25, "params": 300, "macs": 900})
    runs = _runs(store, "exp")
    assert sorted(runs) == ["study:hand", "trial:trial 0", "trial:trial 1"]
    failed, done = runs["trial:trial 0"], runs["trial:trial 1"]
    assert failed.info.status == "FAILED" and failed.data.tags["fail_reason"] == "NaN loss"
    client = mlflow.MlflowClient(store)
    assert [(m.step, m.value) for m in client.get_metric_history(
        failed.info.run_id, "train_loss")] == [(0, 1.5), (1, 0.5)]
    parents = {r.data.tags["mlflow.parentRunId"] for r in (failed, done)}
    assert parents == {runs["study:hand"].info.run_id}
    assert done.data.metrics == {"delta_mtl": 1.25, "params": 300.0, "macs": 900.0}
    assert done.data.params == {"groups": str(study.trials[1].params["groups"]),
                                "strategy": "s"}


def test_a_missing_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MTLSearchError, match=r"pip install 'mtlsearch\[mlflow\]'"):
        MLflowTracker()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MTLSearchError, match=r"pip install 'mtlsearch\[tensorboard\]'"):
        TensorBoardTracker(tmp_path)
    # nothing is left registered when one tracker of several cannot be made
    with pytest.raises(MTLSearchError, match="mtlsearch"):
        with tracking([f"tensorboard:{tmp_path}", "mlflow"]):
            pass
    assert not any("tracker" in p.name for p in list_plugins())


def test_tracker_specs(tmp_path, store):
    tracker = make_tracker(f"mlflow:{store}")
    assert isinstance(tracker, MLflowTracker) and tracker.tracking_uri == store
    board = make_tracker("tensorboard", default_dir=tmp_path)
    assert isinstance(board, TensorBoardTracker) and board.log_dir == tmp_path / "tensorboard"
    assert make_tracker("tensorboard:tb").log_dir.name == "tb"
    with pytest.raises(MTLSearchError, match="known: mlflow, tensorboard"):
        make_tracker("wandb")
    with pytest.raises(MTLSearchError, match="tensorboard:DIR"):
        make_tracker("tensorboard")


def test_cli_tracker_options_register_for_the_block(tmp_path, store):
    p = argparse.ArgumentParser()
    add_tracker_options(p.add_argument_group("tracking"))
    p.add_argument("--out", default=str(tmp_path))
    args = p.parse_args(["--tracker", f"mlflow:{store}", "--tracker", "tensorboard",
                         "--mlflow-experiment", "mine"])
    before = {p.name for p in list_plugins()}
    with open_trackers(args) as trackers:
        assert [type(t).__name__ for t in trackers] == ["MLflowTracker", "TensorBoardTracker"]
        assert trackers[0].experiment == "mine"
        assert trackers[1].log_dir == tmp_path / "tensorboard"
        assert len({p.name for p in list_plugins()} - before) == 2
    assert {p.name for p in list_plugins()} == before
    with open_trackers(p.parse_args([])) as none:
        assert none == []


def test_trackers_travel_to_worker_processes_as_their_settings(tmp_path, store):
    import pickle  # what multiprocessing does with a spawned worker's arguments

    mlflow_tracker = MLflowTracker(store, experiment="exp", pictures=False)
    board = TensorBoardTracker(tmp_path / "tb")
    with mlflow_tracker, board:
        assert set(map(id, active_trackers())) == {id(mlflow_tracker), id(board)}
        copies = [pickle.loads(pickle.dumps(t)) for t in active_trackers()]
    assert active_trackers() == []
    copy = next(c for c in copies if isinstance(c, MLflowTracker))
    assert (copy.tracking_uri, copy.experiment, copy.pictures) == (store, "exp", False)
    assert copy._registered is None and copy._running == {}
    tb_copy = next(c for c in copies if isinstance(c, TensorBoardTracker))
    assert tb_copy.log_dir == tmp_path / "tb" and tb_copy.pictures is True
    with tracking(copies):  # a worker registers its copies for the length of its loop
        assert len(active_trackers()) == 2
