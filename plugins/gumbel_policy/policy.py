"""Policy learning (AdaShare section 3, "Training Strategy"): warm-up, then weights and policy
logits updated alternately on two training splits, with a curriculum and an annealed ``τ``.

Example:
    >>> import torch
    >>> from mtlsearch.testing import tiny_context
    >>> ctx = tiny_context()
    >>> model = ctx.train(ctx.new_graph("hard_sharing"), epochs=1).model  # doctest: +SKIP
    >>> a, b = split_training(ctx.data.train, seed=0)
    >>> result = learn_policy(model, a, b, PolicySettings(policy_epochs=2), ctx.budget)  # doctest: +SKIP
    >>> result.probabilities().shape  # doctest: +SKIP
    (3, 1)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.data.dataset import MultiTaskDataset
from mtlsearch.engine.compute import charge, charge_forward
from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.engine.train import (
    TrainConfig,
    TrainingError,
    make_optimizer,
    select_device,
    task_losses,
)
from mtlsearch.errors import MTLSearchError

from .losses import (
    DEPTH_WEIGHTS,
    SPARSITY_KINDS,
    annealed_temperature,
    depth_weights,
    execute_probability,
    learning_mask,
    sharing_loss,
    soft_decisions,
    sparsity_loss,
    temperature,
)
from .supernet import PolicySupernet

__all__ = [
    "MIN_POLICY_STEPS",
    "PolicySettings",
    "PolicyResult",
    "learn_policy",
    "split_training",
    "train_stochastic_depth",
    "survival_probabilities",
]


# Policy steps a phase takes at least (see PolicySettings.min_policy_steps): measured on
# multi_digits (docs/strategies/gumbel_policy.md), where a pass over split B is ~24 steps.
MIN_POLICY_STEPS = 200
NOISE_KINDS = ("sample", "batch")


@dataclass(frozen=True)
class PolicySettings:
    """Settings of the policy phase.

    Defaults follow the paper where they transfer; three differ so that a short phase still
    converges (``min_policy_steps``, ``noise="sample"``, per-step τ annealing) and one so that
    every block feels the sharing loss (``sharing_weights="shifted"``). ``min_policy_steps=0,
    noise="batch", sharing_weights="paper", tau_decay=0.965`` is the paper's / official schedule.

    Args:
        lambda_sparsity: ``λ_sp`` (paper configurations: 0.001 to 0.05).
        lambda_sharing: ``λ_sh`` (paper configurations: 0.005 to 0.1).
        tau0: Initial Gumbel-softmax temperature (paper: 5).
        tau_decay: ``τ`` is multiplied by this after each alternation (official code: 0.965);
            ``None`` anneals ``τ`` geometrically over the policy steps, from ``tau0`` to
            ``tau0 * tau_final_ratio`` at the last one.
        tau_final_ratio: See ``tau_decay``.
        warmup_epochs: Hard-sharing epochs on the weight split before policy learning.
        policy_epochs: Alternations (one weight pass over split A, then policy steps on B).
        min_policy_steps: The policy phase takes at least this many policy (logit) steps in
            all: each alternation's policy pass goes round split B as often as needed, so the
            policy converges whatever the weight budget (0: one pass over B per alternation,
            the paper's schedule, which leaves a few dozen steps in a short phase).
        curriculum: Fraction of the policy phase over which the curriculum opens all blocks,
            from the last one down (0: no curriculum).
        sparsity: ``paper`` (eq. 3, ``Σ log α``) or ``code`` (cross-entropy towards skip).
        sharing_weights: ``shifted`` (``(L - l + 1)/L``), ``paper`` (eq. 4, ``(L - l)/L``) or
            ``code`` (``l/L``); see :func:`~.losses.depth_weights`.
        policy_lr: Adam learning rate of the logits (official: 0.01).
        policy_weight_decay: Adam weight decay of the logits.
        noise: ``sample``: a Gumbel draw per (task, block) *and sample* of the batch, which
            averages the policy gradient over the batch; ``batch``: one draw per (task, block)
            for the whole batch, as the paper and official code do (one sampled architecture
            per step, a much noisier gradient).
    """

    lambda_sparsity: float = 0.01
    lambda_sharing: float = 0.05
    tau0: float = 5.0
    tau_decay: float | None = None
    tau_final_ratio: float = 0.1
    warmup_epochs: int = 1
    policy_epochs: int = 2
    min_policy_steps: int = MIN_POLICY_STEPS
    curriculum: float = 0.5
    sparsity: str = "paper"
    sharing_weights: str = "shifted"
    policy_lr: float = 0.01
    policy_weight_decay: float = 0.0
    noise: str = "sample"

    def __post_init__(self) -> None:
        checks = [
            ("lambda_sparsity", self.lambda_sparsity >= 0, "at least 0"),
            ("lambda_sharing", self.lambda_sharing >= 0, "at least 0"),
            ("tau0", self.tau0 > 0, "positive"),
            ("tau_final_ratio", 0 < self.tau_final_ratio <= 1, "in (0, 1]"),
            ("warmup_epochs", self.warmup_epochs >= 0, "at least 0"),
            ("policy_epochs", self.policy_epochs >= 1, "at least 1"),
            ("min_policy_steps", self.min_policy_steps >= 0, "at least 0"),
            ("curriculum", 0 <= self.curriculum <= 1, "in [0, 1]"),
            ("policy_lr", self.policy_lr > 0, "positive"),
        ]
        if self.tau_decay is not None:
            checks.append(("tau_decay", 0 < self.tau_decay <= 1, "in (0, 1]"))
        for name, ok, what in checks:
            if not ok:
                raise MTLSearchError(f"policy setting {name} must be {what}, got {getattr(self, name)}")
        if self.noise not in NOISE_KINDS:
            raise MTLSearchError(f"noise must be one of {list(NOISE_KINDS)}, got {self.noise!r}")
        if self.sparsity not in SPARSITY_KINDS:
            raise MTLSearchError(f"sparsity must be one of {list(SPARSITY_KINDS)}, got {self.sparsity!r}")
        if self.sharing_weights not in DEPTH_WEIGHTS:
            raise MTLSearchError(
                f"sharing_weights must be one of {list(DEPTH_WEIGHTS)}, got {self.sharing_weights!r}"
            )

    @property
    def decay(self) -> float:
        """The per-alternation factor of ``τ`` (``tau_decay``, or the factor that reaches
        ``tau0 * tau_final_ratio`` at the last alternation)."""
        if self.tau_decay is not None:
            return self.tau_decay
        return self.tau_final_ratio ** (1.0 / max(1, self.policy_epochs - 1))

    def steps_per_alternation(self, batches_b: int) -> int:
        """Policy steps in each alternation when a pass over split B has ``batches_b`` batches."""
        return max(batches_b, math.ceil(self.min_policy_steps / self.policy_epochs))

    def tau(self, alternation: int, progress: float) -> float:
        """``τ`` in ``alternation`` at ``progress`` (0..1) of all policy steps."""
        if self.tau_decay is not None:
            return temperature(alternation, tau0=self.tau0, decay=self.tau_decay)
        return annealed_temperature(progress, tau0=self.tau0, final_ratio=self.tau_final_ratio)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PolicyResult:
    """Learned policy logits ``(tasks, policy blocks, 2)`` plus the phase's log and timings."""

    tasks: list[str]
    policy_blocks: list[int]
    logits: Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def probabilities(self) -> np.ndarray:
        """Execute probabilities ``α``, ``(tasks, policy blocks)``."""
        with torch.no_grad():
            return execute_probability(self.logits.detach().cpu()).numpy()

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks),
            "policy_blocks": list(self.policy_blocks),
            "logits": self.logits.detach().cpu().tolist(),
            "history": self.history,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyResult:
        return cls(
            tasks=list(data["tasks"]),
            policy_blocks=[int(b) for b in data["policy_blocks"]],
            logits=torch.tensor(data["logits"], dtype=torch.float32),
            history=list(data.get("history", [])),
            seconds=dict(data.get("seconds", {})),
        )


