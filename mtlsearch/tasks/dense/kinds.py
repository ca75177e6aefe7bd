"""Dense task kinds: semantic segmentation, depth, surface normals and edge/keypoint maps.

Targets are per-pixel maps with one row per sample; outputs are ``(B, C, H, W)`` maps from a
dense head (:mod:`mtlsearch.tasks.dense.heads`), resized bilinearly to the target when they differ.
Invalid pixels are masked out of losses and metrics: the ignore label for segmentation,
depth ``<= 0`` or NaN, all-zero or NaN normals, NaN edges. Metrics are accumulated as running
sums on the device (a confusion matrix for mIoU, an angle histogram for the median), so
evaluating keeps no per-pixel outputs.

===============  ===========================  ==========================================
kind             loss                         metrics (↑ higher / ↓ lower is better)
===============  ===========================  ==========================================
``segmentation`` pixel cross-entropy          ``miou`` ↑, ``pixel_acc`` ↑
``depth``        L1                           ``abs_err`` ↓, ``rel_err`` ↓, ``delta1/2/3`` ↑
``normals``      1 - cosine (normalised)      ``mean_angle`` ↓, ``median_angle`` ↓,
                                              ``within_11.25/22.5/30`` ↑
``edges``        L1 (``balance`` option)      ``mae`` ↓, ``rmse`` ↓, ``f1`` ↑
===============  ===========================  ==========================================

Example:
    >>> spec = TaskSpec("seg", kind="segmentation", num_classes=3, options={"size": [8, 8]})
    >>> get_task_kind("segmentation").metrics
    {'miou': True, 'pixel_acc': True}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlsearch.errors import TaskError
from mtlsearch.hookspecs import TaskKindRegistrar, hookimpl
from mtlsearch.tasks.dense.heads import HEADS, make_dense_head, upsample_to
from mtlsearch.tasks.kinds import (
    MetricAccumulator,
    TaskKind,
    TaskSpec,
    as_tensor,
    get_task_kind,
    masked_mean,
)

__all__ = [
    "DenseKind",
    "SegmentationKind",
    "DepthKind",
    "NormalsKind",
    "EdgeKind",
    "EDGE_BALANCES",
    "edge_weights",
    "detection_scores",
    "DEFAULT_IGNORE_INDEX",
    "ANGLE_BINS_PER_DEGREE",
]

DEFAULT_IGNORE_INDEX = 255  # Cityscapes / VOC convention
ANGLE_BINS_PER_DEGREE = 100  # median angle error exact to 0.01 degrees
NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)


def _check_options(spec: TaskSpec) -> None:
    opts = spec.options
    if "head" in opts and opts["head"] not in HEADS:
        raise TaskError(f"task {spec.name!r}: options['head']={opts['head']!r}; use one of {list(HEADS)}")
    size = opts.get("size")
    if size is not None and (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and s > 0 for s in size)
    ):
        raise TaskError(
            f"task {spec.name!r}: options['size']={size!r} must be the output [height, width], "
            "e.g. [64, 64]"
        )


def _maps(t: Tensor, spec: TaskSpec, channels: int | None, what: str) -> Tensor:
    """``t`` as ``(N, C, H, W)`` (``(N, H, W)`` gains a channel axis when ``channels == 1``)."""
    if t.ndim == 3 and channels == 1:
        t = t.unsqueeze(1)
    if t.ndim != 4 or (channels is not None and t.shape[1] != channels):
        want = f"(N, {channels}, H, W)" if channels else "(N, C, H, W)"
        raise TaskError(
            f"{what} of task {spec.name!r} must have shape {want}, got {tuple(t.shape)}"
        )
    return t


def _fit(output: Tensor, target: Tensor) -> Tensor:
    """Resize ``output`` to the target's spatial size (heads without ``size`` stay coarse)."""
    return upsample_to(output.float(), target.shape[-2:])


