"""Tests of export_model / load / predict: round trips, ONNX, refusals of corrupt exports."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

from mtlsearch import SharingGraph, TaskSpec, create_space, from_modules, materialize
from mtlsearch.errors import ExportError
from mtlsearch.export import (
    EXPORT_FORMAT,
    export_model,
    load,
    predict,
    predict_npz,
    read_architecture,
)

TASKS = ["a", "b", "c"]
SPECS = [
    TaskSpec("a"),
    TaskSpec("b", kind="multiclass", num_classes=3),
    TaskSpec("c", kind="regression", out_dim=2),
]
MLP = {"input_shape": (8,), "widths": (16, 16)}
CNN = {"input_shape": (1, 8, 8), "channels": (4, 4, 4), "pool_after": (0,)}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _graph(kind: str, channels: tuple[int, ...] = (16, 16)) -> SharingGraph:
    if kind == "hard":
        return SharingGraph.hard_sharing(TASKS, len(channels))
    partitions = [[TASKS], *[[["a", "b"], ["c"]]] * (len(channels) - 1)]
    graph = SharingGraph.from_partitions(TASKS, partitions)
    rng = np.random.default_rng(1)
    if kind == "masked":
        for task in TASKS:
            for node in graph.route(task):
                mask = rng.integers(0, 2, channels[graph.node_index(node)])
                mask[0] = 1  # never an all-off mask
                graph.set_mask(task, node, mask)
    if kind == "skips":
        graph.set_skip("c", graph.route("c")[-1])
        graph.set_skip("a", graph.route("a")[-1])
    return graph


def _model(kind: str, space_name: str = "mlp"):
    space = create_space(space_name, **(MLP if space_name == "mlp" else CNN))
    channels = tuple(b.channels for b in space.blocks)
    model = materialize(_graph(kind, channels), space, SPECS)
    _scramble(model)
    return model


def _scramble(model: nn.Module) -> None:
    """Random weights and BatchNorm statistics, so a load that drops any tensor shows."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=gen)
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)
            else:
                tensor.fill_(3)


def _x(space_name: str = "mlp", n: int = 5) -> torch.Tensor:
    shape = MLP["input_shape"] if space_name == "mlp" else CNN["input_shape"]
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(3))


def _outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def _export(model, folder: Path, **kwargs) -> Path:
    kwargs.setdefault("picture", False)
    return export_model(model, folder, **kwargs)


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("kind", ["hard", "tree", "masked", "skips"])
@pytest.mark.parametrize("space_name", ["mlp", "small_cnn"])
def test_roundtrip_gives_identical_outputs(tmp_path, kind, space_name):
    model = _model(kind, space_name)
    folder = _export(model, tmp_path / "run")
    loaded = load(folder)
    assert not loaded.training
    x = _x(space_name)
    expected, got = _outputs(model, x), _outputs(loaded, x)
    assert list(got) == TASKS
    for task in TASKS:
        assert torch.equal(expected[task], got[task]), task
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    ours, theirs = predict(model, x), predict(loaded, x)
    for task in TASKS:
        np.testing.assert_array_equal(ours[task], theirs[task])


def test_masks_are_reproduced_bit_for_bit(tmp_path):
    model = _model("masked")
    loaded = load(_export(model, tmp_path / "run"))
    original, again = model.graph.masks(), loaded.graph.masks()
    assert original and sorted(original) == sorted(again)
    for node, per_task in original.items():
        assert sorted(per_task) == sorted(again[node])
        for task, mask in per_task.items():
            assert again[node][task].dtype == bool
            np.testing.assert_array_equal(mask, again[node][task])
    buffers = dict(model.named_buffers())
    masks = {k: v for k, v in loaded.named_buffers() if k.startswith("_mask")}
    assert masks and all(torch.equal(buffers[k], v) for k, v in masks.items())
    assert loaded.graph.skips() == model.graph.skips()


