"""Task kinds: target checking, losses and metrics against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from mtlsearch import TaskError, TaskSpec, UnknownNameError
from mtlsearch.tasks.kinds import get_task_kind


def _kind(name):
    return get_task_kind(name)


def test_unknown_kind_lists_known_ones():
    # "segmentation" itself is registered by mtlsearch.tasks.dense.kinds, so ask for another kind.
    with pytest.raises(UnknownNameError, match="unknown task kind 'optical_flow'; choose one of: binary, depth, edges, multiclass"):
        TaskSpec("x", kind="optical_flow")


def test_multiclass_needs_num_classes():
    with pytest.raises(TaskError, match="num_classes >= 2"):
        TaskSpec("x", kind="multiclass")


def test_spec_round_trip_and_unknown_fields():
    spec = TaskSpec("x", kind="multiclass", num_classes=4, weight=2.0)
    assert TaskSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(TaskError, match="unknown fields \\['colour'\\]"):
        TaskSpec.from_dict({"name": "x", "colour": "red"})


def test_binary_loss_masks_missing_labels_by_hand():
    spec = TaskSpec("x")
    kind = _kind("binary")
    target = kind.prepare_targets(spec, [1, 0, -1, float("nan")])
    assert torch.isnan(target[2:]).all()
    logits = torch.tensor([[2.0], [-1.0], [5.0], [7.0]])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    assert kind.loss(spec, logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_binary_labels_out_of_range():
    with pytest.raises(TaskError, match="must be 0 or 1.*\\[2.0\\]"):
        _kind("binary").prepare_targets(TaskSpec("x"), [0, 1, 2])


def test_multiclass_loss_and_accuracy():
    spec = TaskSpec("x", kind="multiclass", num_classes=3)
    kind = _kind("multiclass")
    target = kind.prepare_targets(spec, [0, 2, -1])
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [9.0, 9.0, 9.0]])
    lse0 = math.log(math.exp(3) + 2)
    lse1 = math.log(2 + math.e)
    expected = ((lse0 - 3.0) + (lse1 - 0.0)) / 2
    assert kind.loss(spec, logits, target).item() == pytest.approx(expected, rel=1e-6)
    acc = kind.new_accumulator(spec)
    acc.update(logits, target)
    assert acc.compute() == {"accuracy": 0.5}


def test_multiclass_labels_out_of_range_name_the_fix():
    with pytest.raises(TaskError, match="\\[0, 3\\).*\\[5\\].*raise num_classes"):
        _kind("multiclass").prepare_targets(TaskSpec("x", kind="multiclass", num_classes=3), [0, 5])


def test_regression_loss_and_metrics_skip_nan():
    spec = TaskSpec("x", kind="regression")
    kind = _kind("regression")
    target = kind.prepare_targets(spec, [1.0, float("nan"), 3.0])
    out = torch.tensor([[2.0], [100.0], [1.0]])
    assert kind.loss(spec, out, target).item() == pytest.approx((1 + 4) / 2)
    acc = kind.new_accumulator(spec)
    acc.update(out, target)
    metrics = acc.compute()
    assert metrics["mae"] == pytest.approx(1.5) and metrics["rmse"] == pytest.approx(math.sqrt(2.5))


def test_regression_out_dim_mismatch():
    with pytest.raises(TaskError, match="out_dim=1 but its labels have 2 values.*out_dim=2"):
        _kind("regression").prepare_targets(TaskSpec("x", kind="regression"), [[1, 2], [3, 4]])


def test_ranking_loss_is_paired_squared_hinge():
    spec = TaskSpec("r", kind="ranking")
    kind = _kind("ranking")
    scores = torch.tensor([[0.5], [0.0], [2.0]])
    target = torch.tensor([1.0, 0.0, 0.0])
    # Pairs with y_i > y_j: (0,1) margin 0.5 -> 0.25, (0,2) margin -1.5 -> 6.25.
    assert kind.loss(spec, scores, target).item() == pytest.approx((0.25 + 6.25) / 2)
    acc = kind.new_accumulator(spec)
    acc.update(torch.tensor([[3.0], [2.0], [1.0]]), torch.tensor([3.0, 2.0, 1.0]))
    assert acc.compute()["kendall_tau"] == pytest.approx(1.0)


def test_all_missing_gives_zero_loss_with_gradient():
    spec = TaskSpec("x")
    out = torch.zeros(2, 1, requires_grad=True)
    loss = _kind("binary").loss(spec, out, torch.tensor([float("nan")] * 2))
    assert loss.item() == 0.0
    loss.backward()
    assert out.grad is not None
    acc = _kind("binary").new_accumulator(spec)
    acc.update(out, torch.tensor([float("nan")] * 2))
    assert math.isnan(acc.compute()["accuracy"])