class DenseKind(TaskKind):
    """Shared behaviour of dense kinds: per-pixel validity, dense heads, spec checks.

    A sample counts as labelled (:meth:`valid`) when at least one of its pixels is.
    """

    def check_spec(self, spec: TaskSpec) -> None:
        _check_options(spec)

    def pixel_valid(self, target: Tensor) -> Tensor:
        """``(N, H, W)`` mask of labelled pixels."""
        return ~torch.isnan(target).any(dim=1)

    def valid(self, target: Tensor) -> Tensor:
        return self.pixel_valid(target).flatten(1).any(dim=1)

    def make_head(self, spec: TaskSpec, feature_shape: Sequence[int]) -> nn.Module:
        return make_dense_head(spec.options, feature_shape, self.output_size(spec), task=spec.name)


class _SumAccumulator(MetricAccumulator):
    """Running sums on the device; ``compute`` divides (subclasses fill ``_update``)."""

    def __init__(self, kind: TaskKind, spec: TaskSpec):
        super().__init__(kind, spec)
        self.sums: dict[str, Tensor] = {}

    def add(self, name: str, value: Tensor) -> None:
        value = value.detach().double()
        self.sums[name] = self.sums[name] + value if name in self.sums else value


# ------------------------------------------------------------------------------ segmentation
class SegmentationKind(DenseKind):
    """Semantic segmentation into ``num_classes`` classes.

    Labels are ``(N, H, W)`` integers; ``options["ignore_index"]`` (default 255) and -1 mark
    unlabelled pixels. mIoU averages the IoU of the classes that occur in the prediction or
    the ground truth of the evaluated set.
    """

    name = "segmentation"
    metrics = {"miou": True, "pixel_acc": True}

    def check_spec(self, spec: TaskSpec) -> None:
        super().check_spec(spec)
        if spec.num_classes is None or spec.num_classes < 2:
            raise TaskError(
                f"segmentation task {spec.name!r} needs num_classes >= 2, got {spec.num_classes}"
            )

    def output_size(self, spec: TaskSpec) -> int:
        return int(spec.num_classes or 0)

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        t = as_tensor(y, spec)
        if t.ndim == 4 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim != 3:
            raise TaskError(
                f"labels of segmentation task {spec.name!r} must have shape (N, H, W), "
                f"got {tuple(t.shape)}"
            )
        if t.dtype.is_floating_point:
            t = torch.nan_to_num(t, nan=-1.0)
            if bool((t % 1 != 0).any()):
                raise TaskError(f"labels of segmentation task {spec.name!r} must be integers")
        t = t.long()
        ignore = int(spec.options.get("ignore_index", DEFAULT_IGNORE_INDEX))
        t = torch.where(t == ignore, torch.full_like(t, -1), t)
        bad = t[(t < -1) | (t >= int(spec.num_classes or 0))]
        if bad.numel():
            raise TaskError(
                f"labels of segmentation task {spec.name!r} must lie in [0, {spec.num_classes}) "
                f"or be the ignore label {ignore}, found {sorted(set(bad.tolist()))[:5]}; set "
                "num_classes or options['ignore_index']"
            )
        return t

    def pixel_valid(self, target: Tensor) -> Tensor:
        return target >= 0

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        per_pixel = F.cross_entropy(_fit(output, target), target.clamp(min=0), reduction="none")
        return masked_mean(per_pixel, target >= 0)

    def predict(self, spec: TaskSpec, output: Tensor) -> Tensor:
        return output.argmax(dim=1)

    def new_accumulator(self, spec: TaskSpec) -> MetricAccumulator:
        return _ConfusionAccumulator(self, spec)

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        acc = _ConfusionAccumulator(self, spec)
        acc.update(output, target)
        return acc.compute()


def confusion_metrics(confusion: Tensor) -> dict[str, float]:
    """mIoU and pixel accuracy from a ``(K, K)`` confusion matrix (rows: truth).

    Example:
        >>> confusion_metrics(torch.tensor([[2, 1], [0, 1]]))
        {'miou': 0.5833333333333333, 'pixel_acc': 0.75}
    """
    confusion = confusion.double()
    total = confusion.sum()
    if total == 0:
        return {"miou": math.nan, "pixel_acc": math.nan}
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    miou = (tp[present] / union[present]).mean()
    return {"miou": float(miou), "pixel_acc": float(tp.sum() / total)}


