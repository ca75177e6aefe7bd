"""A study searched on the user's own data exports with its kept weights alone.

The dataset of a ``from_arrays`` search is recorded as ``"arrays"``, which no registry can
load: with kept weights nothing needs it (the trial's graph records the space and the task
specs); without them, retraining needs the data and the error says how to give it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_trial_artifacts import kept, no_training_patch  # noqa: F401  (kept: a fixture)

import mtlsearch.registry
from mtlsearch import export, from_arrays
from mtlsearch.cli.main import main
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import DatasetError, MTLSearchError
from mtlsearch.study import export_trial, open_study, search


def _splits():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5)).astype("float32")
    return from_arrays(X, {"smile": (X[:, 0] > 0).astype(int),
                           "age": X[:, 1] * 2.0 + 0.5,
                           "kind": (X[:, 2] > 0).astype(int) + (X[:, 3] > 0).astype(int)},
                       kinds={"age": "regression", "kind": "multiclass"})


def _no_dataset(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a dataset was loaded")
    monkeypatch.setattr(mtlsearch.registry, "load_dataset", refuse)
    monkeypatch.setattr("mtlsearch.study.trials.load_dataset", refuse)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "weights.safetensors"))


def test_a_study_on_arrays_exports_from_the_cli_with_its_weights_alone(
        kept, tmp_path, monkeypatch, capsys):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'own.db'}"
    kept.url = url
    splits = _splits()
    result = search(strategy="random_tree", dataset=splits, space="mlp", trials=2,
                    space_kwargs={"widths": [8, 8]}, storage=url, study_name="own",
                    out=tmp_path / "out", progress=False,
                    budget=TrainConfig(epochs=1, batch_size=16))
    assert result.study.user_attrs["mtlsearch"]["dataset"] == "arrays"
    best = result.best().number
    trained = kept.states["own", best]
    shutil.rmtree(tmp_path / "out" / "weights", ignore_errors=True)
    shutil.rmtree(tmp_path / "out" / "cache")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with monkeypatch.context() as m:
        _no_dataset(m)
        no_training_patch(m)
        rc = main(["export", "--storage", url, "--study", "own", "--best", "--out", "D"])
        assert rc == 0, capsys.readouterr().err
    exported = _weights(elsewhere / "D")
    assert sorted(exported) == sorted(trained)
    assert all(torch.equal(exported[k], v) for k, v in trained.items())
    model = export.load(elsewhere / "D")
    assert [t.name for t in model.task_specs] == ["smile", "age", "kind"]
    assert model.spec_of["kind"].num_classes == 3 and model.spec_of["age"].kind == "regression"
    out = model(splits.test.inputs)
    assert out["kind"].shape == (len(splits.test), 3) and out["age"].shape[0] == len(splits.test)

    # Without the weights: a clear error that says what is missing, where it looked, and how
    # to give the data or the weights.
    shutil.rmtree(tmp_path / "out" / "artifacts")
    capsys.readouterr()
    rc = main(["export", "--storage", url, "--study", "own", "--best", "--out", "F"])
    err = capsys.readouterr().err
    assert rc != 0 and not (elsewhere / "F").exists()
    assert "has no kept weights" in err and "'arrays' is not a registered name" in err
    assert "dataset=splits" in err and "--artifact-store" in err
    assert str(tmp_path / "out" / "artifacts") in err
    study = open_study(url, "own")
    with pytest.raises(MTLSearchError, match="needs the data it was searched on"):
        export_trial(study, best, elsewhere / "E")
    # Given the data, it retrains: the same seed gives the same weights on the CPU.
    folder = export_trial(study, best, elsewhere / "E", dataset=splits)
    exported = _weights(folder)
    assert all(torch.equal(exported[k], v) for k, v in trained.items())


def test_a_registered_dataset_that_no_longer_loads_names_the_cause(kept, tmp_path,  # noqa: F811
                                                                   monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    kept.url = url
    search(strategy="hard_sharing", dataset="synthetic", space="mlp", trials=1, storage=url,
           dataset_kwargs={"n_tasks": 3, "n_samples": 90}, space_kwargs={"widths": [4]},
           study_name="gone", out=tmp_path / "out", progress=False,
           budget=TrainConfig(epochs=1, batch_size=16))

    def missing(name, **kwargs):  # what a file-backed dataset whose file was moved raises
        raise DatasetError(f"no such .npz file: {tmp_path / 'data.npz'}")

    monkeypatch.setattr("mtlsearch.study.trials.load_dataset", missing)
    study = open_study(url, "gone")
    folder = export_trial(study, 0, tmp_path / "kept")  # with the weights: no data needed
    assert (folder / "weights.safetensors").is_file()
    shutil.rmtree(tmp_path / "out")
    with pytest.raises(MTLSearchError,
                       match=r"dataset 'synthetic' cannot be loaded: no such \.npz file"):
        export_trial(study, 0, tmp_path / "x")
    with pytest.raises(MTLSearchError, match="retrain is off"):
        export_trial(study, 0, tmp_path / "x", retrain=False)
