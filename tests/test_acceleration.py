"""GPU-path choices: resolved per device, and numerically neutral where they apply on the CPU."""

from __future__ import annotations

import pytest
import torch

from mtlsearch.data.dataset import MultiTaskDataset
from mtlsearch.engine.acceleration import (
    device_dataset,
    prepare_model,
    resolve,
    to_device_batch,
    uses_channels_last,
)
from mtlsearch.engine.model import materialize
from mtlsearch.engine.scoring import evaluate
from mtlsearch.engine.train import TrainConfig, Trainer, build_and_train
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.registry import create_space
from mtlsearch.tasks.kinds import TaskSpec

TASKS = [TaskSpec("a", "binary"), TaskSpec("b", "multiclass", num_classes=3)]


def _images(n: int = 48, seed: int = 0) -> MultiTaskDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 12, 12, generator=g)
    return MultiTaskDataset(
        x,
        {"a": (x.mean((1, 2, 3)) > 0).float(), "b": torch.randint(0, 3, (n,), generator=g)},
        TASKS,
    )


def _model(seed: int = 0):
    space = create_space("small_cnn", input_shape=(1, 12, 12), channels=(4, 8), pool_after=(0,))
    torch.manual_seed(seed)
    return materialize(SharingGraph.hard_sharing(["a", "b"], space.num_blocks), space, TASKS)


def test_automatic_choices_on_the_cpu():
    accel = resolve(TrainConfig(), torch.device("cpu"), input_ndim=4, datasets=(_images(),))
    # All off: channels-last is opt-in on the CPU (a torch CPU kernel crashes on some shapes).
    assert (accel.amp, accel.channels_last, accel.compile, accel.data_on_device) == (
        False, False, False, False,
    )
    assert resolve(TrainConfig(channels_last=True), torch.device("cpu"), input_ndim=4).channels_last


def test_explicit_choices_are_honoured_and_checked_against_the_input():
    cpu = torch.device("cpu")
    cfg = TrainConfig(channels_last=True, compile=True)
    assert resolve(cfg, cpu, input_ndim=4).channels_last
    assert resolve(cfg, cpu, input_ndim=4).compile
    # Vectors have no channels-last layout: the option is ignored rather than failing.
    assert not resolve(cfg, cpu, input_ndim=2).channels_last
    # bf16 autocast on the CPU is refused (slower than fp32), even when asked for.
    assert not resolve(TrainConfig(amp=True), cpu, input_ndim=4).amp
    assert not resolve(TrainConfig(data_on_device=True), cpu, input_ndim=4).data_on_device


def test_channels_last_model_gives_the_same_outputs_and_metrics():
    data = _images()
    plain, converted = _model(), _model()
    accel = resolve(TrainConfig(channels_last=True), torch.device("cpu"), input_ndim=4)
    forward = prepare_model(converted, accel)
    assert forward is converted and uses_channels_last(converted) and not uses_channels_last(plain)
    x = data.inputs[:8]
    x_cl = x.contiguous(memory_format=torch.channels_last)
    plain.eval(), converted.eval()  # a train-mode call would move the BN running statistics
    outputs = forward(x_cl)
    for t, out in plain(x).items():
        torch.testing.assert_close(outputs[t], out, rtol=1e-5, atol=1e-5)
    m_plain, m_cl = evaluate(plain, data, batch_size=16), evaluate(converted, data, batch_size=16)
    for t in m_plain:
        for k, v in m_plain[t].items():
            assert m_cl[t][k] == pytest.approx(v, rel=1e-5, abs=1e-6)


def test_channels_last_training_matches_default_training_on_the_cpu():
    data = _images(64)
    space = create_space("small_cnn", input_shape=(1, 12, 12), channels=(4, 8), pool_after=(0,))
    graph = SharingGraph.hard_sharing(["a", "b"], space.num_blocks)
    cfg = TrainConfig(epochs=2, batch_size=16, seed=1)
    base = build_and_train(graph, space, TASKS, data, None, cfg.replace(channels_last=False))
    cl = build_and_train(graph, space, TASKS, data, None, cfg.replace(channels_last=True))
    assert uses_channels_last(cl.model) and not uses_channels_last(base.model)
    for a, b in zip(base.history, cl.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)


def test_device_dataset_and_batches_keep_rows_and_only_requested_targets():
    data = _images(10)
    copy = device_dataset(data, torch.device("cpu"))
    assert torch.equal(copy.inputs, data.inputs) and copy.targets.keys() == data.targets.keys()
    batch = next(data.batches(4))
    x, y = to_device_batch(batch, torch.device("cpu"), ["b"], channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert set(y) == {"b"} and torch.equal(y["b"], data.targets["b"][:4])


def test_evaluation_counts_only_valid_labels_without_per_batch_syncs():
    # Task "a" has labels only in the first batch; its mean loss must use those alone.
    data = _images(32)
    data.targets["a"][8:] = float("nan")
    model = _model()
    full = evaluate(model, data, batch_size=8)
    first = evaluate(model, data.subset(range(8)), batch_size=8)
    assert full["a"]["loss"] == pytest.approx(first["a"]["loss"], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_automatic_choices_train():  # pragma: no cover - GPU only
    data = _images(64)
    model = _model()
    result = Trainer(TrainConfig(epochs=1, batch_size=16, device="cuda")).fit(model, data, data)
    assert uses_channels_last(result.model)
    assert result.model.graph is model.graph


def test_compiled_forward_trains_exactly_like_eager_on_the_cpu():
    # One compile of a small branched MLP (about 15 s on a loaded 2-core machine): the
    # option must work with any materialized model and change nothing numerically.
    tasks = [TaskSpec("a"), TaskSpec("b")]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    data = MultiTaskDataset(x, {"a": (x[:, 0] > 0).float(), "b": (x[:, 1] > 0).float()}, tasks)
    space = create_space("mlp", input_shape=(8,), widths=(8, 8))
    graph = SharingGraph.from_partitions(["a", "b"], [[["a", "b"]], [["a"], ["b"]]])
    cfg = TrainConfig(epochs=2, batch_size=16, seed=0)
    eager = build_and_train(graph, space, tasks, data, None, cfg)
    compiled = build_and_train(graph, space, tasks, data, None, cfg.replace(compile=True))
    for a, b in zip(eager.history, compiled.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    # The weights live in the model itself, not in a compiled wrapper (exports use them).
    assert not any(k.startswith("_orig_mod") for k in compiled.model.state_dict())