class _ConfusionAccumulator(MetricAccumulator):
    def __init__(self, kind: TaskKind, spec: TaskSpec):
        super().__init__(kind, spec)
        self.k = int(spec.num_classes or 0)
        self.confusion: Tensor | None = None

    def update(self, output: Tensor, target: Tensor) -> None:
        pred = _fit(output.detach(), target).argmax(dim=1)
        keep = target >= 0
        index = target[keep] * self.k + pred[keep]
        counts = torch.bincount(index, minlength=self.k * self.k).reshape(self.k, self.k)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def compute(self) -> dict[str, float]:
        if self.confusion is None:
            return {m: math.nan for m in self.kind.metrics}
        return confusion_metrics(self.confusion.cpu())


# ------------------------------------------------------------------------------------- depth
class DepthKind(DenseKind):
    """Depth maps ``(N, 1, H, W)`` (or ``(N, H, W)``); depth ``<= 0`` or NaN is invalid.

    Loss: L1 over valid pixels. Metrics: mean absolute and relative error, and the share of
    pixels with ``max(pred/gt, gt/pred) < 1.25**k`` for ``k = 1, 2, 3`` (predictions are
    clamped to ``options["min_depth"]``, default 1e-3, for the ratios).
    """

    name = "depth"
    metrics = {"abs_err": False, "rel_err": False, "delta1": True, "delta2": True, "delta3": True}

    def output_size(self, spec: TaskSpec) -> int:
        return 1

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        t = _maps(as_tensor(y, spec).float(), spec, 1, "depth maps")
        if bool(torch.isinf(t).any()):
            raise TaskError(f"depth maps of task {spec.name!r} contain infinity")
        return torch.where(t > 0, t, torch.full_like(t, math.nan))

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        valid = ~torch.isnan(target)
        err = (_fit(output, target) - torch.nan_to_num(target, nan=0.0)).abs()
        return masked_mean(err, valid)

    def new_accumulator(self, spec: TaskSpec) -> MetricAccumulator:
        return _DepthAccumulator(self, spec)

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        acc = _DepthAccumulator(self, spec)
        acc.update(output, target)
        return acc.compute()


class _DepthAccumulator(_SumAccumulator):
    def update(self, output: Tensor, target: Tensor) -> None:
        valid = ~torch.isnan(target)
        gt = target[valid].double()
        pred = _fit(output.detach(), target)[valid].double()
        err = (pred - gt).abs()
        self.add("n", torch.tensor(float(gt.numel()), device=gt.device))
        self.add("abs_err", err.sum())
        self.add("rel_err", (err / gt).sum())
        pred = pred.clamp(min=float(self.spec.options.get("min_depth", 1e-3)))
        ratio = torch.maximum(pred / gt, gt / pred)
        for k in (1, 2, 3):
            self.add(f"delta{k}", (ratio < 1.25**k).sum())

    def compute(self) -> dict[str, float]:
        n = float(self.sums["n"]) if "n" in self.sums else 0.0
        if n == 0:
            return {m: math.nan for m in self.kind.metrics}
        return {m: float(self.sums[m]) / n for m in self.kind.metrics}


