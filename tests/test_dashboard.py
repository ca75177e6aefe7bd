"""optuna-dashboard opens a study written by mtlsearch (its WSGI app, called directly: no server)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from mtlsearch.engine.train import TrainConfig
from mtlsearch.study import search

optuna_dashboard = pytest.importorskip("optuna_dashboard")


def _get(app: Any, path: str, query: str = "") -> tuple[str, dict[str, Any]]:
    """Call the WSGI ``app`` with a minimal GET environ; the status line and the JSON body."""
    status: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": True,
    }

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(line)

    body = b"".join(app(environ, start_response))
    return status[0], json.loads(body)


def test_dashboard_lists_an_mtlsearch_study_and_its_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = search(
        strategy="random_tree", dataset="synthetic", space="mlp", trials=2, seed=1,
        storage=storage, study_name="dash", progress=False,
        dataset_kwargs={"n_tasks": 3, "n_samples": 160},
        space_kwargs={"widths": [8, 8]},
        budget=TrainConfig(epochs=1, batch_size=32),
    )
    ours = result.study.get_trials()
    app = optuna_dashboard.wsgi(storage)

    status, listing = _get(app, "/api/studies")
    assert status.startswith("200")
    [study] = listing["study_summaries"]
    assert study["study_name"] == "dash"
    assert study["directions"] == ["maximize", "minimize"]  # delta_mtl up, params down
    assert any(a["key"] == "mtlsearch" for a in study["user_attrs"])  # our settings record

    status, detail = _get(app, f"/api/studies/{study['study_id']}", "after=0")
    assert status.startswith("200")
    assert detail["name"] == "dash"
    trials = detail["trials"]
    assert [t["number"] for t in trials] == [t.number for t in ours] == [0, 1]
    assert [t["state"] for t in trials] == ["Complete", "Complete"]
    for shown, trial in zip(trials, ours):
        assert shown["values"] == pytest.approx(trial.values)
        keys = {a["key"] for a in shown["user_attrs"]}
        assert {"graph", "metrics", "delta_mtl", "params", "strategy"} <= keys
