"""Trial weights in Optuna's artifact store: a second checkout exports without retraining.

Every test runs on SQLite; the second-checkout test also runs on PostgreSQL when
``MTLSEARCH_TEST_POSTGRES_URL`` is set (``source scripts/start_postgres.sh``; CI sets it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import uuid
from pathlib import Path

import optuna
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from safetensors.torch import load_file, save

from mtlsearch.engine.train import TrainConfig, Trainer
from mtlsearch.errors import ExportError, MTLSearchError
from mtlsearch.study import export_trial, open_study, runner, search, trial_model, weights_path
from mtlsearch.study.artifacts import (
    ARTIFACT_ATTR,
    ArtifactRecord,
    describe_store,
    open_artifact_store,
)
from mtlsearch.study.trials import _graph_digest, save_weights

TINY = dict(strategy="random_tree", dataset="synthetic", space="mlp", progress=False,
            dataset_kwargs={"n_tasks": 3, "n_samples": 150},
            space_kwargs={"widths": [8, 8]}, budget=TrainConfig(epochs=1, batch_size=32))
PG_URL = os.environ.get("MTLSEARCH_TEST_POSTGRES_URL")


# ------------------------------------------------------------------------------ helpers
@pytest.fixture
def kept(monkeypatch):
    """``{(study, trial): trained state}`` of every trial a search keeps, taken at save time.

    Until the runner passes ``trial=`` and its artifact store to ``save_weights`` itself, the
    wrapper adds them as the runner will (the store under ``out``); once it does, the wrapper
    only watches.
    """
    states: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    models: dict[tuple[str, int], torch.nn.Module] = {}
    real = runner.save_weights

    def watch(model, path, study_name, number, graph, **kw):
        states[study_name, number] = {k: v.detach().clone() for k, v in
                                      model.state_dict().items()}
        models[study_name, number] = model
        if "trial" not in kw:  # the runner of before the artifact store
            study = optuna.load_study(study_name=study_name, storage=watch.url)
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, number)
            kw = dict(trial=optuna.Trial(study, trial_id), keep_file=True,
                      artifact_store=open_artifact_store(None, out=path.parent.parent))
        return real(model, path, study_name, number, graph, **kw)

    watch.url = None
    watch.states, watch.models = states, models
    monkeypatch.setattr(runner, "save_weights", watch)
    return watch


def tiny_search(kept, url: str, out: Path, name: str, **kw):
    kept.url = url
    return search(trials=2, storage=url, study_name=name, out=out, **{**TINY, **kw})


def no_training_patch(monkeypatch) -> None:
    """Make training, torch.load and unpickling fail the test."""
    for target, name in ((Trainer, "fit"), (torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(target, name, _refuse(f"{getattr(target, '__name__', target)}.{name}"))


def _refuse(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was called")
    return fail


def _exported(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "weights.safetensors"))


def _assert_same(exported: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> None:
    assert sorted(exported) == sorted(trained)
    for key, value in trained.items():
        assert torch.equal(exported[key], value), key


def _check_recorded(study: optuna.Study, out: Path, states: dict) -> None:
    """Each trial has one Optuna artifact, recorded with its id, size, hash and store."""
    for t in study.get_trials():
        record = ArtifactRecord.from_trial(t)
        metas = get_all_artifact_meta(t, storage=study._storage)
        assert [m.artifact_id for m in metas] == [record.id]
        assert metas[0].filename == f"trial_{t.number}.safetensors"
        assert record.store == f"file:{(out / 'artifacts').resolve()}"
        stored = out / "artifacts" / record.id
        assert stored.stat().st_size == record.size
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == record.sha256
        _assert_same(load_file(str(stored)), states[study.study_name, t.number])


def assert_second_checkout_exports_without_retraining(kept, url: str, tmp_path: Path, monkeypatch) -> None:
    first = tmp_path / "first"
    result = tiny_search(kept, url, first / "out", f"second-{uuid.uuid4().hex[:8]}")
    name = result.study.study_name
    best = result.best().number
    trained = kept.states[name, best]
    _check_recorded(result.study, first / "out", kept.states)
    # Only the storage and the artifact store remain of the first checkout.
    shutil.rmtree(first / "out" / "weights", ignore_errors=True)  # none once uploaded
    shutil.rmtree(first / "out" / "cache")
    assert sorted(p.name for p in (first / "out").iterdir()) == ["artifacts"]
    second = tmp_path / "second"
    second.mkdir()
    monkeypatch.chdir(second)
    no_training_patch(monkeypatch)
    study = open_study(url, name)
    folder = export_trial(study, "best", second / "exported", out=second / "out")
    _assert_same(_exported(folder), trained)
    record = json.loads((folder / "architecture.json").read_text())
    assert record["info"]["trial"] == best
    assert not (second / "out").exists()  # nothing retrained, nothing cached

    # The store moved (another mount point): the recorded folder is gone, so it is named
    # in the error; artifact_store= (a folder or a store) or out= finds it again.
    moved = tmp_path / "elsewhere" / "out"
    shutil.move(str(first / "out"), str(moved))
    with pytest.raises(MTLSearchError, match="store folder .* not found") as info:
        trial_model(study, "best", retrain=False)
    assert str(first / "out" / "artifacts") in str(info.value)
    a = export_trial(study, "best", second / "a", artifact_store=moved / "artifacts")
    b = export_trial(study, "best", second / "b", out=moved)
    c = export_trial(study, "best", second / "c",
                     artifact_store=FileSystemArtifactStore(moved / "artifacts"))
    for folder in (a, b, c):
        _assert_same(_exported(folder), trained)
    with pytest.raises(MTLSearchError, match="does not exist"):
        export_trial(study, "best", second / "d", artifact_store=tmp_path / "nowhere")


# ------------------------------------------------------------------------------ second checkout
def test_second_checkout_exports_from_the_artifact_store_without_retraining(
        kept, tmp_path, monkeypatch):
    assert_second_checkout_exports_without_retraining(kept, f"sqlite:///{tmp_path / 'study.db'}", tmp_path, monkeypatch)


@pytest.mark.skipif(not PG_URL and not os.environ.get("CI"),
                    reason="no PostgreSQL: `source scripts/start_postgres.sh` to run it")
def test_second_checkout_of_a_postgresql_study(kept, tmp_path, monkeypatch):
    if not PG_URL:
        pytest.fail("CI is set but MTLSEARCH_TEST_POSTGRES_URL is not: run "
                    "`source scripts/start_postgres.sh` before the tests")
    assert_second_checkout_exports_without_retraining(kept, PG_URL, tmp_path, monkeypatch)


# ------------------------------------------------------------------------------ bad artifacts
def _record_of(url: str, name: str, number: int) -> ArtifactRecord:
    study = open_study(url, name)
    return ArtifactRecord.from_trial(next(t for t in study.trials if t.number == number))


def _set_record(db: Path, name: str, number: int, record: dict) -> None:
    """Rewrite a finished trial's record in the SQLite file (what tampering would do)."""
    with sqlite3.connect(db) as con:
        (trial_id,) = con.execute(
            "SELECT t.trial_id FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = ? AND t.number = ?", (name, number)).fetchone()
        con.execute("UPDATE trial_user_attributes SET value_json = ? WHERE trial_id = ? AND "
                    "key = ?", (json.dumps(record), trial_id, ARTIFACT_ATTR))


