"""Untrusted files never run code and never crash: mutated exports, graph JSON and GraphML.

Hypothesis mutates valid files (truncation, wrong types, huge sizes, unknown fields, mismatched
weights, a newer schema version, deep nesting); every case must load or raise an
``MTLSearchError`` subclass naming the problem, never another exception or a hang. Plugin
loading honours the allow- and block-lists, and a plugin that fails to import is reported.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
from mtlsearch.errors import MTLSearchError, UnsafeInputError
from mtlsearch.export import ARCHITECTURE_FILE, export_model, load
from mtlsearch.safety import load_json_text, read_graphml

TASKS = ["a", "b", "c"]
FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
TRIED: dict[str, int] = {}  # malformed inputs per kind (printed for docs/reliability.md)


@pytest.fixture(scope="module", autouse=True)
def _report_malformed_inputs_tried():
    yield
    print("\nmalformed inputs tried:", dict(TRIED), "total", sum(TRIED.values()))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    space = create_space("mlp", input_shape=(4,), widths=(8, 8))
    graph = SharingGraph.from_partitions(TASKS, [[TASKS], [["a", "b"], ["c"]]])
    model = materialize(graph, space, [TaskSpec(t) for t in TASKS])
    folder = tmp_path_factory.mktemp("export") / "model"
    export_model(model, folder, metrics={"val": {"a": 1.0}})
    return folder


def _copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def check_fails_cleanly(call) -> None:
    try:
        call()
    except MTLSearchError as exc:
        assert str(exc).strip(), "an error must say what is wrong"
    # anything else (KeyError, TypeError, RecursionError...) fails the test


# ----------------------------------------------------------------------------- mutations
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                 st.floats(allow_nan=True), st.text(max_size=20),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                      st.integers(), max_size=2))


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            yield from _paths(v, (*prefix, i))


DEEP = "__deep_nesting__"  # replaced in the text (hypothesis cannot print a deep object)


def _text(mutant) -> str:
    return json.dumps(mutant).replace(f'"{DEEP}"', "[" * 5000 + "]" * 5000)


@st.composite
def mutated_record(draw, record):
    record = copy.deepcopy(record)
    paths = [p for p in _paths(record) if p]
    path = draw(st.sampled_from(paths))
    parent = record
    for key in path[:-1]:
        parent = parent[key]
    kind = draw(st.sampled_from(["delete", "junk", "unknown", "version", "deep", "huge"]))
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "junk":
        parent[path[-1]] = draw(JUNK)
    elif kind == "unknown" and isinstance(parent, dict):
        parent["x_" + draw(st.text(min_size=1, max_size=8))] = draw(JUNK)
    elif kind == "version":
        record["schema_version"] = draw(st.integers(2, 10**6))
    elif kind == "deep":
        parent[path[-1]] = DEEP
    elif kind == "huge":
        parent[path[-1]] = draw(st.sampled_from([10**18, -1, 2**63, 1e308]))
    return record


def test_mutated_architecture_json_fails_cleanly(exported, tmp_path):
    record = json.loads((exported / ARCHITECTURE_FILE).read_text())

    @FAST
    @given(mutated_record(record))
    def check_mutant(mutant):
        folder = _copy(exported, tmp_path / "m")
        (folder / ARCHITECTURE_FILE).write_text(_text(mutant))
        TRIED["architecture.json"] = TRIED.get("architecture.json", 0) + 1
        check_fails_cleanly(lambda: load(folder))

    check_mutant()


@FAST
@given(cut=st.floats(0.0, 0.999), garbage=st.binary(max_size=64))
def test_truncated_or_garbled_files_fail_cleanly(exported, tmp_path, cut, garbage):
    for name in (ARCHITECTURE_FILE, "weights.safetensors"):
        folder = _copy(exported, tmp_path / "t")
        path = folder / name
        if not path.exists():
            continue
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)] + garbage)
        TRIED[name] = TRIED.get(name, 0) + 1
        with pytest.raises(MTLSearchError):
            load(folder)


def test_mismatched_weights_are_refused(exported, tmp_path):
    from safetensors.torch import load_file, save_file

    from mtlsearch.export.format import sha256_file as _sha256

    folder = _copy(exported, tmp_path / "w")
    record = json.loads((folder / ARCHITECTURE_FILE).read_text())
    weights = folder / record["weights"]["file"]
    state = load_file(str(weights))
    first = sorted(state)[0]
    state[first] = torch.zeros(*(s + 1 for s in state[first].shape))  # wrong shape
    save_file(state, str(weights))
    record["weights"]["sha256"] = _sha256(weights)  # a consistent but wrong export
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(record))
    with pytest.raises(MTLSearchError, match=first.split(".")[0]):
        load(folder)


def test_huge_architecture_file_is_refused_before_parsing(exported, tmp_path, monkeypatch):
    import mtlsearch.export.read as export

    folder = _copy(exported, tmp_path / "h")
    monkeypatch.setattr(export, "MAX_JSON_BYTES", 1000)
    (folder / ARCHITECTURE_FILE).write_text(" " * 2000 + "{}")
    with pytest.raises(MTLSearchError, match="limit"):
        load(folder)


def test_pickle_is_never_loaded(exported, tmp_path):
    """A weights file that is a pickle with a payload is refused and the payload never runs."""
    import pickle

    folder = _copy(exported, tmp_path / "p")
    canary = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (canary,))

    record = json.loads((folder / ARCHITECTURE_FILE).read_text())
    weights = folder / record["weights"]["file"]
    weights.write_bytes(pickle.dumps(Payload()))
    from mtlsearch.export.format import sha256_file as _sha256

    record["weights"]["sha256"] = _sha256(weights)
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(record))
    with pytest.raises(MTLSearchError):
        load(folder)
    assert not canary.exists()


# ----------------------------------------------------------------------------- graph JSON
def _graph_dict() -> dict:
    graph = SharingGraph.from_partitions(TASKS, [[TASKS], [["a", "b"], ["c"]]])
    graph.set_mask("c", graph.route("c")[-1], [1, 0, 1, 1])
    return graph.to_dict()


@FAST
@given(st.data())
def test_mutated_graph_json_fails_cleanly(data):
    mutant = data.draw(mutated_record(_graph_dict()))
    TRIED["graph.json"] = TRIED.get("graph.json", 0) + 1
    check_fails_cleanly(lambda: SharingGraph.from_json(_text(mutant)))


@FAST
@given(text=st.text(max_size=200))
def test_random_text_as_graph_json_fails_cleanly(text):
    TRIED["graph.json"] = TRIED.get("graph.json", 0) + 1
    check_fails_cleanly(lambda: SharingGraph.from_json("{" + text))


def test_deeply_nested_json_is_refused_without_recursion():
    with pytest.raises(UnsafeInputError, match="deeper|deeply"):
        load_json_text("[" * 100_000 + "]" * 100_000, what="graph")
    with pytest.raises(MTLSearchError):
        SharingGraph.from_json('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")


# ----------------------------------------------------------------------------- GraphML
@FAST
@given(cut=st.floats(0.0, 1.0), garbage=st.binary(max_size=40))
def test_mutated_graphml_fails_cleanly_or_parses(exported, tmp_path, cut, garbage):
    source = (exported / "architecture.graphml").read_bytes()
    path = tmp_path / "g.graphml"
    path.write_bytes(source[: int(len(source) * cut)] + garbage)
    TRIED["graphml"] = TRIED.get("graphml", 0) + 1
    check_fails_cleanly(lambda: read_graphml(path))


def test_graphml_entity_expansion_is_refused(tmp_path):
    bomb = ('<?xml version="1.0"?><!DOCTYPE g [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><graph edgedefault='
            '"directed"><node id="&b;"/></graph></graphml>')
    path = tmp_path / "bomb.graphml"
    path.write_text(bomb)
    with pytest.raises(UnsafeInputError, match="DOCTYPE"):
        read_graphml(path)


def test_exported_graphml_reads_back(exported):
    g = read_graphml(exported / "architecture.graphml")
    assert g.number_of_nodes() > 0


# ----------------------------------------------------------------------------- plugins
def _load_with(monkeypatch, **env):
    import importlib.metadata

    from mtlsearch import plugin_manager as pmod

    real = importlib.metadata.entry_points

    def entry_points(group=None, **kw):
        eps = list(real(group=group, **kw)) if group else real(**kw)
        if group != pmod.ENTRY_POINT_GROUP:
            return eps
        broken = importlib.metadata.EntryPoint("broken_plugin", "mtlsearch_no_such_module",
                                               group)
        return [*eps, broken]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    for key in ("MTLSEARCH_PLUGINS", "MTLSEARCH_DISABLE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pmod.reset_plugins()
    try:
        return {p.name for p in pmod.list_plugins()}, pmod.plugin_failures()
    finally:
        monkeypatch.undo()
        pmod.reset_plugins()


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_load(monkeypatch):
    names, failures = _load_with(monkeypatch)
    assert "broken_plugin" in failures and "mtlsearch_no_such_module" in failures["broken_plugin"]
    assert {"random_tree", "hard_sharing"} <= names and "broken_plugin" not in names


def test_allow_list_and_block_list_are_honoured(monkeypatch):
    names, failures = _load_with(monkeypatch, MTLSEARCH_PLUGINS="random_tree,single_task")
    assert names == {"random_tree", "single_task"} and failures == {}
    names, failures = _load_with(monkeypatch, MTLSEARCH_DISABLE_PLUGINS="random_tree,broken_plugin")
    assert "random_tree" not in names and "hard_sharing" in names and failures == {}