# ----------------------------------------------------------------------------------- normals
class NormalsKind(DenseKind):
    """Surface normals ``(N, 3, H, W)``; all-zero or NaN vectors are invalid.

    Both prediction and ground truth are normalised; the loss is ``1 - cos`` (AdaShare's
    inverse cosine similarity). Metrics in degrees: mean and median angle error, and the
    share of pixels within 11.25, 22.5 and 30 degrees (median from a 0.01-degree histogram).
    """

    name = "normals"
    metrics = {
        "mean_angle": False,
        "median_angle": False,
        "within_11.25": True,
        "within_22.5": True,
        "within_30": True,
    }

    def output_size(self, spec: TaskSpec) -> int:
        return 3

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        t = _maps(as_tensor(y, spec).float(), spec, 3, "normal maps")
        if bool(torch.isinf(t).any()):
            raise TaskError(f"normal maps of task {spec.name!r} contain infinity")
        norm = torch.linalg.vector_norm(torch.nan_to_num(t), dim=1, keepdim=True)
        bad = (norm == 0) | torch.isnan(t).any(dim=1, keepdim=True)
        t = t / norm.clamp(min=1e-12)
        return torch.where(bad, torch.full_like(t, math.nan), t)

    def _cosine(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        valid = ~torch.isnan(target).any(dim=1)
        pred = F.normalize(_fit(output, target), dim=1)
        cos = (pred * torch.nan_to_num(target, nan=0.0)).sum(dim=1)
        return cos, valid

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        cos, valid = self._cosine(output, target)
        return masked_mean(1.0 - cos, valid)

    def predict(self, spec: TaskSpec, output: Tensor) -> Tensor:
        return F.normalize(output.float(), dim=1)

    def new_accumulator(self, spec: TaskSpec) -> MetricAccumulator:
        return _NormalsAccumulator(self, spec)

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        acc = _NormalsAccumulator(self, spec)
        acc.update(output, target)
        return acc.compute()


class _NormalsAccumulator(_SumAccumulator):
    def update(self, output: Tensor, target: Tensor) -> None:
        cos, valid = self.kind._cosine(output.detach(), target)  # type: ignore[attr-defined]
        angle = torch.rad2deg(torch.acos(cos[valid].double().clamp(-1.0, 1.0)))
        self.add("n", torch.tensor(float(angle.numel()), device=angle.device))
        self.add("mean_angle", angle.sum())
        for th in NORMAL_THRESHOLDS:
            self.add(f"within_{th:g}", (angle < th).sum())
        bins = 180 * ANGLE_BINS_PER_DEGREE
        self.add("hist", torch.histc(angle, bins=bins, min=0.0, max=180.0))

    def compute(self) -> dict[str, float]:
        n = float(self.sums["n"]) if "n" in self.sums else 0.0
        if n == 0:
            return {m: math.nan for m in self.kind.metrics}
        out = {m: float(self.sums[m]) / n for m in self.kind.metrics if m != "median_angle"}
        cum = torch.cumsum(self.sums["hist"].cpu(), 0)
        # Lower median: the first bin holding the ceil(n/2)-th smallest angle; its centre.
        k = int(torch.searchsorted(cum, torch.tensor(math.ceil(n / 2), dtype=cum.dtype)))
        out["median_angle"] = (k + 0.5) / ANGLE_BINS_PER_DEGREE
        return {m: out[m] for m in self.kind.metrics}


# ------------------------------------------------------------------------------------- edges
EDGE_BALANCES = ("none", "hed")


def edge_weights(target: Tensor, spec: TaskSpec) -> Tensor:
    """Per-pixel loss weights of an edge/keypoint map (0 where the target is NaN).

    A pixel is *positive* when its target is at least ``options["threshold"]`` (0.5).

    - ``options["balance"] == "hed"`` (class-balanced, as HED): within each map (one sample,
      one channel) a positive pixel weighs the share of negative pixels and a negative pixel
      the share of positive ones, so both classes count equally. A map holding only one
      class weighs each pixel 1/2 (as a map half edges, half not).
    - ``options["pos_weight"] = w``: positive pixels weigh ``w``, negative ones 1.
    - neither (``balance="none"``, the default): every valid pixel weighs 1.

    Example:
        >>> spec = TaskSpec("e", kind="edges", options={"balance": "hed"})
        >>> edge_weights(torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]]), spec).flatten().tolist()
        [0.75, 0.25, 0.25, 0.25]
    """
    valid = (~torch.isnan(target)).to(torch.float32)
    positive = (torch.nan_to_num(target, nan=0.0) >= _threshold(spec)).to(torch.float32) * valid
    negative = valid - positive
    if spec.options.get("balance", "none") == "hed":
        dims = tuple(range(2, target.ndim))
        n_pos, n_neg = positive.sum(dim=dims, keepdim=True), negative.sum(dim=dims, keepdim=True)
        total = (n_pos + n_neg).clamp(min=1.0)
        one_class = (n_pos == 0) | (n_neg == 0)
        w_pos = torch.where(one_class, torch.full_like(n_neg, 0.5), n_neg / total)
        w_neg = torch.where(one_class, torch.full_like(n_pos, 0.5), n_pos / total)
        return positive * w_pos + negative * w_neg
    pos_weight = spec.options.get("pos_weight")
    if pos_weight is not None:
        return positive * float(pos_weight) + negative
    return valid


def _threshold(spec: TaskSpec) -> float:
    return float(spec.options.get("threshold", 0.5))


class EdgeKind(DenseKind):
    """Edge or keypoint maps ``(N, out_dim, H, W)`` as regression; NaN marks missing pixels.

    Loss: L1, weighted per pixel by :func:`edge_weights` (``options["balance"]``: ``"none"``,
    the default, or ``"hed"`` for class-balanced weights; or ``options["pos_weight"]``) and
    divided by the sum of the weights, so it stays a mean absolute error. Metrics: ``mae`` ↓,
    ``rmse`` ↓ (unweighted), and ``f1`` ↑ of the pixels at or above ``options["threshold"]``
    (0.5) in prediction and truth, over the evaluated set; ``precision`` and ``recall`` are
    reported too but do not count in Δ_MTL.
    """

    name = "edges"
    metrics = {"mae": False, "rmse": False, "f1": True}

    def check_spec(self, spec: TaskSpec) -> None:
        super().check_spec(spec)
        if spec.out_dim < 1:
            raise TaskError(f"edges task {spec.name!r} needs out_dim >= 1 (channels per pixel)")
        opts = spec.options
        if opts.get("balance", "none") not in EDGE_BALANCES:
            raise TaskError(
                f"edges task {spec.name!r}: options['balance']={opts['balance']!r}; use one of "
                f"{list(EDGE_BALANCES)}"
            )
        pos_weight = opts.get("pos_weight")
        if pos_weight is not None:
            if isinstance(pos_weight, bool) or not isinstance(pos_weight, (int, float)) or not pos_weight > 0:
                raise TaskError(
                    f"edges task {spec.name!r}: options['pos_weight']={pos_weight!r} must be a "
                    "positive number (the weight of edge pixels; others weigh 1)"
                )
            if opts.get("balance", "none") != "none":
                raise TaskError(
                    f"edges task {spec.name!r}: give options['balance']='hed' or "
                    "options['pos_weight'], not both"
                )
        threshold = opts.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise TaskError(
                f"edges task {spec.name!r}: options['threshold']={threshold!r} must be a number "
                "(pixels at or above it are edges)"
            )

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        t = _maps(as_tensor(y, spec).float(), spec, spec.out_dim, "edge maps")
        if bool(torch.isinf(t).any()):
            raise TaskError(f"edge maps of task {spec.name!r} contain infinity")
        return t

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        err = (_fit(output, target) - torch.nan_to_num(target, nan=0.0)).abs()
        weights = edge_weights(target, spec)
        return (err * weights).sum() / weights.sum().clamp(min=1e-12)

    def new_accumulator(self, spec: TaskSpec) -> MetricAccumulator:
        return _EdgeAccumulator(self, spec)

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        acc = _EdgeAccumulator(self, spec)
        acc.update(output, target)
        return acc.compute()


def detection_scores(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Precision, recall and F1 from pixel counts; F1 is 1 when there is nothing to find and
    nothing was found, and a ratio with a zero denominator is 0 otherwise.

    Example:
        >>> detection_scores(2, 1, 1)
        {'f1': 0.6666666666666666, 'precision': 0.6666666666666666, 'recall': 0.6666666666666666}
    """
    if tp + fp + fn == 0:
        return {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    return {
        "f1": 2 * tp / (2 * tp + fp + fn),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
    }


class _EdgeAccumulator(_SumAccumulator):
    def update(self, output: Tensor, target: Tensor) -> None:
        valid = ~torch.isnan(target)
        fitted = _fit(output.detach(), target)[valid].double()
        gt = target[valid].double()
        err = fitted - gt
        threshold = _threshold(self.spec)
        pred_pos, true_pos = fitted >= threshold, gt >= threshold
        self.add("n", torch.tensor(float(err.numel()), device=err.device))
        self.add("abs", err.abs().sum())
        self.add("sq", err.pow(2).sum())
        self.add("tp", (pred_pos & true_pos).sum())
        self.add("fp", (pred_pos & ~true_pos).sum())
        self.add("fn", (~pred_pos & true_pos).sum())

    def compute(self) -> dict[str, float]:
        n = float(self.sums["n"]) if "n" in self.sums else 0.0
        if n == 0:
            return {m: math.nan for m in (*self.kind.metrics, "precision", "recall")}
        scores = detection_scores(*(float(self.sums[k]) for k in ("tp", "fp", "fn")))
        return {
            "mae": float(self.sums["abs"]) / n,
            "rmse": math.sqrt(float(self.sums["sq"]) / n),
            **scores,
        }


def per_sample_loss(spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
    """One loss per sample (NaN for a sample without a labelled pixel), for any dense kind.

    Example:
        >>> spec = TaskSpec("d", kind="depth")
        >>> per_sample_loss(spec, torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 2.0)).tolist()
        [1.0, 1.0]
    """
    kind = get_task_kind(spec.kind)
    losses = torch.stack([kind.loss(spec, output[i : i + 1], target[i : i + 1]) for i in range(len(output))])
    valid = kind.valid(target)
    return torch.where(valid, losses, torch.full_like(losses, math.nan))


# Tiny examples for the conformance check (mtlsearch.testing.check_task_kind): 8x8 maps and
# an output that predicts them exactly, for a batch of n samples.
_TINY_SIZE = 8
_TINY_OPTIONS = {"size": [_TINY_SIZE, _TINY_SIZE]}


def _segmentation_example(spec: TaskSpec, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    k = int(spec.num_classes or 2)
    y = torch.randint(0, k, (n, _TINY_SIZE, _TINY_SIZE), generator=gen)
    return y, F.one_hot(y, k).permute(0, 3, 1, 2).float() * 8 - 4


def _depth_example(spec: TaskSpec, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    y = torch.rand(n, 1, _TINY_SIZE, _TINY_SIZE, generator=gen) + 0.5
    return y, y.clone()


def _normals_example(spec: TaskSpec, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    y = F.normalize(torch.randn(n, 3, _TINY_SIZE, _TINY_SIZE, generator=gen), dim=1)
    return y, y.clone()


def _edges_example(spec: TaskSpec, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    y = (torch.rand(n, spec.out_dim, _TINY_SIZE, _TINY_SIZE, generator=gen) > 0.7).float()
    return y, y.clone()


@hookimpl
def register_task_kinds(register: TaskKindRegistrar) -> None:
    """Contribute the dense kinds, each with a tiny example for its conformance check."""
    common = {"feature_shape": (8, 4, 4)}
    register(SegmentationKind(), tiny={**common, "example": _segmentation_example,
                                       "spec": {"num_classes": 3, "options": _TINY_OPTIONS}})
    register(DepthKind(), tiny={**common, "example": _depth_example,
                                "spec": {"options": _TINY_OPTIONS}})
    # degrees: the median of a perfect output is the centre of the first 0.01-degree bin
    register(NormalsKind(), tiny={**common, "example": _normals_example, "atol": 0.01,
                                  "spec": {"options": _TINY_OPTIONS}})
    register(EdgeKind(), tiny={**common, "example": _edges_example,
                               "spec": {"options": _TINY_OPTIONS}})