def test_export_folder_contents(tmp_path):
    model = _model("tree")
    folder = export_model(model, tmp_path / "run", metrics={"val": {"a": 0.5}}, info={"seed": 3})
    names = {p.name for p in folder.iterdir()}
    assert names == {
        "architecture.json",
        "weights.safetensors",
        "architecture.png",
        "architecture.svg",
        "architecture.graphml",
    }
    record = json.loads((folder / "architecture.json").read_text())
    assert record["format"] == EXPORT_FORMAT and record["schema_version"] == 1
    assert record["graph"]["space"] == {"name": "mlp", "kwargs": model.space.kwargs}
    assert [s["name"] for s in record["graph"]["task_specs"]] == TASKS
    assert record["graph"]["task_specs"][1]["num_classes"] == 3
    assert record["input_shape"] == [8]
    assert record["metrics"] == {"val": {"a": 0.5}} and record["info"] == {"seed": 3}
    assert record["weights"]["tensors"] == {k: list(v.shape) for k, v in model.state_dict().items()}
    assert (folder / "architecture.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (folder / "architecture.svg").read_bytes()[:2000]
    graphml = nx.read_graphml(folder / "architecture.graphml")
    assert set(model.graph.block_nodes()) <= set(graphml.nodes)
    assert read_architecture(folder)["info"] == {"seed": 3}


def test_graph_without_space_gets_it_from_the_model(tmp_path):
    model = _model("hard")
    assert model.graph.space is None and model.graph.task_specs is None
    record = read_architecture(_export(model, tmp_path / "run"))
    assert record["graph"]["space"]["name"] == "mlp"
    assert record["graph"]["task_specs"] == [s.to_dict() for s in SPECS]
    assert model.graph.space is None  # the model's own graph is left alone


def test_metrics_are_made_json_ready(tmp_path):
    metrics = {"val": {"a": np.float32(0.25), "b": float("nan"), "c": torch.tensor(2.0)}}
    record = read_architecture(_export(_model("hard"), tmp_path / "run", metrics=metrics))
    assert record["metrics"] == {"val": {"a": 0.25, "b": None, "c": 2.0}}
    with pytest.raises(ExportError, match="metrics.val.a"):
        _export(_model("hard"), tmp_path / "bad", metrics={"val": {"a": object()}})
    info = {"tags": {"b", "a"}, "where": tmp_path, "obj": SPECS[0]}
    record = read_architecture(_export(_model("hard"), tmp_path / "info", info=info))
    assert record["info"]["tags"] == ["a", "b"] and record["info"]["where"] == str(tmp_path)
    assert record["info"]["obj"].startswith("TaskSpec(")


def test_export_replaces_an_earlier_export_and_refuses_other_folders(tmp_path):
    first, second = _model("hard"), _model("tree")
    folder = _export(first, tmp_path / "run")
    _export(second, folder)
    assert load(folder).graph.branches_per_depth() == [1, 2]
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ExportError, match="not empty"):
        _export(first, other)
    assert (other / "holiday.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "run"]  # no temp left


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    import mtlsearch.export.write as export

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_write_picture", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(_model("hard"), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_custom_space_needs_space_argument(tmp_path):
    space = from_modules([nn.Linear(8, 8), nn.Linear(8, 8)], input_shape=(8,))
    model = materialize(SharingGraph.hard_sharing(TASKS, 2), space, SPECS)
    with pytest.warns(UserWarning, match="not registered"):
        folder = _export(model, tmp_path / "run")
    with pytest.raises(ExportError, match="unknown search space 'custom'.*mlp"):
        load(folder)
    loaded = load(folder, space=space)
    x = _x()
    assert all(torch.equal(_outputs(model, x)[t], _outputs(loaded, x)[t]) for t in TASKS)


def test_load_leaves_the_global_rng_alone(tmp_path):
    folder = _export(_model("tree"), tmp_path / "run")
    state = torch.get_rng_state()
    load(folder)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_model_exports_and_loads_on_cuda(tmp_path):
    model = _model("masked", "small_cnn").cuda()
    folder = _export(model, tmp_path / "run", onnx=True)
    assert next(model.parameters()).is_cuda  # export leaves the model where it was
    loaded = load(folder, device="cuda")
    assert all(t.is_cuda for t in loaded.state_dict().values())
    assert all(b.is_cuda for name, b in loaded.named_buffers() if name.startswith("_mask"))
    x = _x("small_cnn")
    expected, got = _outputs(model, x.cuda()), _outputs(loaded, x.cuda())
    for task in TASKS:
        assert torch.equal(expected[task], got[task])
    out = predict(loaded, x.numpy())
    assert out["c"].shape == (5, 2)


# ------------------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize(("kind", "space_name"), [("tree", "mlp"), ("masked", "small_cnn")])
def test_onnx_matches_pytorch(tmp_path, kind, space_name):
    import onnxruntime

    model = _model(kind, space_name)
    model.train()
    folder = _export(model, tmp_path / "run", onnx=True)
    assert model.training  # export restores the mode
    record = read_architecture(folder)
    assert record["onnx"]["outputs"] == TASKS
    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for n in (1, 7):  # the batch axis is dynamic
        x = _x(space_name, n)
        got = session.run(None, {"input": x.numpy()})
        expected = _outputs(model, x)
        for task, array in zip(TASKS, got):
            np.testing.assert_allclose(array, expected[task].numpy(), atol=1e-4, rtol=1e-4)


def test_onnx_falls_back_on_the_torchscript_exporter(tmp_path, monkeypatch):
    import onnxruntime

    real_export = torch.onnx.export

    def no_dynamo(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("torch.export cannot trace this")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    model = _model("skips", "small_cnn")
    folder = _export(model, tmp_path / "run", onnx=True)
    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = _x("small_cnn", 4)
    expected = _outputs(model, x)
    for task, array in zip(TASKS, session.run(None, {"input": x.numpy()})):
        np.testing.assert_allclose(array, expected[task].numpy(), atol=1e-4, rtol=1e-4)


def test_onnx_disagreement_is_refused(tmp_path, monkeypatch):
    import onnxruntime

    real_run = onnxruntime.InferenceSession.run

    def wrong(self, *args, **kwargs):
        return [out + 1.0 for out in real_run(self, *args, **kwargs)]

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", wrong)
    with pytest.raises(ExportError, match="disagrees with PyTorch on task 'a'"):
        _export(_model("hard"), tmp_path / "run", onnx=True)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ refusals
@pytest.fixture
def exported(tmp_path) -> Path:
    return _export(_model("tree"), tmp_path / "run")


def _edit_json(folder: Path, change) -> None:
    path = folder / "architecture.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_missing_folder_and_files(tmp_path, exported):
    with pytest.raises(ExportError, match="no export folder"):
        load(tmp_path / "nowhere")
    (exported / "weights.safetensors").unlink()
    with pytest.raises(ExportError, match="weights.safetensors is missing"):
        load(exported)
    (exported / "architecture.json").unlink()
    with pytest.raises(ExportError, match="architecture.json is missing"):
        load(exported)


def test_truncated_json_is_refused(exported):
    path = exported / "architecture.json"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ExportError, match="architecture.json is not valid JSON.*truncated"):
        load(exported)


def test_oversized_json_is_refused(exported, monkeypatch):
    import mtlsearch.export.read as export

    monkeypatch.setattr(export, "MAX_JSON_BYTES", 100)
    with pytest.raises(ExportError, match="limit"):
        load(exported)


def test_newer_schema_version_is_refused(exported):
    _edit_json(exported, lambda r: r.update(schema_version=99))
    with pytest.raises(ExportError, match="schema version 99, newer.*upgrade mtlsearch"):
        load(exported)


def test_not_an_export_is_refused(exported):
    _edit_json(exported, lambda r: r.update(format="something.else"))
    with pytest.raises(ExportError, match="not an mtlsearch export"):
        load(exported)


def test_tampered_weights_fail_the_checksum(exported):
    path = exported / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="does not match the sha256"):
        load(exported)


