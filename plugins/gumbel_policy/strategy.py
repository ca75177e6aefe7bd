"""Strategy ``gumbel_policy``: AdaShare's per-task select-or-skip policies (Sun et al. 2020).

One trial: sample ``λ_sp``, ``λ_sh``, ``τ₀``, the warm-up length and the curriculum speed;
learn the policy on a supernet (cached in ``ctx.cache`` by what produced it); sample K
architectures from it plus the most likely one; retrain each distinct one from scratch through
:func:`~mtlsearch.strategy.pipeline.evaluate_proposal`; propose the best on validation, with its trained
weights, and record all of them in the proposal's ``info``.

Example:
    >>> from mtlsearch import create_space, load_dataset, run_strategy
    >>> from mtlsearch.strategy.context import SearchContext
    >>> from mtlsearch.engine.train import TrainConfig
    >>> data = load_dataset("synthetic", n_tasks=4, n_samples=400)
    >>> space = create_space("mlp", input_shape=data.input_shape, widths=(16, 16, 16))
    >>> ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=2))
    >>> result = run_strategy(GumbelPolicy(num_samples=2), ctx)  # doctest: +SKIP
    >>> len(result.info["candidates"]) <= 3  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mtlsearch.engine.model import materialize
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import MTLSearchError
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.strategy.pipeline import evaluate_proposal

from .policy import (
    MIN_POLICY_STEPS,
    PolicyResult,
    PolicySettings,
    learn_policy,
    split_training,
    train_stochastic_depth,
)
from .policy import survival_probabilities as _survival
from .sampling import RANDOM_KINDS, decisions_to_graph, most_likely, random_like, sample_decisions

__all__ = ["GumbelPolicy", "ABLATIONS", "INITIAL_PARAMS"]

ABLATIONS = ("none", *RANDOM_KINDS, "stochastic_depth")

# name: (low, high, log scale) of what the trial samples when the constructor leaves it None.
# λ_sp stops at 0.01: from there on the sparsity gradient outweighs the task gradient of a
# short budget and the policy ends at "skip everything" (measured, see the docs).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "lambda_sparsity": (1e-4, 1e-2, True),
    "lambda_sharing": (1e-3, 0.1, True),
    "tau0": (1.0, 10.0, False),
    "warmup_fraction": (0.1, 0.4, False),
    "curriculum": (0.2, 0.8, False),
}


#: Parameter sets a study tries first (see :meth:`GumbelPolicy.initial_params`).
INITIAL_PARAMS: tuple[dict[str, float], ...] = (
    {"lambda_sparsity": 0.003, "lambda_sharing": 0.01, "tau0": 5.0, "warmup_fraction": 0.2, "curriculum": 0.5},
    {"lambda_sparsity": 0.001, "lambda_sharing": 0.05, "tau0": 5.0, "warmup_fraction": 0.2, "curriculum": 0.5},
)


def _bits(decisions: np.ndarray) -> list[str]:
    return ["".join("1" if v else "0" for v in row) for row in decisions]


class GumbelPolicy(Strategy):
    """AdaShare: learn which blocks each task executes, then retrain sampled architectures.

    Every argument left ``None`` among ``lambda_sparsity``, ``lambda_sharing``, ``tau0``,
    ``warmup_fraction`` and ``curriculum`` is sampled from the trial (ranges in ``_RANGES``).

    Args:
        lambda_sparsity: ``λ_sp`` (0 is the "w/o L_sparsity" ablation).
        lambda_sharing: ``λ_sh`` (0 is the "w/o L_sharing" ablation).
        tau0: Initial Gumbel-softmax temperature (paper: 5).
        warmup_fraction: Share of the policy phase's epochs spent warming up (official: 0.2).
        curriculum: Fraction of the alternations over which the curriculum opens every block
            (0 is the "w/o curriculum" ablation).
        search_epochs: Epochs of the whole policy phase (warm-up + alternations); default
            ``max(2, budget.epochs)`` so it scales with the study's budget.
        num_samples: Architectures sampled from the policy (paper: 8).
        include_most_likely: Also retrain the most likely architecture (``α >= 0.5``).
        tau_decay, tau_final_ratio, sparsity, sharing_weights, policy_lr, min_policy_steps, noise:
            See :class:`~.policy.PolicySettings` (``min_policy_steps=0`` and
            ``sharing_weights="paper"``, ``noise="batch"`` give the paper's schedule, eq. 4 and
            one Gumbel draw per batch).
        weight_overrides: :class:`~mtlsearch.engine.train.TrainConfig` fields for the weight
            optimizer of the policy phase (default: the study's budget; the paper's is
            ``{"optimizer": "sgd", "lr": 1e-3}``).
        ablation: ``none``; ``random1`` / ``random2`` (Random #1 / #2: random policies with
            each sample's total / per-task number of skips); ``stochastic_depth``.
        survival_last: Stochastic depth's survival probability of the last block.
    """

    name = "gumbel_policy"
    description = "AdaShare: per-task select-or-skip block policies learned with Gumbel-softmax"
    # compare: retrain 1 sampled architecture (and the most likely one) per trial
    quick_settings = {"num_samples": 1}

    def __init__(
        self,
        *,
        lambda_sparsity: float | None = None,
        lambda_sharing: float | None = None,
        tau0: float | None = None,
        warmup_fraction: float | None = None,
        curriculum: float | None = None,
        search_epochs: int | None = None,
        num_samples: int = 8,
        include_most_likely: bool = True,
        tau_decay: float | None = None,
        tau_final_ratio: float = 0.1,
        sparsity: str = "paper",
        sharing_weights: str = "shifted",
        policy_lr: float = 0.01,
        min_policy_steps: int = MIN_POLICY_STEPS,
        noise: str = "sample",
        weight_overrides: Mapping[str, Any] | None = None,
        ablation: str = "none",
        survival_last: float = 0.5,
    ):
        if ablation not in ABLATIONS:
            raise MTLSearchError(f"unknown ablation {ablation!r}; choose one of {list(ABLATIONS)}")
        if num_samples < 0 or (num_samples == 0 and not include_most_likely):
            raise MTLSearchError("num_samples must be >= 0, and >= 1 when include_most_likely is False")
        if search_epochs is not None and search_epochs < 2:
            raise MTLSearchError(f"search_epochs must be at least 2 (warm-up + one alternation), got {search_epochs}")
        if warmup_fraction is not None and not 0 <= warmup_fraction < 1:
            raise MTLSearchError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        TrainConfig().replace(**dict(weight_overrides or {}))  # names unknown fields now
        self.fixed = {
            "lambda_sparsity": lambda_sparsity,
            "lambda_sharing": lambda_sharing,
            "tau0": tau0,
            "warmup_fraction": warmup_fraction,
            "curriculum": curriculum,
        }
        self.search_epochs = search_epochs
        self.num_samples = num_samples
        self.include_most_likely = include_most_likely
        self.extra = {
            "tau_decay": tau_decay,
            "tau_final_ratio": tau_final_ratio,
            "sparsity": sparsity,
            "sharing_weights": sharing_weights,
            "policy_lr": policy_lr,
            "min_policy_steps": min_policy_steps,
            "noise": noise,
        }
        self.weight_overrides = dict(weight_overrides or {})
        self.ablation = ablation
        self.survival_last = survival_last
        given = {k: float(v) for k, v in self.fixed.items() if v is not None}
        self.settings_for(TrainConfig(epochs=2), {**self._defaults(), **given})  # fail now on bad values

    # ---------------------------------------------------------------- settings
    @staticmethod
    def _defaults() -> dict[str, float]:
        return dict(INITIAL_PARAMS[0])

    def initial_params(self, ctx: Any) -> list[dict[str, Any]]:
        """The study's first trials: the setting measured best on ``multi_digits`` (λ_sp =
        0.003, λ_sh = 0.01), then the official NYUv2 3-task λs (0.001, 0.05); τ₀ = 5, the
        official 20 % warm-up and curriculum 0.5 in both. Only what the trial samples (the
        arguments left ``None``) is listed."""
        return [{k: v for k, v in p.items() if self.fixed[k] is None} for p in INITIAL_PARAMS]

    def sample_params(self, trial: Any) -> dict[str, float]:
        """The trial's values of the searched hyper-parameters (fixed ones are not suggested)."""
        out = {}
        for name, fixed in self.fixed.items():
            if fixed is not None:
                out[name] = float(fixed)
            else:
                low, high, log = _RANGES[name]
                out[name] = trial.suggest_float(name, low, high, log=log)
        return out

    def settings_for(self, budget: TrainConfig, params: Mapping[str, float]) -> PolicySettings:
        """Policy settings from sampled ``params``, the policy phase scaled by ``budget``."""
        total = self.search_epochs or max(2, budget.epochs)
        warmup = min(total - 1, max(1 if params["warmup_fraction"] > 0 else 0, round(params["warmup_fraction"] * total)))
        return PolicySettings(
            lambda_sparsity=params["lambda_sparsity"],
            lambda_sharing=params["lambda_sharing"],
            tau0=params["tau0"],
            warmup_epochs=warmup,
            policy_epochs=total - warmup,
            curriculum=params["curriculum"],
            **self.extra,
        )

    # ------------------------------------------------------------------ phases
    def learn(self, ctx: Any, settings: PolicySettings) -> PolicyResult:
        """The learned policy for ``settings`` in ``ctx`` (from ``ctx.cache`` when known)."""
        weight_config = ctx.budget.replace(**self.weight_overrides)
        key = ctx.key("gumbel_policy", settings=settings.to_dict(), weights=weight_config.to_dict())

        def compute() -> dict[str, Any]:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                model = materialize(ctx.new_graph("hard_sharing"), ctx.space, ctx.tasks)
            split_a, split_b = split_training(ctx.data.train, seed=ctx.seed)
            return learn_policy(model, split_a, split_b, settings, weight_config).to_dict()

        return PolicyResult.from_dict(ctx.cache.get_or_compute(key, compute))

    def candidates(self, policy: PolicyResult, seed: int) -> list[tuple[str, np.ndarray]]:
        """Labelled decision matrices to retrain: most likely, then samples (or their random
        twins under ``random1``/``random2``), duplicates removed."""
        probs = policy.probabilities()
        rng = np.random.default_rng(seed)
        found: list[tuple[str, np.ndarray]] = []
        if self.include_most_likely:
            found.append(("most_likely", most_likely(probs)))
        found += [(f"sample_{k}", d) for k, d in enumerate(sample_decisions(probs, self.num_samples, rng))]
        if self.ablation in RANDOM_KINDS:
            found = [(f"{self.ablation}_of_{label}", random_like(d, self.ablation, rng)) for label, d in found]
        unique, seen = [], set()
        for label, d in found:
            if d.tobytes() not in seen:
                seen.add(d.tobytes())
                unique.append((label, d))
        return unique

    def propose(self, trial: Any, ctx: Any) -> Proposal:
        if self.ablation == "stochastic_depth":
            return self._stochastic_depth(ctx)
        params = self.sample_params(trial)
        settings = self.settings_for(ctx.budget, params)
        policy = self.learn(ctx, settings)
        digest = hashlib.sha256(repr((settings.to_dict(), ctx.seed)).encode()).hexdigest()
        candidates = self.candidates(policy, int(digest[:8], 16))
        base = ctx.new_graph("hard_sharing")
        records, best = [], None
        for label, decisions in candidates:
            graph = decisions_to_graph(base, decisions, policy.policy_blocks)
            graph.info = {"strategy": self.name, "candidate": label, "decisions": _bits(decisions)}
            result = evaluate_proposal(Proposal(graph), ctx)
            records.append({
                "label": label,
                "decisions": _bits(decisions),
                "skips_per_task": [int((~row).sum()) for row in decisions],
                "delta_mtl": result.delta_mtl,
                "delta_mtl_test": result.delta_mtl_test,
                "params": result.params,
                "macs": result.macs,
                "train_seconds": result.train_seconds,
            })
            if best is None or result.delta_mtl > best[1].delta_mtl:
                if best is not None:
                    best[1].model = None  # keep only the best model in memory
                best = (len(records) - 1, result)
            else:
                result.model = None
        assert best is not None
        chosen, result = best
        state = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
        info = {
            "ablation": self.ablation,
            "params": params,
            "settings": settings.to_dict(),
            "tasks": policy.tasks,
            "policy_blocks": policy.policy_blocks,
            "probabilities": policy.probabilities().round(6).tolist(),
            "policy_history": policy.history,
            "policy_seconds": policy.seconds,
            "candidates": records,
            "chosen": chosen,
        }
        return Proposal(result.model.graph, state_dict=state, info=info)

    def _stochastic_depth(self, ctx: Any) -> Proposal:
        graph = ctx.new_graph("hard_sharing")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            model = materialize(graph, ctx.space, ctx.tasks)
        seconds = train_stochastic_depth(model, ctx.data.train, ctx.budget, last=self.survival_last)
        blocks = [b.index for b in ctx.space.blocks if b.skip != "none"]
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        info = {
            "ablation": "stochastic_depth",
            "policy_blocks": blocks,
            "survival": _survival(len(blocks), self.survival_last).round(4).tolist(),
            "train_seconds": seconds,
        }
        return Proposal(graph, state_dict=state, info=info)