def split_training(train: MultiTaskDataset, *, seed: int) -> tuple[MultiTaskDataset, MultiTaskDataset]:
    """Two disjoint halves of the training split: weights learn on A, the policy on B."""
    if len(train) < 4:
        raise MTLSearchError(f"policy learning needs at least 4 training samples, got {len(train)}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    half = len(train) // 2
    return train.subset(order[:half]), train.subset(order[half:])


def _weighted(losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    return sum(weights[t] * v for t, v in losses.items())


def _check_finite(value: float, where: str) -> None:
    if not math.isfinite(value):
        raise TrainingError(f"the {where} loss became {value}; lower the learning rates or λ")


def _decisions(net: PolicySupernet, soft: Tensor, mask: Tensor) -> list[Tensor | None]:
    out: list[Tensor | None] = [None] * len(net._blocks)
    for j, b in enumerate(net.policy_blocks):
        if mask[j]:
            out[b] = soft[:, j]
    return out


def _task_weights(model: MultiTaskModel, config: TrainConfig) -> dict[str, float]:
    weights = {s.name: s.weight for s in model.task_specs}
    weights.update(config.task_weights or {})
    return weights


def _charge_soft(net: PolicySupernet, decisions: list[Tensor | None], rows: int) -> None:
    """Charge one step of the soft forward (see :meth:`PolicySupernet.forward_macs`)."""
    macs = net.forward_macs([d is not None for d in decisions])
    charge(macs=float(rows) * macs, samples=rows)


def learn_policy(
    model: MultiTaskModel,
    split_a: MultiTaskDataset,
    split_b: MultiTaskDataset,
    settings: PolicySettings,
    weight_config: TrainConfig,
) -> PolicyResult:
    """Warm up ``model`` (hard sharing) on ``split_a``, then alternate weight passes on
    ``split_a`` (``weight_config``'s optimizer) and policy steps on ``split_b`` (Adam; at least
    ``settings.min_policy_steps`` of them in all).

    The model's weights are trained in place. Seeded by ``weight_config.seed``. Every
    optimizer step is charged to the open compute meters (:mod:`mtlsearch.engine.compute`): the
    warm-up's as a hard-sharing forward, the soft steps' as the supernet's forward.

    Raises:
        MTLSearchError: The search space has no block a task may skip.
        TrainingError: A loss became non-finite.
    """
    device = select_device(weight_config.device)
    net = PolicySupernet(model).to(device)
    tasks, blocks = net.tasks, net.policy_blocks
    if not blocks:
        raise MTLSearchError(
            f"search space {model.space.name!r} has no block a task may skip (every block's skip "
            "is 'none'); use a space with residual or same-width blocks, e.g. resnet18"
        )
    charge(macs=0.0, networks=1)
    T, L = len(tasks), len(blocks)
    weights = _task_weights(model, weight_config)
    gen = torch.Generator().manual_seed(weight_config.seed)
    logits = torch.zeros(T, L, 2, device=device, requires_grad=True)  # equal: α = 0.5
    w_opt = make_optimizer(weight_config, net.weights())
    p_opt = torch.optim.Adam([logits], lr=settings.policy_lr, weight_decay=settings.policy_weight_decay)
    share_w = depth_weights(L, kind=settings.sharing_weights).to(device)
    bs = weight_config.batch_size
    history: list[dict[str, float]] = []
    times: dict[str, list[float]] = {"warmup_epoch": [], "weight_pass": [], "policy_pass": []}
    net.train()
    with torch.random.fork_rng(devices=[]):  # Gumbel noise from the global RNG, seeded here
        torch.manual_seed(weight_config.seed)
        for _ in range(settings.warmup_epochs):
            start = time.perf_counter()
            total = torch.zeros((), device=device)
            for x, y in split_a.batches(bs, shuffle=True, generator=gen):
                charge_forward(model, int(x.shape[0]))
                x, y = x.to(device), {k: v.to(device) for k, v in y.items()}
                loss = _weighted(task_losses(net, net(x), y), weights)
                w_opt.zero_grad(set_to_none=True)
                loss.backward()
                w_opt.step()
                total += loss.detach()
            _check_finite(float(total), "warm-up")
            times["warmup_epoch"].append(time.perf_counter() - start)
        P = settings.policy_epochs
        n_a = math.ceil(len(split_a) / bs)
        steps = settings.steps_per_alternation(math.ceil(len(split_b) / bs))
        last = max(1, P * steps - 1)  # index of the last policy step: τ reaches its end there
        for alt in range(P):
            tau = settings.tau(alt, alt * steps / last)
            log: dict[str, float] = {"alternation": alt, "tau": tau}
            # weights: soft decisions from the current policy, logits fixed
            start, total = time.perf_counter(), torch.zeros((), device=device)
            for i, (x, y) in enumerate(split_a.batches(bs, shuffle=True, generator=gen)):
                x, y = x.to(device), {k: v.to(device) for k, v in y.items()}
                mask = learning_mask((alt + i / n_a) / P, L, settings.curriculum)
                draws = int(x.shape[0]) if settings.noise == "sample" else None
                decisions = _decisions(net, soft_decisions(logits.detach(), tau, draws), mask)
                _charge_soft(net, decisions, int(x.shape[0]))
                loss = _weighted(task_losses(net, net(x, decisions), y), weights)
                w_opt.zero_grad(set_to_none=True)
                loss.backward()
                w_opt.step()
                total += loss.detach()
            log["weight_loss"] = float(total) / max(n_a, 1)
            _check_finite(log["weight_loss"], "weight-phase")
            times["weight_pass"].append(time.perf_counter() - start)
            # policy: network weights fixed, only the logits of the learning blocks move
            net.set_weights_trainable(False)
            start = time.perf_counter()
            sums = {"policy_loss": 0.0, "sparsity": 0.0, "sharing": 0.0}
            learning = 0
            try:
                for i, (x, y) in enumerate(_cycle(split_b, bs, gen, steps)):
                    x, y = x.to(device), {k: v.to(device) for k, v in y.items()}
                    mask = learning_mask((alt + i / steps) / P, L, settings.curriculum).to(device)
                    frozen = logits.detach()[:, ~mask].clone()
                    learning = int(mask.sum())
                    tau = settings.tau(alt, (alt * steps + i) / last)
                    draws = int(x.shape[0]) if settings.noise == "sample" else None
                    decisions = _decisions(net, soft_decisions(logits, tau, draws), mask)
                    _charge_soft(net, decisions, int(x.shape[0]))
                    task_loss = _weighted(task_losses(net, net(x, decisions), y), weights)
                    sp = sparsity_loss(logits[:, mask], kind=settings.sparsity)
                    sh = sharing_loss(logits[:, mask], weights=share_w[mask])
                    loss = task_loss + settings.lambda_sparsity * sp + settings.lambda_sharing * sh
                    p_opt.zero_grad(set_to_none=True)
                    loss.backward()
                    p_opt.step()
                    with torch.no_grad():  # frozen blocks keep their logits exactly
                        logits[:, ~mask] = frozen
                    sums["policy_loss"] += float(loss.detach())
                    sums["sparsity"] += float(sp.detach())
                    sums["sharing"] += float(sh.detach())
            finally:
                net.set_weights_trainable(True)
            times["policy_pass"].append(time.perf_counter() - start)
            log.update({k: v / steps for k, v in sums.items()})
            _check_finite(log["policy_loss"], "policy-phase")
            log["tau_end"] = tau
            log["policy_steps"] = steps
            log["learning_blocks"] = learning  # at the alternation's last policy step
            log["mean_execute"] = float(execute_probability(logits.detach()).mean())
            history.append(log)
    seconds = {k: float(np.mean(v)) for k, v in times.items() if v}
    if "weight_pass" in seconds:
        seconds["alternation"] = seconds["weight_pass"] + seconds["policy_pass"]
    return PolicyResult(list(tasks), list(blocks), logits.detach().cpu(), history, seconds)


def _cycle(data: MultiTaskDataset, batch_size: int, gen: torch.Generator, steps: int) -> Iterator[Any]:
    """``steps`` shuffled batches of ``data``, going round it (a new shuffle each time)."""
    done = 0
    while done < steps:
        for batch in data.batches(batch_size, shuffle=True, generator=gen):
            yield batch
            done += 1
            if done == steps:
                return


def survival_probabilities(num_blocks: int, last: float = 0.5) -> np.ndarray:
    """Stochastic depth's linear decay rule: block ``l = 1..L`` survives with
    ``1 - l/L * (1 - last)`` (Huang et al. 2016)."""
    if not 0 < last <= 1:
        raise MTLSearchError(f"the last block's survival probability must be in (0, 1], got {last}")
    pos = np.arange(1, num_blocks + 1)
    return 1.0 - pos / num_blocks * (1.0 - last)


def train_stochastic_depth(
    model: MultiTaskModel, train: MultiTaskDataset, config: TrainConfig, *, last: float = 0.5
) -> float:
    """The paper's "Stochastic Depth" ablation: train ``model`` (hard sharing) while each task
    drops each policy block at random (independently per batch); the full model is used at
    inference. Every step is charged to the open compute meters as the supernet's forward
    with all policy blocks decided. Returns the training seconds."""
    device = select_device(config.device)
    net = PolicySupernet(model).to(device)
    survive = torch.tensor(survival_probabilities(len(net.policy_blocks), last), dtype=torch.float32)
    gen = torch.Generator().manual_seed(config.seed)
    weights = _task_weights(model, config)
    opt = make_optimizer(config, net.weights())
    T = len(net.tasks)
    charge(macs=0.0, networks=1)
    start = time.perf_counter()
    net.train()
    for _ in range(config.epochs):
        total = torch.zeros((), device=device)
        for x, y in train.batches(config.batch_size, shuffle=True, generator=gen):
            x, y = x.to(device), {k: v.to(device) for k, v in y.items()}
            keep = (torch.rand(T, len(survive), generator=gen) < survive).float().to(device)
            decisions = _decisions(net, keep, torch.ones(len(survive), dtype=torch.bool))
            _charge_soft(net, decisions, int(x.shape[0]))
            loss = _weighted(task_losses(net, net(x, decisions), y), weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        _check_finite(float(total), "stochastic-depth")
    net.eval()
    return time.perf_counter() - start