def test_truncated_weights_are_refused(exported):
    path = exported / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ExportError, match="sha256"):
        load(exported)
    # Even with a matching checksum (a re-hashed truncated file) the reader refuses it.
    from mtlsearch.export.format import sha256_file

    digest = sha256_file(path)
    _edit_json(exported, lambda r: r["weights"].update(sha256=digest))
    with pytest.raises(ExportError, match="not a readable safetensors file"):
        load(exported)


def test_weights_from_another_graph_are_refused(tmp_path, exported):
    other = _export(_model("hard"), tmp_path / "other")
    graph = read_architecture(other)["graph"]
    _edit_json(exported, lambda r: r.update(graph=graph))
    with pytest.raises(ExportError, match=r"do not match the graph.*unexpected: blocks\.b1_1"):
        load(exported)


def test_unknown_space_lists_known_ones(exported):
    _edit_json(exported, lambda r: r["graph"]["space"].update(name="nope"))
    with pytest.raises(ExportError, match="unknown search space 'nope'.*mlp.*small_cnn"):
        load(exported)


def test_weights_file_outside_the_folder_is_refused(exported):
    _edit_json(exported, lambda r: r["weights"].update(file="../weights.safetensors"))
    with pytest.raises(ExportError, match="plain file name"):
        load(exported)


