"""Every registered strategy runs on the generated dense dataset; dense models export."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtlsearch.engine.scoring import evaluate
from mtlsearch.engine.train import TrainConfig
from mtlsearch.export import export_model, load, predict, predict_npz
from mtlsearch.registry import (
    create_space,
    create_strategy,
    list_strategies,
    load_dataset,
    tiny_settings,
)
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import run_strategy
from mtlsearch.tasks.kinds import get_task_kind


@pytest.fixture(scope="module")
def data():
    return load_dataset("dense_shapes", n_samples=40, size=16)


def _ctx(data, seed=0):
    space = create_space("dilated_resnet18", input_shape=(3, 16, 16), width=4)
    return SearchContext(
        data=data, space=space, budget=TrainConfig(epochs=1, batch_size=16), seed=seed
    )


# The policy phase's floor of policy steps is for real data; 20 show the path runs here.


@pytest.mark.parametrize("name", list_strategies())
def test_every_strategy_runs_on_dense_tasks(name, data):
    result = run_strategy(create_strategy(name, **tiny_settings("strategy", name)), _ctx(data))
    assert math.isfinite(result.delta_mtl)
    for task in data.task_names:
        assert set(result.metrics["val"][task]) >= set(
            get_task_kind(data.tasks[data.task_names.index(task)].kind).metrics
        )


def test_dense_search_is_deterministic(data):
    a = run_strategy(create_strategy("hard_sharing"), _ctx(data))
    b = run_strategy(create_strategy("hard_sharing"), _ctx(data))
    assert a.delta_mtl == b.delta_mtl


@pytest.mark.parametrize("head", ["aspp", "ppm"])
def test_dense_model_exports_to_onnx_and_predicts_maps(head, tmp_path):
    pytest.importorskip("onnxruntime")
    tasks = None if head == "aspp" else ["segment", "normals"]  # ppm: fewer heads, same paths
    data = load_dataset("dense_shapes", n_samples=30, size=16, head=head, tasks=tasks)
    ctx = _ctx(data)
    model = ctx.train(ctx.new_graph("hard_sharing")).model
    folder = export_model(model, tmp_path / "m", onnx=True, picture=False)
    again = load(folder)
    x = data.test.inputs
    out = predict(again, x.numpy())
    assert out["segment"].shape == (len(x), 16, 16)
    if "depth" in out:
        assert out["depth"].shape == (len(x), 1, 16, 16)
    assert np.allclose(np.linalg.norm(out["normals"], axis=1), 1.0, atol=1e-4)
    np.savez(tmp_path / "x.npz", X=x.numpy())
    written = predict_npz(folder, tmp_path / "x.npz", tmp_path / "maps.npz")
    with np.load(written) as maps:
        assert maps["normals"].shape == (len(x), 3, 16, 16)
        assert np.array_equal(maps["segment"], out["segment"])
    before, after = evaluate(model, data.test), evaluate(again, data.test)
    for task in data.task_names:
        assert after[task] == pytest.approx(before[task], rel=1e-5)
