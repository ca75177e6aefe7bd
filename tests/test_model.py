"""Materialized models against hand-written equivalents and route-by-route execution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mtlsearch import GraphError, SharingGraph, TaskError, TaskSpec, create_space, materialize
from mtlsearch.graph.plan import build_plan
from mtlsearch.graph.space import count_macs
from mtlsearch.graph.summary import summarize

TASKS = [TaskSpec("a"), TaskSpec("b", kind="multiclass", num_classes=3), TaskSpec("c", kind="regression")]
NAMES = [t.name for t in TASKS]


@pytest.fixture
def cnn():
    return create_space("small_cnn", input_shape=(1, 8, 8), channels=(4, 8, 8), pool_after=(0,))


class HandWritten(nn.Module):
    """The small CNN written out by hand: three conv-bn-relu blocks, pooled heads."""

    def __init__(self):
        super().__init__()
        self.conv0, self.bn0 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv1, self.bn1 = nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.heads = nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 3), nn.Linear(8, 1)])

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn0(self.conv0(x))), 2)
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        pooled = x.mean(dim=(2, 3))
        return [h(pooled) for h in self.heads]


def _copy_into_hand_written(model, hand):
    convs = [(hand.conv0, hand.bn0), (hand.conv1, hand.bn1), (hand.conv2, hand.bn2)]
    for i, (conv, bn) in enumerate(convs):
        block = model.blocks[f"b{i}_0"]
        src_conv = next(m for m in block.modules() if isinstance(m, nn.Conv2d))
        src_bn = next(m for m in block.modules() if isinstance(m, nn.BatchNorm2d))
        conv.load_state_dict(src_conv.state_dict())
        bn.load_state_dict(src_bn.state_dict())
    for head, name in zip(hand.heads, NAMES):
        src = next(m for m in model.heads[name].modules() if isinstance(m, nn.Linear))
        head.load_state_dict(src.state_dict())


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_hard_sharing_equals_hand_written_model(cnn, mode):
    torch.manual_seed(0)
    model = materialize(SharingGraph.hard_sharing(NAMES, 3), cnn, TASKS)
    hand = HandWritten()
    _copy_into_hand_written(model, hand)
    getattr(model, mode)()
    getattr(hand, mode)()
    x = torch.randn(5, 1, 8, 8)
    ours, theirs = model(x), hand(x)
    for name, expected in zip(NAMES, theirs):
        torch.testing.assert_close(ours[name], expected, rtol=1e-5, atol=1e-6)
    # Gradients agree as well.
    sum(o.sum() for o in ours.values()).backward()
    sum(o.sum() for o in theirs).backward()
    conv = next(m for m in model.blocks["b0_0"].modules() if isinstance(m, nn.Conv2d))
    torch.testing.assert_close(conv.weight.grad, hand.conv0.weight.grad, rtol=1e-4, atol=1e-6)


def test_tree_outputs_equal_each_route_run_on_its_own(cnn):
    graph = SharingGraph.from_partitions(NAMES, [[NAMES], [["a", "b"], ["c"]], [["a"], ["b"], ["c"]]])
    torch.manual_seed(1)
    model = materialize(graph, cnn, TASKS).eval()
    x = torch.randn(6, 1, 8, 8)
    joint = model(x)
    for task in NAMES:
        h = x
        for node in graph.route(task):
            h = model.blocks[node.replace(".", "_")](h)
        expected = model.heads[task](h)
        torch.testing.assert_close(joint[task], expected)
        torch.testing.assert_close(model(x, [task])[task], expected)


def test_masks_multiply_pre_activation_channels():
    space = create_space("mlp", input_shape=(4,), widths=(6, 6), norm=False)
    graph = SharingGraph.hard_sharing(["a", "b"], 2)
    mask_a, mask_b = np.array([1, 0, 1, 0, 1, 1]), np.array([0, 1, 1, 1, 0, 0])
    for node in graph.route("a"):
        graph.set_mask("a", node, mask_a)
        graph.set_mask("b", node, mask_b)
    torch.manual_seed(0)
    model = materialize(graph, space, [TaskSpec("a"), TaskSpec("b")]).eval()
    x = torch.randn(3, 4)
    out = model(x)
    for task, mask in (("a", mask_a), ("b", mask_b)):
        m = torch.tensor(mask, dtype=torch.float32)
        h = x
        for node in graph.route(task):
            linear = next(mod for mod in model.blocks[node.replace(".", "_")].modules() if isinstance(mod, nn.Linear))
            h = torch.relu(linear(h) * m)
        torch.testing.assert_close(out[task], model.heads[task](h))


def test_skip_runs_the_shortcut_and_projection_weights_are_shared():
    space = create_space("resnet18", input_shape=(3, 16, 16), width=4, small_input=True)
    projection_block = next(b.index for b in space.blocks if b.skip == "projection")
    graph = SharingGraph.hard_sharing(["a", "b"], space.num_blocks)
    node = graph.block_nodes(projection_block)[0]
    graph.set_skip("a", node)
    torch.manual_seed(0)
    model = materialize(graph, space, [TaskSpec("a"), TaskSpec("b")]).eval()
    x = torch.randn(2, 3, 16, 16)
    h = x
    for n in graph.route("a"):
        block = model.blocks[n.replace(".", "_")]
        h = block.shortcut(h) if n == node else block(h)
    torch.testing.assert_close(model(x)["a"], model.heads["a"](h))


def test_node_skipped_by_every_task_keeps_only_its_shortcut():
    space = create_space("resnet18", input_shape=(3, 16, 16), width=4, small_input=True)
    index = next(b.index for b in space.blocks if b.skip == "projection")
    graph = SharingGraph.hard_sharing(["a"], space.num_blocks)
    graph.set_skip("a", graph.block_nodes(index)[0])
    model = materialize(graph, space, [TaskSpec("a")])
    summary = summarize(graph, space, [TaskSpec("a")])
    assert summary.params == sum(p.numel() for p in model.parameters())
    assert summary.params < summarize(SharingGraph.hard_sharing(["a"], space.num_blocks), space, [TaskSpec("a")]).params


def test_summary_counts_match_the_model(cnn):
    graph = SharingGraph.from_partitions(NAMES, [[NAMES], [["a", "b"], ["c"]], [["a"], ["b"], ["c"]]])
    model = materialize(graph, cnn, TASKS).eval()
    summary = summarize(graph, cnn, TASKS)
    assert summary.params == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        measured = count_macs(model, lambda: model(torch.zeros(1, 1, 8, 8)))
    assert summary.macs == measured
    assert summary.branches_per_depth == [1, 2, 3]
    assert summary.block_passes == 6


def test_plan_shares_prefixes_and_batches_masked_routes():
    graph = SharingGraph.hard_sharing(["a", "b", "c"], 2)
    plan = build_plan(graph)
    assert plan.num_computations == 2 and len(set(plan.head_slots.values())) == 1
    for task, bits in zip("abc", ([1, 0], [0, 1], [1, 1])):
        graph.set_mask(task, "b0.0", bits)
    plan = build_plan(graph)
    first, second = plan.levels[0][0], plan.levels[1][0]
    assert len(first.run_inputs) == 1 and len(first.run_outputs) == 3  # one pass, three masks
    assert len(second.run_inputs) == 3  # three distinct inputs stacked into one pass
    assert plan.num_computations == 4


def test_one_task_runs_only_its_route(cnn):
    graph = SharingGraph.single_task(NAMES, 3)
    model = materialize(graph, cnn, TASKS)
    calls = []

    def recorded(key, run):
        def pre_activation(x):
            calls.append(key)
            return run(x)

        return pre_activation

    for key, block in model.blocks.items():
        block.pre_activation = recorded(key, block.pre_activation)
    model(torch.randn(2, 1, 8, 8), ["b"])
    assert sorted(set(calls)) == [n.replace(".", "_") for n in graph.route("b")]


def test_unknown_task_and_missing_spec_are_clear_errors(cnn):
    model = materialize(SharingGraph.hard_sharing(NAMES, 3), cnn, TASKS)
    with pytest.raises(TaskError, match="unknown tasks \\['z'\\]"):
        model(torch.randn(1, 1, 8, 8), ["z"])
    with pytest.raises(TaskError, match="no task spec for graph tasks \\['c'\\]"):
        materialize(SharingGraph.hard_sharing(NAMES, 3), cnn, TASKS[:2])
    with pytest.raises(GraphError, match="needs a SharingGraph"):
        materialize({"not": "a graph"}, cnn, TASKS)


def test_same_seed_same_weights(cnn):
    graph = SharingGraph.hard_sharing(NAMES, 3)
    torch.manual_seed(3)
    a = materialize(graph, cnn, TASKS).state_dict()
    torch.manual_seed(3)
    b = materialize(graph, cnn, TASKS).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_autocast_on_cpu_runs_and_stays_close(cnn):
    graph = SharingGraph.hard_sharing(NAMES, 3)
    for task in NAMES:
        graph.set_mask(task, "b2.0", np.arange(8) % 2)
    model = materialize(graph, cnn, TASKS).eval()
    x = torch.randn(4, 1, 8, 8)
    full = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    for task in NAMES:
        torch.testing.assert_close(low[task].float(), full[task], atol=0.1, rtol=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(cnn):
    model = materialize(SharingGraph.hard_sharing(NAMES, 3), cnn, TASKS).eval()
    x = torch.randn(4, 1, 8, 8)
    cpu = model(x)
    gpu = model.cuda()(x.cuda())
    for task in NAMES:
        torch.testing.assert_close(gpu[task].cpu(), cpu[task], atol=1e-4, rtol=1e-4)
