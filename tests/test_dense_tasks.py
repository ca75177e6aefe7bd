"""Dense task kinds: losses and metrics against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mtlsearch.errors import TaskError
from mtlsearch.tasks.dense.kinds import confusion_metrics, edge_weights, per_sample_loss
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind, list_task_kinds


def _one_hot_logits(pred: list[list[int]], k: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(pred), k).permute(2, 0, 1)[None].float() * 5.0


SEG = TaskSpec("seg", kind="segmentation", num_classes=3)


def test_dense_kinds_are_registered_with_directions():
    assert {"segmentation", "depth", "normals", "edges"} <= set(list_task_kinds())
    assert get_task_kind("depth").metrics["abs_err"] is False
    assert get_task_kind("depth").metrics["delta1"] is True
    assert get_task_kind("normals").metrics["median_angle"] is False
    assert get_task_kind("normals").metrics["within_11.25"] is True


def test_segmentation_metrics_by_hand_with_ignore_label():
    kind = get_task_kind("segmentation")
    target = kind.prepare_targets(SEG, [[[0, 1, 255], [1, 1, 0]]])
    assert target.tolist() == [[[0, 1, -1], [1, 1, 0]]]
    out = _one_hot_logits([[0, 0, 2], [1, 2, 0]], 3)
    # Valid pixels: (t0,p0) (t1,p0) (t1,p1) (t1,p2) (t0,p0). IoU: class 0 2/3, class 1 1/3,
    # class 2 0/1 (a false positive only); the ignored pixel's prediction 2 does not count.
    m = kind.compute_metrics(SEG, out, target)
    assert m["miou"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert m["pixel_acc"] == pytest.approx(3 / 5)


def test_segmentation_loss_is_mean_cross_entropy_over_labelled_pixels():
    kind = get_task_kind("segmentation")
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(1, 3, 2, 3, generator=gen)
    target = kind.prepare_targets(SEG, [[[0, 1, 255], [2, 1, 0]]])
    manual = []
    for i in range(2):
        for j in range(3):
            t = int(target[0, i, j])
            if t >= 0:
                logits = out[0, :, i, j]
                manual.append(float(torch.logsumexp(logits, 0) - logits[t]))
    assert float(kind.loss(SEG, out, target)) == pytest.approx(sum(manual) / len(manual), rel=1e-5)


def test_segmentation_accumulates_like_one_pass_and_ignores_empty_samples():
    kind = get_task_kind("segmentation")
    gen = torch.Generator().manual_seed(1)
    out = torch.randn(4, 3, 5, 5, generator=gen)
    target = torch.randint(0, 3, (4, 5, 5), generator=gen)
    target[2] = -1  # a sample without any labelled pixel
    acc = kind.new_accumulator(SEG)
    acc.update(out[:2], target[:2])
    acc.update(out[2:], target[2:])
    assert acc.compute() == pytest.approx(kind.compute_metrics(SEG, out, target))
    assert kind.valid(target).tolist() == [True, True, False, True]


def test_confusion_metrics_of_an_empty_matrix_are_nan():
    m = confusion_metrics(torch.zeros(3, 3))
    assert math.isnan(m["miou"]) and math.isnan(m["pixel_acc"])


def test_depth_metrics_by_hand_with_invalid_depth():
    spec = TaskSpec("d", kind="depth")
    kind = get_task_kind("depth")
    target = kind.prepare_targets(spec, [[[2.0, 0.0], [4.0, math.nan]]])  # 0 and NaN invalid
    assert target.shape == (1, 1, 2, 2) and int(torch.isnan(target).sum()) == 2
    out = torch.tensor([[[[1.0, 5.0], [5.0, 3.0]]]])
    m = kind.compute_metrics(spec, out, target)
    # errors 1 and 1; relative 1/2 and 1/4; ratios 2 and 1.25
    assert m["abs_err"] == pytest.approx(1.0)
    assert m["rel_err"] == pytest.approx(0.375)
    assert m["delta1"] == pytest.approx(0.0)
    assert m["delta2"] == pytest.approx(0.5)
    assert m["delta3"] == pytest.approx(0.5)
    assert float(kind.loss(spec, out, target)) == pytest.approx(1.0)


def test_depth_loss_upsamples_coarse_outputs_and_has_gradient_without_labels():
    spec = TaskSpec("d", kind="depth")
    kind = get_task_kind("depth")
    out = torch.full((1, 1, 2, 2), 3.0, requires_grad=True)
    target = torch.full((1, 1, 4, 4), 1.0)
    assert float(kind.loss(spec, out, target).detach()) == pytest.approx(2.0)
    empty = torch.full((1, 1, 4, 4), math.nan)
    loss = kind.loss(spec, out, empty)
    loss.backward()
    assert float(loss.detach()) == 0.0 and out.grad is not None


def test_normals_metrics_by_hand():
    spec = TaskSpec("n", kind="normals")
    kind = get_task_kind("normals")
    # Four pixels: three valid (angles 0, 45, 90 degrees), one all-zero (invalid).
    gt = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.float32)
    pred = torch.tensor([[0, 0, 2], [1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float32)
    target = kind.prepare_targets(spec, gt.T.reshape(1, 3, 1, 4))
    out = pred.T.reshape(1, 3, 1, 4)
    m = kind.compute_metrics(spec, out, target)
    assert m["mean_angle"] == pytest.approx(45.0, abs=1e-4)
    assert m["median_angle"] == pytest.approx(45.0, abs=0.01)
    assert m["within_11.25"] == pytest.approx(1 / 3)
    assert m["within_22.5"] == pytest.approx(1 / 3)
    assert m["within_30"] == pytest.approx(1 / 3)
    loss = float(kind.loss(spec, out, target))
    assert loss == pytest.approx((0 + (1 - math.sqrt(0.5)) + 1) / 3, rel=1e-5)


def test_normals_median_matches_numpy_on_random_vectors():
    spec = TaskSpec("n", kind="normals")
    kind = get_task_kind("normals")
    gen = torch.Generator().manual_seed(3)
    gt = torch.randn(3, 3, 5, 7, generator=gen)
    out = gt + 0.7 * torch.randn(3, 3, 5, 7, generator=gen)
    target = kind.prepare_targets(spec, gt)
    acc = kind.new_accumulator(spec)
    acc.update(out[:1], target[:1])
    acc.update(out[1:], target[1:])
    cos = F.cosine_similarity(out, gt, dim=1).clamp(-1, 1).double()
    angles = np.degrees(np.arccos(cos.numpy().ravel()))
    m = acc.compute()
    assert m["median_angle"] == pytest.approx(float(np.median(angles)), abs=0.01)
    assert m["mean_angle"] == pytest.approx(float(angles.mean()), abs=1e-3)
    assert m["within_22.5"] == pytest.approx(float((angles < 22.5).mean()))


def test_edges_metrics_and_loss_by_hand():
    spec = TaskSpec("e", kind="edges")
    kind = get_task_kind("edges")
    assert kind.metrics == {"mae": False, "rmse": False, "f1": True}
    target = kind.prepare_targets(spec, [[[1.0, 0.0, math.nan]]])
    out = torch.tensor([[[[0.5, 0.5, 3.0]]]])
    m = kind.compute_metrics(spec, out, target)
    # At threshold 0.5: pixel 0 a true positive, pixel 1 a false positive, pixel 2 missing.
    assert m == pytest.approx({"mae": 0.5, "rmse": 0.5, "f1": 2 / 3, "precision": 0.5, "recall": 1.0})
    assert float(kind.loss(spec, out, target)) == pytest.approx(0.5)


EDGE_TARGET = [[[[1.0, 0.0, 0.0, 0.0, math.nan]], [[1.0, 1.0, 0.0, 0.0, 0.0]]],
               [[[0.0, 0.0, 0.0, 0.0, 0.0]], [[0.2, 0.9, 0.6, 0.0, 0.0]]]]  # (2, 2, 1, 5)
EDGE_OUTPUT = [[[[0.5, 0.5, 0.0, 0.25, 9.0]], [[1.0, 0.0, 0.0, 0.5, 0.0]]],
               [[[0.0, 0.0, 0.4, 0.0, 0.0]], [[0.0, 1.0, 0.0, 0.0, 0.0]]]]


def test_class_balanced_edge_loss_by_hand():
    spec = TaskSpec("k", kind="edges", out_dim=2, options={"balance": "hed"})
    kind = get_task_kind("edges")
    target = kind.prepare_targets(spec, EDGE_TARGET)
    out = torch.tensor(EDGE_OUTPUT)
    # Per map (sample, channel), positives (>= 0.5) weigh the negatives' share and vice versa:
    # map (0,0): 1 positive of 4 valid -> 3/4 and 1/4; map (0,1): 2 of 5 -> 3/5 and 2/5;
    # map (1,0): no positive -> every pixel 1/2; map (1,1): 2 of 5 (0.2 is negative).
    w = [[[3 / 4, 1 / 4, 1 / 4, 1 / 4, 0.0], [3 / 5, 3 / 5, 2 / 5, 2 / 5, 2 / 5]],
         [[1 / 2] * 5, [2 / 5, 3 / 5, 3 / 5, 2 / 5, 2 / 5]]]
    assert np.allclose(edge_weights(target, spec)[:, :, 0].numpy(), w)
    err = [[[0.5, 0.5, 0.0, 0.25, 0.0], [0.0, 1.0, 0.0, 0.5, 0.0]],
           [[0.0, 0.0, 0.4, 0.0, 0.0], [0.2, 0.1, 0.6, 0.0, 0.0]]]
    num = sum(wi * ei for wm, em in zip(w, err) for wr, er in zip(wm, em) for wi, ei in zip(wr, er))
    den = sum(sum(sum(r) for r in wm) for wm in w)
    assert float(kind.loss(spec, out, target)) == pytest.approx(num / den, rel=1e-6)
    # The plain L1 of the same maps (19 valid pixels), and MAE stays unweighted.
    plain = TaskSpec("k", kind="edges", out_dim=2)
    assert float(kind.loss(plain, out, target)) == pytest.approx(sum(map(sum, sum(err, []))) / 19)
    assert kind.compute_metrics(spec, out, target)["mae"] == pytest.approx(
        kind.compute_metrics(plain, out, target)["mae"])


def test_pos_weight_and_threshold_by_hand():
    spec = TaskSpec("e", kind="edges", options={"pos_weight": 4.0, "threshold": 0.8})
    kind = get_task_kind("edges")
    target = kind.prepare_targets(spec, [[[1.0, 0.5, 0.0, math.nan]]])
    out = torch.tensor([[[[0.0, 0.9, 0.5, 1.0]]]])
    # Only 1.0 reaches the threshold 0.8: weights 4, 1, 1; errors 1, 0.4, 0.5.
    assert float(kind.loss(spec, out, target)) == pytest.approx((4 * 1 + 0.4 + 0.5) / 6)
    m = kind.compute_metrics(spec, out, target)
    # Predicted positives: 0.9 (truth 0.5, negative) -> tp 0, fp 1, fn 1.
    assert (m["f1"], m["precision"], m["recall"]) == (0.0, 0.0, 0.0)


def test_edge_detection_scores_accumulate_over_batches():
    spec = TaskSpec("e", kind="edges", options={"balance": "hed"})
    kind = get_task_kind("edges")
    gen = torch.Generator().manual_seed(4)
    target = (torch.rand(5, 1, 6, 6, generator=gen) > 0.8).float()
    out = torch.rand(5, 1, 6, 6, generator=gen)
    acc = kind.new_accumulator(spec)
    acc.update(out[:2], target[:2])
    acc.update(out[2:], target[2:])
    pred, truth = (out >= 0.5).numpy(), (target >= 0.5).numpy()
    tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
    m = acc.compute()
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["recall"] == pytest.approx(tp / (tp + fn))
    # Nothing to find and nothing found is a perfect score, not a division by zero.
    empty = kind.compute_metrics(spec, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert empty["f1"] == 1.0


def test_balanced_edge_loss_finds_edges_where_plain_l1_predicts_none():
    """A model that can only tell the band near a boundary (16 pixels, 4 of them edges) from
    the rest (16 pixels, no edge) and outputs ``v`` on the band, 0 elsewhere: plain L1
    (4 |1 - v| + 12 |v|) is lowest at v = 0, no edge found; the class-balanced loss
    (4 * 28/32 |1 - v| + 12 * 4/32 |v|) at v = 1, the edges found."""
    target = torch.zeros(1, 1, 4, 8)
    target[0, 0, 1, :4] = 1.0
    band = torch.zeros(1, 1, 4, 8, dtype=torch.bool)
    band[0, 0, :2] = True
    kind = get_task_kind("edges")
    values = torch.linspace(0, 1, 11)
    for balance, best in (("none", 0.0), ("hed", 1.0)):
        spec = TaskSpec("e", kind="edges", options={"balance": balance})
        losses = [float(kind.loss(spec, band.float() * v, target)) for v in values]
        assert float(values[int(np.argmin(losses))]) == pytest.approx(best)
        assert losses[0] != pytest.approx(losses[-1])


def test_per_sample_loss_marks_unlabelled_samples():
    spec = TaskSpec("d", kind="depth")
    target = torch.tensor([[[[2.0]]], [[[0.0]]]])
    target = get_task_kind("depth").prepare_targets(spec, target)
    losses = per_sample_loss(spec, torch.ones(2, 1, 1, 1), target)
    assert losses[0] == pytest.approx(1.0) and math.isnan(float(losses[1]))


@pytest.mark.parametrize(
    ("spec_kwargs", "labels", "message"),
    [
        ({"kind": "segmentation", "num_classes": 3}, [[[0, 7]]], "must lie in"),
        ({"kind": "segmentation", "num_classes": 3}, [0, 1], "shape (N, H, W)"),
        ({"kind": "normals"}, torch.zeros(1, 2, 2, 2), "(N, 3, H, W)"),
        ({"kind": "depth"}, [[[math.inf]]], "infinity"),
    ],
)
def test_bad_labels_name_the_problem(spec_kwargs, labels, message):
    spec = TaskSpec("t", **spec_kwargs)
    with pytest.raises(TaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_task_kind(spec.kind).prepare_targets(spec, labels)


def test_bad_specs_name_the_problem():
    with pytest.raises(TaskError, match="num_classes"):
        TaskSpec("s", kind="segmentation")
    with pytest.raises(TaskError, match="balance"):
        TaskSpec("e", kind="edges", options={"balance": "focal"})
    with pytest.raises(TaskError, match="pos_weight"):
        TaskSpec("e", kind="edges", options={"pos_weight": 0})
    with pytest.raises(TaskError, match="not both"):
        TaskSpec("e", kind="edges", options={"pos_weight": 2.0, "balance": "hed"})
    with pytest.raises(TaskError, match="threshold"):
        TaskSpec("e", kind="edges", options={"threshold": "high"})
    with pytest.raises(TaskError, match="head"):
        TaskSpec("d", kind="depth", options={"head": "fcn"})
    with pytest.raises(TaskError, match="size"):
        TaskSpec("d", kind="depth", options={"size": [0, 4]})