def _put(store, data: bytes, tmp_path: Path) -> dict:
    """Write ``data`` to ``store`` under a new id; the record the storage would hold."""
    artifact_id = str(uuid.uuid4())
    (tmp_path / "blob").write_bytes(data)
    with (tmp_path / "blob").open("rb") as f:
        store.write(artifact_id, f)
    return {"id": artifact_id, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "store": describe_store(store)}


def test_damaged_or_foreign_artifacts_are_clear_errors_and_old_local_weights_export(
        kept, tmp_path, monkeypatch):
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    result = tiny_search(kept, url, tmp_path / "out", "bad")
    no_training_patch(monkeypatch)  # an error, never a retraining, and nothing unpickled
    record = _record_of(url, "bad", 0)
    stored = tmp_path / "out" / "artifacts" / record.id
    good = stored.read_bytes()

    def export(match: str, error=ExportError) -> None:
        with pytest.raises(error, match=match):
            export_trial(open_study(url, "bad"), 0, tmp_path / "x")
        assert not (tmp_path / "x").exists()

    flipped = bytearray(good)
    flipped[-1] ^= 0xFF  # one flipped bit in a tensor: safetensors alone would not see it
    stored.write_bytes(bytes(flipped))
    export(f"artifact {record.id} of trial 0 .* is damaged")
    stored.write_bytes(good[:100])
    export("holds 100 bytes")
    stored.write_bytes(good * 3)  # read no further than the recorded size
    export(f"more than {record.size} bytes")
    stored.write_bytes(good)
    _set_record(db, "bad", 0, {"id": record.id, "sha256": "x"})
    export("attribute is damaged")
    # Consistent hashes, wrong content: the safetensors metadata must catch it.
    _set_record(db, "bad", 0, _record_of(url, "bad", 1).to_dict())
    export("holds trial 1 of study 'bad', not trial 0")
    store = open_artifact_store(None, out=tmp_path / "out")
    tensors = {k: v.contiguous() for k, v in kept.states["bad", 0].items()}
    other_graph = save(tensors, metadata={"study": "bad", "trial": "0", "graph": "0" * 16})
    _set_record(db, "bad", 0, _put(store, other_graph, tmp_path))
    export("another architecture")
    _set_record(db, "bad", 0, _put(store, pickle.dumps({"a": 1}), tmp_path))  # torch.save's
    export("cannot be read as safetensors")

    # An older mtlsearch's study: out/weights/trial_<n>.safetensors and no artifact.
    best = result.best().number
    graph = next(t for t in result.study.trials if t.number == best).user_attrs["graph"]
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM trial_user_attributes WHERE key = ?", (ARTIFACT_ATTR,))
        con.execute("DELETE FROM trial_system_attributes WHERE key LIKE 'artifacts:%'")
    shutil.rmtree(tmp_path / "out")
    save_weights(kept.models["bad", best], weights_path(tmp_path / "out", best), "bad", best,
                 graph)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["weights"]
    folder = export_trial(open_study(url, "bad"), "best", tmp_path / "old", out=tmp_path / "out")
    _assert_same(_exported(folder), kept.states["bad", best])


