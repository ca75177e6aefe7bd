"""The built-in loss weightings: equal, uncertainty (Kendall), DWA, GradNorm, random (RLW).

Each is a :class:`~mtlsearch.engine.weighting.base.Weighting` that turns the step's per-task
losses into one scalar. They work on the active tasks of a step, keyed by task name, so they
also weigh the single task of one-task sampling (GradNorm, which balances tasks against each
other, refuses it). torchjd 0.18 has scalarizers for uncertainty weighting, DWA and random
weighting too, but over a fixed-length vector of every task's loss and, for the random one,
with draws from the global random generator; here a step may carry a subset of the tasks and
draws come from the training's own seed, so these few lines are ours, and the tests check
them against torchjd's on the steps where both apply.

Example:
    >>> import torch
    >>> uw = UncertaintyWeighting()
    >>> uw.setup(["a", "b"], device=torch.device("cpu"))
    >>> float(uw.combine({"a": torch.tensor(2.0), "b": torch.tensor(4.0)}, None).detach())
    3.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtlsearch.engine.weighting.base import BACKWARD_SHARE, Weighting, WeightingStep
from mtlsearch.errors import MTLSearchError, TrainingError

__all__ = [
    "DynamicWeightAverage",
    "EqualWeighting",
    "GradNorm",
    "RandomLossWeighting",
    "UncertaintyWeighting",
]


class EqualWeighting(Weighting):
    """The sum of the (fixed-weighted) task losses: ``Σ_t w_t L_t``, ``w_t`` the task weights.

    The default; exactly what the trainer did before weightings existed.
    """

    name: ClassVar[str] = "equal"
    description: ClassVar[str] = "sum of the task losses (fixed task weights)"
    distributed: ClassVar[bool] = True
    plain_sum: ClassVar[bool] = True

    def combine(self, losses: Mapping[str, Tensor], step: WeightingStep | None) -> Tensor:
        """``Σ_t L_t`` (the losses come multiplied by their task weights)."""
        return sum(losses.values())  # type: ignore[return-value]

    def weights(self) -> dict[str, float]:
        """One for every task."""
        return {t: 1.0 for t in self.tasks}


class UncertaintyWeighting(Weighting):
    """Uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018), with the paper's ½ factors.

    ``Σ_t ½ exp(-s_t) L_t + ½ s_t`` over the step's tasks, ``s_t = log σ_t²`` a learnable
    log-variance per task, trained by the model's optimizer (the trainer adds it). This is the
    paper's regression form (``L/(2σ²) + log σ``) for every task, as torchjd's ``UW`` and
    LibMTL's UW write it; the minimum over ``s_t`` is at ``exp(s_t) = L_t``.

    Args:
        init: Initial log-variance of every task (``0``: weights of ½ at the start).
    """

    name: ClassVar[str] = "uw"
    description: ClassVar[str] = "uncertainty weighting: learned log-variances (Kendall 2018)"
    distributed: ClassVar[bool] = True  # the trainer averages its gradients over the ranks

    def __init__(self, *, init: float = 0.0):
        self.init = float(init)

    def setup(self, tasks: Sequence[str], *, device: torch.device, seed: int = 0) -> None:
        super().setup(tasks, device=device, seed=seed)
        self.log_var = nn.Parameter(torch.full((len(tasks),), self.init, device=device))
        self.index = {t: i for i, t in enumerate(tasks)}

    def parameters(self) -> list[nn.Parameter]:
        """The log-variances ``s``, one per task."""
        return [self.log_var]

    def combine(self, losses: Mapping[str, Tensor], step: WeightingStep | None) -> Tensor:
        """``Σ_t ½ exp(-s_t) L_t + ½ s_t`` over the tasks of ``losses``."""
        if len(losses) == len(self.index):  # every task: one vectorised expression
            s = self.log_var
            values = torch.stack([losses[t] for t in self.tasks])
        else:
            idx = torch.tensor([self.index[t] for t in losses], device=self.log_var.device)
            s = self.log_var[idx]
            values = torch.stack(list(losses.values()))
        return (0.5 * torch.exp(-s) * values + 0.5 * s).sum()

    def weights(self) -> dict[str, float]:
        """``½ exp(-s_t)`` per task."""
        w = (0.5 * torch.exp(-self.log_var.detach())).tolist()
        return dict(zip(self.tasks, w))


class DynamicWeightAverage(Weighting):
    """Dynamic weight average (Liu, Johns and Davison, CVPR 2019).

    In epoch ``e`` task ``k`` weighs ``λ_k = K softmax_k(r / T)``, ``r_k = L̄_k(e-1) /
    L̄_k(e-2)`` the ratio of its mean training losses over the last two epochs, ``K`` the
    number of tasks; ``λ = 1`` for the first two epochs. A task with no loss recorded in one
    of those epochs (one-task sampling) has ``r_k = 1``. Its weights depend on each rank's
    losses, so it does not run under DDP.

    Args:
        temperature: ``T``; larger is more uniform (the paper uses 2).
    """

    name: ClassVar[str] = "dwa"
    description: ClassVar[str] = "dynamic weight average: loss ratios of the last two epochs"

    def __init__(self, *, temperature: float = 2.0):
        if not temperature > 0:
            raise MTLSearchError(f"dwa: temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def setup(self, tasks: Sequence[str], *, device: torch.device, seed: int = 0) -> None:
        super().setup(tasks, device=device, seed=seed)
        self.index = {t: i for i, t in enumerate(tasks)}
        # the epoch's loss sums stay on the device: one host copy per epoch, not per step
        self._sum = torch.zeros(len(tasks), device=device)
        self._count = [0] * len(tasks)
        self.history: list[Tensor] = []  # mean loss per task of the last two epochs (nan: none)
        self._lambda = torch.ones(len(tasks))
        self._on_device = self._lambda.to(device)

    def combine(self, losses: Mapping[str, Tensor], step: WeightingStep | None) -> Tensor:
        """``Σ_k λ_k L_k`` with this epoch's ``λ``; the losses join the epoch's means."""
        idx = [self.index[t] for t in losses]
        values = torch.stack(list(losses.values()))
        if len(idx) == len(self.tasks) and list(losses) == self.tasks:
            self._sum += values.detach()
            lam = self._on_device
        else:
            self._sum[idx] += values.detach()
            lam = self._on_device[idx]
        for i in idx:
            self._count[i] += 1
        return (lam.to(values.dtype) * values).sum()

    def end_epoch(self, epoch: int) -> None:
        """Roll the history: this epoch's mean losses become the newest; update ``λ``."""
        count = torch.tensor(self._count, dtype=torch.float64)
        total = self._sum.double().cpu()
        mean = torch.where(count > 0, total / count.clamp(min=1), math.nan)
        self.history = [*self.history, mean][-2:]
        self._sum.zero_()
        self._count = [0] * len(self.tasks)
        self._lambda = dwa_weights(self.history, self.temperature)
        self._on_device = self._lambda.to(self.device)

    def weights(self) -> dict[str, float]:
        """``λ`` of the coming epoch."""
        return dict(zip(self.tasks, self._lambda.tolist()))

    @classmethod
    def suggest(cls, trial: Any) -> dict[str, Any]:
        """``temperature`` log-uniform in [0.5, 10]."""
        return {"temperature": trial.suggest_float("dwa_temperature", 0.5, 10.0, log=True)}


