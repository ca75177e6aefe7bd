"""The loss weighting searched with the architecture: search, compare, export and the CLI."""

from __future__ import annotations

import json

import pytest

from mtlsearch import TrainConfig, load
from mtlsearch.cli import main
from mtlsearch.errors import MTLSearchError
from mtlsearch.study import export_trial, search

DATA = {"n_tasks": 3, "n_samples": 120}


def _search(tmp_path, weighting, trials=3, **kw):
    return search(strategy="hard_sharing", dataset="synthetic", space="mlp", trials=trials,
                  budget=TrainConfig(epochs=1, batch_size=32), dataset_kwargs=DATA,
                  space_kwargs={"widths": (8, 8)}, progress=False, weighting=weighting,
                  storage=f"sqlite:///{tmp_path}/s.db", out=tmp_path / "out", **kw)


def test_a_list_of_weightings_is_sampled_recorded_and_exported(tmp_path):
    result = _search(tmp_path, "equal,uw", trials=4)
    chosen = [t.params["weighting"] for t in result.study.trials]
    assert set(chosen) <= {"equal", "uw"} and len(chosen) == 4
    assert result.study.user_attrs["mtlsearch"]["weighting"] == ["equal", "uw"]
    number = next(t.number for t in result.study.trials if t.params["weighting"] == "uw")
    folder = export_trial(result.study, number, tmp_path / "export")
    record = json.loads((folder / "architecture.json").read_text())
    assert record["training"]["weighting"] == "uw"
    assert load(folder).train_info["weighting"] == "uw"


def test_a_fixed_weighting_is_not_a_parameter_and_resume_checks_it(tmp_path):
    result = _search(tmp_path, "dwa", trials=1)
    trial = result.study.trials[0]
    assert trial.user_attrs["train_overrides"]["weighting"] == "dwa"
    with pytest.raises(MTLSearchError, match="weighting"):
        _search(tmp_path, "uw", trials=2)  # the same study with another weighting


def test_the_cli_lists_weightings(capsys):
    assert main(["weightings", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"]: r for r in rows}
    assert {"equal", "uw", "dwa", "gradnorm", "rlw", "upgrad", "mgda", "pcgrad"} <= set(names)
    assert names["upgrad"]["kind"] == "gradient" and names["uw"]["kind"] == "loss"


def test_search_help_names_the_weighting_option(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "--weighting" in capsys.readouterr().out