# ------------------------------------------------------------------------------ the pieces
def test_save_weights_uploads_to_the_trial_and_leaves_no_file(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="u")
    trial = study.ask()
    model = torch.nn.Linear(3, 2)
    store = open_artifact_store(tmp_path / "store")
    kept = save_weights(model, None, "u", trial.number, {"g": 1}, trial=trial,
                        artifact_store=store)
    assert kept.path is None and kept.artifact is not None
    assert list(tmp_path.glob("**/*.safetensors")) == []  # the scratch copy is gone
    frozen = study._storage.get_trial(trial._trial_id)
    assert ArtifactRecord.from_trial(frozen) == kept.artifact
    stored = tmp_path / "store" / kept.artifact.id
    assert load_file(str(stored))["weight"].equal(model.weight)
    from safetensors import safe_open

    with safe_open(str(stored), framework="pt") as f:
        assert f.metadata() == {"study": "u", "trial": "0", "graph": _graph_digest({"g": 1})}
    only = save_weights(model, tmp_path / "o" / "t.safetensors", "u", trial.number, {"g": 1},
                        trial=trial, artifact_store=store)
    assert only.path is None and not (tmp_path / "o").exists()  # the store's copy only
    local = save_weights(model, tmp_path / "w" / "t.safetensors", "u", trial.number, {"g": 1},
                         trial=trial, artifact_store=store, keep_file=True)
    assert local.path == tmp_path / "w" / "t.safetensors" and local.path.is_file()
    plain = save_weights(model, tmp_path / "p.safetensors", "u", 0, {"g": 1})
    assert plain.artifact is None and plain.size == plain.path.stat().st_size
    with pytest.raises(MTLSearchError, match="needs a path"):
        save_weights(model, None, "u", 0, {"g": 1})


class FullStore(FileSystemArtifactStore):
    """A store on a disk that fills up halfway through a write."""

    def write(self, artifact_id, content_body):
        (self._base_path / artifact_id).write_bytes(content_body.read(10))
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_upload_leaves_no_partial_artifact_and_no_file(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="f")
    trial = study.ask()
    (tmp_path / "store").mkdir()
    with pytest.raises(OSError) as info:
        save_weights(torch.nn.Linear(3, 2), tmp_path / "out" / "weights" / "t.safetensors",
                     "f", trial.number, {}, trial=trial,
                     artifact_store=FullStore(tmp_path / "store"))
    assert info.value.errno == errno.ENOSPC  # the runner stops the study and requeues the trial
    assert list((tmp_path / "store").iterdir()) == []
    assert not (tmp_path / "out" / "weights").exists()
    assert ARTIFACT_ATTR not in study._storage.get_trial(trial._trial_id).user_attrs


def test_open_artifact_store_specs(tmp_path):
    assert open_artifact_store(None) is None
    default = open_artifact_store(None, out=tmp_path / "o")
    assert describe_store(default) == f"file:{(tmp_path / 'o' / 'artifacts').resolve()}"
    assert (tmp_path / "o" / "artifacts").is_dir()
    same = open_artifact_store(f"file:{tmp_path / 'o' / 'artifacts'}", create=False)
    assert describe_store(same) == describe_store(default)
    assert open_artifact_store(default) is default
    backoff = optuna.artifacts.Backoff(default)
    assert describe_store(backoff) == describe_store(default)
    with pytest.raises(MTLSearchError, match="does not exist"):
        open_artifact_store(tmp_path / "missing", create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(MTLSearchError, match="is not a folder"):
        open_artifact_store(tmp_path / "file")
    with pytest.raises(MTLSearchError, match="bucket name only"):
        open_artifact_store("s3://bucket/prefix")
    with pytest.raises(MTLSearchError, match="must be a folder"):
        open_artifact_store(42)