def dwa_weights(history: Sequence[Tensor], temperature: float) -> Tensor:
    """DWA's ``λ`` from the mean losses of the last two epochs (``[older, newer]``).

    Example:
        >>> w = dwa_weights([torch.tensor([1.0, 1.0]), torch.tensor([0.5, 1.0])], 1.0)
        >>> [round(v, 4) for v in w.tolist()]  # 2 e^0.5 / (e^0.5 + e^1), 2 e / (e^0.5 + e^1)
        [0.7551, 1.2449]
    """
    if len(history) < 2:
        return torch.ones(len(history[0]) if history else 0)
    older, newer = history[-2], history[-1]
    ratio = newer / older
    ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
    return (len(ratio) * torch.softmax(ratio / temperature, dim=0)).float()


class GradNorm(Weighting):
    """GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018).

    The model's loss is ``Σ_t w_t L_t``. After it, the weights take their own step:
    ``G_t = w_t ‖∇_W L_t‖`` with ``W`` the last shared layer (the parameters of the deepest
    block every task passes through), ``r_t = L̃_t / mean(L̃)`` with ``L̃_t = L_t / L_t(0)`` the
    task's inverse training rate, and the target ``mean(G) r_t^α`` held constant; the weights
    descend ``Σ_t |G_t - mean(G) r_t^α|``, i.e. ``w_t ← w_t - lr · sign(G_t - target_t) ‖∇_W
    L_t‖``, then are renormalised to sum to the number of tasks (kept positive). The norms
    cost one backward pass per task through the heads and that layer (charged to the compute
    meter). It needs every task in every step, and a graph with a block common to all tasks.

    Args:
        alpha: ``α``, the strength of the pull towards equal training rates (paper: 0.12–3,
            1.5 on NYUv2).
        lr: Learning rate of the weights' own gradient step.
    """

    name: ClassVar[str] = "gradnorm"
    description: ClassVar[str] = "GradNorm: balance gradient norms at the last shared layer"
    all_tasks: ClassVar[bool] = True

    def __init__(self, *, alpha: float = 1.5, lr: float = 0.025):
        if alpha < 0 or not lr > 0:
            raise MTLSearchError(f"gradnorm: alpha must be >= 0 and lr > 0, got {alpha}, {lr}")
        self.alpha = float(alpha)
        self.lr = float(lr)

    def setup(self, tasks: Sequence[str], *, device: torch.device, seed: int = 0) -> None:
        super().setup(tasks, device=device, seed=seed)
        self.w = torch.ones(len(tasks), device=device)
        self.initial: Tensor | None = None

    def combine(self, losses: Mapping[str, Tensor], step: WeightingStep) -> Tensor:
        """``Σ_t w_t L_t`` with the current weights, then the weights' own update."""
        values = torch.stack([losses[t] for t in self.tasks])
        weights = self.w.clone()
        loss = (weights * values).sum()
        self.update(values, _norms(losses, self.tasks, step))
        return loss

    def update(self, values: Tensor, norms: Tensor) -> None:
        """One step of the weights from the task losses and the gradient norms ``‖∇_W L_t‖``."""
        with torch.no_grad():
            values = values.detach().float()
            if self.initial is None:  # a task that starts at loss 0 must not divide by it
                self.initial = values.clone().clamp(min=1e-12)
            inverse_rate = values / self.initial
            r = inverse_rate / inverse_rate.mean().clamp(min=1e-12)
            g = self.w * norms
            target = g.mean() * r.pow(self.alpha)
            w = self.w - self.lr * torch.sign(g - target) * norms
            w = torch.where(torch.isfinite(w), w, self.w)  # a non-finite norm: keep the weight
            w = w.clamp(min=1e-6)  # a weight at zero or below would stop its task
            self.w = w * (len(w) / w.sum())

    def weights(self) -> dict[str, float]:
        """``w_t`` (summing to the number of tasks)."""
        return dict(zip(self.tasks, self.w.tolist()))

    def extra_macs(self, step: WeightingStep) -> float:
        """One backward pass per task through its head and the last shared block."""
        split = step.split
        heads = sum(split.head_macs.values())
        return BACKWARD_SHARE * (len(step.tasks) * split.last_shared_macs + heads)

    @classmethod
    def suggest(cls, trial: Any) -> dict[str, Any]:
        """``alpha`` in [0, 3], ``lr`` log-uniform in [1e-3, 0.1]."""
        return {"alpha": trial.suggest_float("gradnorm_alpha", 0.0, 3.0),
                "lr": trial.suggest_float("gradnorm_lr", 1e-3, 0.1, log=True)}


