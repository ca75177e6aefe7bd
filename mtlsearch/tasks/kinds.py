"""Task specs and task kinds: what a task predicts, how it is trained and how it is scored.

A :class:`TaskSpec` is plain data (it is exported with every architecture). A :class:`TaskKind`
holds the behaviour shared by all tasks of one kind: target checking, loss, metrics and the
default head. Kinds live in a registry, so dense kinds (segmentation, depth, ...) are plugins
that need no change here. Missing labels (NaN, or -1 for classes) are masked out of losses
and metrics.

Binary tasks report accuracy, balanced accuracy, F1 and AUROC (torchmetrics); the one named
by ``options["metric"]`` (accuracy by default) is the task's primary metric in Δ_MTL, and
``options["pos_weight"]`` weights the positive class in the loss.

Example:
    >>> spec = TaskSpec("left_even", kind="binary")
    >>> sorted(get_task_kind(spec.kind).metrics)
    ['accuracy', 'auroc', 'balanced_accuracy', 'f1']
    >>> get_task_kind(spec.kind).delta_metrics(TaskSpec("rare", options={"metric": "f1"}))
    {'f1': True}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlsearch.errors import TaskError, UndefinedMetricWarning
from mtlsearch.hookspecs import TaskKindRegistrar, hookimpl
from mtlsearch.tasks.names import check_task_name

__all__ = [
    "TaskSpec",
    "TaskKind",
    "MetricAccumulator",
    "BINARY_METRICS",
    "BinaryKind",
    "MulticlassKind",
    "RegressionKind",
    "RankingKind",
    "VectorHead",
    "get_task_kind",
    "list_task_kinds",
]


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task.

    Args:
        name: Unique task name; the key of targets and outputs.
        kind: A registered task kind (``binary``, ``multiclass``, ``regression``, ``ranking``).
        num_classes: Number of classes, for ``multiclass``.
        out_dim: Output values per sample, for ``regression``.
        weight: Weight of this task's loss in the multi-task sum.
        options: Kind-specific settings (e.g. an ignore label for dense kinds).
    """

    name: str
    kind: str = "binary"
    num_classes: int | None = None
    out_dim: int = 1
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_task_name(self.name)  # one rule for every name (mtlsearch.tasks.names)
        get_task_kind(self.kind).check_spec(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        """Rebuild a spec from :meth:`to_dict`'s output; unknown fields are an error."""
        if not isinstance(data, dict):
            raise TaskError(f"a task spec must be an object, got {type(data).__name__}")
        known = {"name", "kind", "num_classes", "out_dim", "weight", "options"}
        extra = set(data) - known
        if extra:
            raise TaskError(f"task spec has unknown fields {sorted(extra)}; known: {sorted(known)}")
        return cls(**data)


class MetricAccumulator:
    """Collects a task's outputs and targets over batches, then computes its metrics.

    The default keeps everything on the CPU and hands the concatenation to the kind; dense
    kinds override :meth:`TaskKind.new_accumulator` with running sums instead.
    """

    def __init__(self, kind: TaskKind, spec: TaskSpec):
        self.kind, self.spec = kind, spec
        self._outputs: list[Tensor] = []
        self._targets: list[Tensor] = []

    def update(self, output: Tensor, target: Tensor) -> None:
        self._outputs.append(output.detach().float().cpu())
        self._targets.append(target.detach().cpu())

    def compute(self) -> dict[str, float]:
        if not self._outputs:
            return {m: math.nan for m in self.kind.metrics}
        output, target = torch.cat(self._outputs), torch.cat(self._targets)
        valid = self.kind.valid(target)
        if not bool(valid.any()):
            return {m: math.nan for m in self.kind.metrics}
        return self.kind.compute_metrics(self.spec, output[valid], target[valid])


class TaskKind:
    """Behaviour shared by every task of one kind.

    Subclasses set :attr:`name` and :attr:`metrics` (metric name -> higher is better) and
    implement :meth:`prepare_targets`, :meth:`loss` and :meth:`compute_metrics`. Optional:
    :meth:`make_head` (default: global pooling and a linear layer), :meth:`new_accumulator`.
    """

    name: ClassVar[str]
    metrics: ClassVar[dict[str, bool]]
    #: Modules ``compute_metrics`` imports on first use (a parallel search imports them before
    #: forking its workers, so none imports them again).
    scoring_modules: ClassVar[tuple[str, ...]] = ()

    def check_spec(self, spec: TaskSpec) -> None:
        """Raise :class:`TaskError` when the spec's fields do not fit this kind."""

    def output_size(self, spec: TaskSpec) -> int:
        """Number of output values per sample the head produces."""
        return spec.out_dim

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        """Validate labels and convert them to this kind's canonical tensor."""
        raise NotImplementedError

    def valid(self, target: Tensor) -> Tensor:
        """Boolean mask over samples whose label is present."""
        if target.dtype.is_floating_point:
            present = ~torch.isnan(target)
        else:
            present = target >= 0
        return present.reshape(present.shape[0], -1).all(dim=1)

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        """Mean loss over the samples with a label (zero, still differentiable, if none)."""
        raise NotImplementedError

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        """Metrics on labelled samples only (the accumulator has removed missing ones)."""
        raise NotImplementedError

    def delta_metrics(self, spec: TaskSpec) -> dict[str, bool]:
        """``{metric: higher is better}`` of the metrics Δ_MTL averages for ``spec`` (default:
        all of :attr:`metrics`; a kind may let the spec choose a primary one)."""
        return dict(self.metrics)

    def predict(self, spec: TaskSpec, output: Tensor) -> Tensor:
        """User-facing predictions from raw outputs (probabilities, classes, values)."""
        return output

    def new_accumulator(self, spec: TaskSpec) -> MetricAccumulator:
        return MetricAccumulator(self, spec)

    def make_head(self, spec: TaskSpec, feature_shape: Sequence[int]) -> nn.Module:
        return VectorHead(feature_shape, self.output_size(spec))


class VectorHead(nn.Module):
    """Global average pooling over spatial dimensions (if any), then a linear layer."""

    def __init__(self, feature_shape: Sequence[int], out_features: int):
        super().__init__()
        self.spatial = len(feature_shape) > 1
        self.linear = nn.Linear(int(feature_shape[0]), out_features)

    def forward(self, x: Tensor) -> Tensor:
        if self.spatial:
            x = x.flatten(2).mean(dim=2)
        return self.linear(x)


def as_tensor(y: Any, spec: TaskSpec) -> Tensor:
    """``y`` as a tensor, or a :class:`TaskError` naming ``spec``'s task when it is not one."""
    try:
        t = torch.as_tensor(y)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"labels of task {spec.name!r} are not numeric: {exc}") from None
    if t.ndim == 0:
        raise TaskError(f"labels of task {spec.name!r} must have one entry per sample, got a scalar")
    return t


def masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean over labelled entries, zero (still differentiable) when there are none.

    Multiplying by the mask instead of indexing with it keeps the loss free of host
    synchronisation, so a CUDA training step never waits on ``valid.any()``.
    """
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp(min=1.0)


#: The metrics a binary task can take as its primary one (``TaskSpec.options["metric"]``).
BINARY_METRICS = ("accuracy", "balanced_accuracy", "f1", "auroc")


class BinaryKind(TaskKind):
    """Binary attribute: one logit, labels 0/1, missing as NaN or -1.

    Every evaluation reports ``accuracy``, ``balanced_accuracy`` (mean recall of the two
    classes), ``f1`` (of the positive class) and ``auroc`` (area under the ROC curve of the
    logits), computed by torchmetrics (the values of scikit-learn's functions). ``options``:

    - ``metric``: the primary metric, the only one Δ_MTL counts for the task (one of
      :data:`BINARY_METRICS`; default ``accuracy``);
    - ``pos_weight``: a positive float multiplying the loss of positive samples (BCE's
      ``pos_weight``; ``n_negative / n_positive`` balances the classes).

    Rules where a split makes a metric undefined: AUROC with one class present is NaN, with
    :class:`~mtlsearch.errors.UndefinedMetricWarning`; F1 with no positive label and no positive
    prediction is 1.0 (nothing to find, nothing wrongly found).
    """

    name = "binary"
    scoring_modules = ("torchmetrics.functional.classification",)
    metrics = {"accuracy": True, "balanced_accuracy": True, "f1": True, "auroc": True}

    def check_spec(self, spec: TaskSpec) -> None:
        metric = spec.options.get("metric", "accuracy")
        if metric not in BINARY_METRICS:
            raise TaskError(
                f"binary task {spec.name!r}: unknown metric {metric!r} in options; known: "
                f"{list(BINARY_METRICS)}"
            )
        if "pos_weight" in spec.options:
            pw = spec.options["pos_weight"]
            if isinstance(pw, bool) or not isinstance(pw, Real) or not math.isfinite(pw) or pw <= 0:
                raise TaskError(
                    f"binary task {spec.name!r}: pos_weight must be a positive number (e.g. "
                    f"n_negative / n_positive), got {pw!r}"
                )

    def delta_metrics(self, spec: TaskSpec) -> dict[str, bool]:
        return {spec.options.get("metric", "accuracy"): True}

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        t = as_tensor(y, spec).reshape(-1).double()
        t = torch.where(t == -1, torch.full_like(t, math.nan), t)
        present = t[~torch.isnan(t)]
        bad = present[(present != 0) & (present != 1)]
        if bad.numel():
            raise TaskError(
                f"labels of binary task {spec.name!r} must be 0 or 1 (missing: NaN or -1), "
                f"found {sorted(set(bad.tolist()))[:5]}"
            )
        return t.float()

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        output = output.reshape(output.shape[0]).float()
        valid = ~torch.isnan(target)
        pos_weight = spec.options.get("pos_weight")
        weight = None if pos_weight is None else output.new_tensor(float(pos_weight))
        per_sample = F.binary_cross_entropy_with_logits(
            output, torch.nan_to_num(target, nan=0.0), reduction="none", pos_weight=weight
        )
        return masked_mean(per_sample, valid)

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        # torchmetrics' functional metrics: the same values as scikit-learn's (tests compare
        # them) at a tenth of the cost, which counts with 40 tasks evaluated every epoch.
        from torchmetrics.functional.classification import (
            binary_auroc,
            binary_f1_score,
            multiclass_recall,
        )

        score = output.reshape(-1).double()
        truth = target.reshape(-1).long()
        pred = (score > 0).long()
        accuracy = float((pred == truth).double().mean())
        one_class = bool((truth == truth[0]).all())
        result = {
            "accuracy": accuracy,
            # one class present: its recall, which is the accuracy (scikit-learn's value too)
            "balanced_accuracy": accuracy if one_class else float(multiclass_recall(
                pred, truth, num_classes=2, average="macro", validate_args=False)),
            "f1": float(binary_f1_score(pred, truth, threshold=0.5, zero_division=1.0,
                                        validate_args=False)),
        }
        if one_class:
            warnings.warn(
                f"AUROC of binary task {spec.name!r} is undefined: only class "
                f"{int(truth[0])} is present in this split; reported as NaN",
                UndefinedMetricWarning, stacklevel=2,
            )
            result["auroc"] = math.nan
        else:
            result["auroc"] = float(binary_auroc(score, truth, validate_args=False))
        return result

    def predict(self, spec: TaskSpec, output: Tensor) -> Tensor:
        return torch.sigmoid(output.reshape(output.shape[0]))


class MulticlassKind(TaskKind):
    """Single-label classification over ``num_classes`` classes; missing labels are -1."""

    name = "multiclass"
    metrics = {"accuracy": True}

    def check_spec(self, spec: TaskSpec) -> None:
        if spec.num_classes is None or spec.num_classes < 2:
            raise TaskError(
                f"multiclass task {spec.name!r} needs num_classes >= 2, got {spec.num_classes}"
            )

    def output_size(self, spec: TaskSpec) -> int:
        return int(spec.num_classes or 0)

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        t = as_tensor(y, spec).reshape(-1)
        if t.dtype.is_floating_point:
            if bool((t[~torch.isnan(t)] % 1 != 0).any()):
                raise TaskError(f"labels of multiclass task {spec.name!r} must be integers")
            t = torch.nan_to_num(t, nan=-1.0)
        t = t.long()
        bad = t[(t < -1) | (t >= int(spec.num_classes or 0))]
        if bad.numel():
            raise TaskError(
                f"labels of multiclass task {spec.name!r} must lie in [0, {spec.num_classes}) "
                f"(missing: -1), found {sorted(set(bad.tolist()))[:5]}; raise num_classes "
                "or fix the labels"
            )
        return t

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        per_sample = F.cross_entropy(output.float(), target.clamp(min=0), reduction="none")
        return masked_mean(per_sample, target >= 0)

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        return {"accuracy": float((output.argmax(dim=1) == target).float().mean())}

    def predict(self, spec: TaskSpec, output: Tensor) -> Tensor:
        return output.argmax(dim=1)


class RegressionKind(TaskKind):
    """Real-valued targets (``out_dim`` values per sample), mean squared error; NaN missing."""

    name = "regression"
    metrics = {"mae": False, "rmse": False}

    def check_spec(self, spec: TaskSpec) -> None:
        if spec.out_dim < 1:
            raise TaskError(f"regression task {spec.name!r} needs out_dim >= 1")

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        t = as_tensor(y, spec).float()
        t = t.reshape(t.shape[0], -1)
        if t.shape[1] != spec.out_dim:
            raise TaskError(
                f"regression task {spec.name!r} has out_dim={spec.out_dim} but its labels have "
                f"{t.shape[1]} values per sample; set out_dim={t.shape[1]}"
            )
        if bool(torch.isinf(t).any()):
            raise TaskError(f"labels of regression task {spec.name!r} contain infinity")
        return t

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        output = output.reshape(target.shape).float()
        valid = ~torch.isnan(target)
        squared = (output - torch.nan_to_num(target, nan=0.0)).pow(2)
        return masked_mean(squared, valid)

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        err = output.reshape(target.shape) - target
        return {"mae": float(err.abs().mean()), "rmse": float(err.pow(2).mean().sqrt())}


class RankingKind(TaskKind):
    """Pairwise ranking (Selective Sharing's bird attributes): order samples by a score.

    The loss is the paper's eq. 7 over every ordered pair in the batch whose targets differ,
    ``max(0, 1 - (f(x_i) - f(x_j)))^2`` for ``y_i > y_j``; the metric is Kendall's tau.
    """

    name = "ranking"
    scoring_modules = ("scipy.stats",)
    metrics = {"kendall_tau": True}

    def prepare_targets(self, spec: TaskSpec, y: Any) -> Tensor:
        t = as_tensor(y, spec).reshape(-1).float()
        if bool(torch.isinf(t).any()):
            raise TaskError(f"scores of ranking task {spec.name!r} contain infinity")
        return t

    def loss(self, spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
        out = output.reshape(output.shape[0]).float()
        higher = target[:, None] > target[None, :]  # comparisons with NaN are False: masked out
        margin = out[:, None] - out[None, :]
        return masked_mean(F.relu(1.0 - margin).pow(2), higher)

    def compute_metrics(self, spec: TaskSpec, output: Tensor, target: Tensor) -> dict[str, float]:
        from scipy.stats import kendalltau

        tau = kendalltau(output.reshape(-1).numpy(), target.numpy()).statistic
        return {"kendall_tau": float(tau) if tau == tau else 0.0}


def get_task_kind(name: str) -> TaskKind:
    """The registered kind called ``name``; unknown names list the known ones."""
    from mtlsearch.registry import task_kinds

    return task_kinds().get(name)


def list_task_kinds() -> list[str]:
    """Names of every registered task kind."""
    from mtlsearch.registry import task_kinds

    return task_kinds().names()


# Tiny examples for the conformance check (mtlsearch.testing.check_task_kind): labels and an
# output that predicts them exactly, for a batch of n samples.
def _two_classes(y: Tensor) -> Tensor:
    y[:2] = torch.tensor([0, 1])  # both classes present, whatever the draw
    return y


def _binary_example(spec: TaskSpec, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    y = _two_classes(torch.randint(0, 2, (n,), generator=gen))
    return y, (y.float() * 2 - 1).reshape(n, 1) * 8


def _multiclass_example(spec: TaskSpec, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    k = int(spec.num_classes or 2)
    y = torch.randint(0, k, (n,), generator=gen)
    return y, F.one_hot(y, k).float() * 8 - 4


def _regression_example(spec: TaskSpec, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    y = torch.randn(n, spec.out_dim, generator=gen)
    return y, y.clone()


def _ranking_example(spec: TaskSpec, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    y = torch.randn(n, generator=gen)
    return y, y.reshape(n, 1) * 10  # same order, margins past the hinge's 1


@hookimpl
def register_task_kinds(register: TaskKindRegistrar) -> None:
    """Contribute the vector kinds, each with a tiny example for its conformance check."""
    register(BinaryKind(), tiny={"example": _binary_example})
    register(MulticlassKind(), tiny={"example": _multiclass_example, "spec": {"num_classes": 3}})
    register(RegressionKind(), tiny={"example": _regression_example, "spec": {"out_dim": 2}})
    register(RankingKind(), tiny={"example": _ranking_example})