def test_invalid_graph_is_refused(exported):
    _edit_json(exported, lambda r: r["graph"].update(tasks=["a", "a"]))
    with pytest.raises(ExportError, match="invalid graph"):
        load(exported)


def test_load_never_unpickles(tmp_path, exported, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    for target, name in [(pickle, "load"), (pickle, "loads"), (torch, "load")]:
        monkeypatch.setattr(target, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    model = load(exported)
    np.savez(tmp_path / "in.npz", X=_x().numpy())
    predict_npz(exported, tmp_path / "in.npz", tmp_path / "out.npz")
    assert set(np.load(tmp_path / "out.npz").files) == set(model.tasks)


# ------------------------------------------------------------------------------- predict
def test_predict_shapes_batches_and_mode():
    model = _model("tree")
    model.train()
    x = _x(n=7)
    out = predict(model, x.numpy(), batch_size=3)
    assert model.training  # restored
    assert out["a"].shape == (7,) and ((out["a"] >= 0) & (out["a"] <= 1)).all()
    assert out["b"].shape == (7,) and out["b"].dtype == np.int64
    assert out["c"].shape == (7, 2)
    whole = predict(model, x, batch_size=256)
    for task in TASKS:
        np.testing.assert_allclose(out[task], whole[task], rtol=1e-6, atol=1e-6)
    # the message blames the inputs, naming what the model takes and what was given
    with pytest.raises(ExportError, match=r"inputs have shape \(2, 9\), i\.e\. \(9,\) per "
                       r"sample, but this model takes \(8,\) per sample"):
        predict(model, np.zeros((2, 9), dtype=np.float32))


def test_predict_npz(tmp_path, exported):
    np.savez(tmp_path / "in.npz", X=_x(n=6).numpy(), other=np.arange(3))
    out = predict_npz(exported, tmp_path / "in.npz", tmp_path / "out" / "pred.npz")
    with np.load(out, allow_pickle=False) as data:
        assert data["a"].shape == (6,) and data["b"].shape == (6,) and data["c"].shape == (6, 2)
    assert not [p for p in out.parent.iterdir() if p.name != "pred.npz"]  # no temp file left
    with pytest.raises(ExportError, match=r"no array 'inputs'.*'X'"):
        predict_npz(exported, tmp_path / "in.npz", tmp_path / "x.npz", input_key="inputs")
    np.savez(tmp_path / "objects.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ExportError, match="cannot be read"):
        predict_npz(exported, tmp_path / "objects.npz", tmp_path / "x.npz")
    with pytest.raises(ExportError, match="no input file"):
        predict_npz(exported, tmp_path / "missing.npz", tmp_path / "x.npz")


def test_module_docstring_example_runs(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a registered space: no warning
        model = materialize(
            SharingGraph.hard_sharing(["a", "b"], 2),
            create_space("mlp", **MLP),
            [TaskSpec("a"), TaskSpec("b")],
        )
        folder = export_model(model, tmp_path / "run", picture=False)
    assert sorted(predict(load(folder), torch.zeros(3, 8))) == ["a", "b"]


def test_enormous_blocks_in_a_tampered_architecture_are_refused_before_allocating(exported):
    record = json.loads((exported / "architecture.json").read_text())
    record["graph"]["space"]["kwargs"]["widths"] = [8, 10**9]  # 40 GB of weights if built
    (exported / "architecture.json").write_text(json.dumps(record))
    with pytest.raises(ExportError, match="do not match|cannot be built"):
        load(exported)