def _norms(losses: Mapping[str, Tensor], tasks: Sequence[str], step: WeightingStep) -> Tensor:
    """``‖∇_W L_t‖`` per task at the last shared layer ``W`` (the graph is kept)."""
    layer = step.split.last_shared
    if not layer:
        raise TrainingError(
            "gradnorm balances the gradient norms at the last layer every task shares, and "
            f"this graph has no block common to all of {len(tasks)} tasks; train it with "
            "another weighting (equal, uw, dwa, rlw, or an aggregator such as upgrad)")
    norms = []
    for t in tasks:
        grads = torch.autograd.grad(losses[t], layer, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        norms.append(torch.stack(squares).sum().sqrt() if squares
                     else torch.zeros((), device=losses[t].device))
    return torch.stack(norms)


class RandomLossWeighting(Weighting):
    """Random loss weighting (Lin et al., "Reasonable Effectiveness of Random Weighting",
    TMLR 2022, Algorithm 2): each step, ``λ = softmax(z)``, ``z ~ N(0, I)`` over the step's
    tasks, and the loss ``Σ_t λ_t L_t``.

    The draws come from a generator seeded by the training's seed (every rank draws the
    same, so it runs under DDP). As in the paper the weights sum to one, so the step is the
    size of one task's, not of the sum's. With one task per step its weight is 1.
    """

    name: ClassVar[str] = "rlw"
    description: ClassVar[str] = "random loss weighting: softmax of normal draws each step"
    distributed: ClassVar[bool] = True

    def setup(self, tasks: Sequence[str], *, device: torch.device, seed: int = 0) -> None:
        super().setup(tasks, device=device, seed=seed)
        self.generator = torch.Generator().manual_seed(int(seed) + 2)  # +0, +1: the trainer's
        self.last: dict[str, float] = {t: 1.0 / len(tasks) for t in tasks}

    def draw(self, n: int) -> Tensor:
        """The next ``n`` weights (softmax of ``n`` standard normal draws)."""
        return torch.softmax(torch.randn(n, generator=self.generator), dim=0)

    def combine(self, losses: Mapping[str, Tensor], step: WeightingStep | None) -> Tensor:
        """``Σ_t λ_t L_t`` with fresh weights."""
        lam = self.draw(len(losses))
        self.last = dict(zip(losses, lam.tolist()))
        values = torch.stack(list(losses.values()))
        return (lam.to(values.device, values.dtype) * values).sum()

    def weights(self) -> dict[str, float]:
        """The last step's weights."""
        return dict(self.last)
