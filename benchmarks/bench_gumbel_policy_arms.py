"""Measure ``gumbel_policy`` trials at ``mtlsearch compare``'s settings: ``multi_digits`` on
``small_cnn``, 3 epochs per training, ``num_samples=1`` (its entry in
:attr:`GumbelPolicy.quick_settings <mtlsearch.strategy.base.Strategy.quick_settings>`).

Each arm is one trial with fixed hyper-parameters; ``paper`` arms reproduce the schedule
before the policy-phase fix (one pass over split B per alternation, one Gumbel draw per
batch, eq. 4's depth weights, τ per alternation). Prints one JSON line per (seed, arm): val
and test Δ_MTL (%), the execute probabilities, the retrained candidates, seconds and training
MACs of the trial (policy phase and candidates), and the same for hard sharing.

Run (one torch thread, about a minute per seed on a laptop core)::

    python benchmarks/bench_gumbel_policy_arms.py --seeds 0 1

Example:
    >>> sorted(ARMS)[:2]
    ['fixed', 'fixed_old_lambdas']
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlsearch import create_space, load_dataset
from mtlsearch.engine.compute import forward_macs, meter
from mtlsearch.engine.model import materialize
from mtlsearch.engine.train import TrainConfig
from mtlsearch.plugins.gumbel_policy.strategy import INITIAL_PARAMS, GumbelPolicy
from mtlsearch.strategy.base import Proposal
from mtlsearch.strategy.context import SearchContext
from mtlsearch.strategy.pipeline import evaluate_proposal

__all__ = ["ARMS", "run_arm", "main"]

_OLD = {"lambda_sparsity": 0.01, "lambda_sharing": 0.05, "tau0": 5.0, "warmup_fraction": 0.2, "curriculum": 0.5}
_PAPER = {"min_policy_steps": 0, "noise": "batch", "sharing_weights": "paper"}

#: arm name: (fixed hyper-parameters, other constructor arguments)
ARMS: dict[str, tuple[dict[str, float], dict[str, Any]]] = {
    "paper": (_OLD, _PAPER),
    "paper_sparse": ({**_OLD, "lambda_sparsity": 0.1}, _PAPER),
    "fixed": (dict(INITIAL_PARAMS[0]), {}),
    "fixed_old_lambdas": (_OLD, {}),
    "fixed_sparse": ({**_OLD, "lambda_sparsity": 0.1}, {}),
    "official": (dict(INITIAL_PARAMS[1]), {}),
}


def run_arm(ctx: SearchContext, arm: str) -> dict[str, Any]:
    """One trial of arm ``arm`` in ``ctx``: its Δ_MTL, policy, seconds and compute."""
    params, extra = ARMS[arm]
    if extra.get("sharing_weights") == "paper":  # the old τ: a jump per alternation
        probe = GumbelPolicy(**params)
        extra = {**extra, "tau_decay": probe.settings_for(ctx.budget, params).decay}
    strategy = GumbelPolicy(num_samples=1, **params, **extra)
    start = time.perf_counter()
    with meter() as policy_spent:  # the policy phase alone (cached: propose reuses it)
        strategy.learn(ctx, strategy.settings_for(ctx.budget, params))
    policy_seconds = time.perf_counter() - start
    with meter() as spent:  # the whole trial: the cached policy's cost is charged to it too
        proposal = strategy.propose(None, ctx)  # every hyper-parameter is fixed
    result = evaluate_proposal(proposal, ctx)
    info = proposal.info
    return {
        "arm": arm,
        "val": round(result.delta_mtl, 2),
        "test": round(result.delta_mtl_test, 2),
        "probabilities": np.round(info["probabilities"], 3).tolist(),
        "candidates": [(c["label"], c["decisions"], round(c["delta_mtl"], 2)) for c in info["candidates"]],
        "chosen": info["candidates"][info["chosen"]]["decisions"],
        "policy_steps": sum(h["policy_steps"] for h in info["policy_history"]),
        "seconds": round(time.perf_counter() - start, 1),
        "policy_seconds": round(policy_seconds, 1),
        "macs": spent.macs,
        "policy_macs": policy_spent.macs,
        "networks": spent.networks,
    }


def _hard_sharing(ctx: SearchContext) -> dict[str, Any]:
    start = time.perf_counter()
    with meter() as spent:
        result = evaluate_proposal(Proposal(ctx.new_graph("hard_sharing")), ctx)
    return {"arm": "hard_sharing", "val": round(result.delta_mtl, 2), "test": round(result.delta_mtl_test, 2),
            "seconds": round(time.perf_counter() - start, 1), "macs": spent.macs, "networks": spent.networks}


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the arms on the given seeds and print one JSON line each; returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=["paper", "fixed", "fixed_old_lambdas"], choices=sorted(ARMS))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("multi_digits")
    space = create_space("small_cnn", input_shape=data.input_shape)
    rows = []
    for seed in args.seeds:
        ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=args.epochs), seed=seed)
        ctx.reference()  # shared by every strategy: not part of a trial
        hard = _hard_sharing(ctx)
        one_training = hard["macs"]
        for row in [hard] + [run_arm(ctx, arm) for arm in args.arms]:
            row = {"seed": seed, **row, "macs_vs_hard_sharing": round(row["macs"] / one_training, 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    model = materialize(ctx.new_graph("hard_sharing"), space, ctx.tasks)
    print(json.dumps({"hard_sharing_forward_macs": forward_macs(model)}))
    return rows


if __name__ == "__main__":
    main()
