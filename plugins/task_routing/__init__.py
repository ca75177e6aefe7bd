"""Strategy plugin ``task_routing``: Many Task Learning With Task Routing (Strezoski et al. 2019).

A hard-shared backbone where every block's output, after its normalisation and before its
activation, is multiplied by a fixed random binary channel mask per task; the sharing ratio σ
sets how many units tasks share (1: hard sharing, 0: disjoint subnetworks). Blocks that tasks
reach with different masked inputs normalise each task with its own batch-norm statistics, and
one-task training keeps update parity with all-task training. See
``docs/strategies/task_routing.md``.

Example:
    >>> from mtlsearch.registry import create_strategy
    >>> create_strategy("task_routing", sigma=0.4).sigma
    0.4
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mtlsearch.hookspecs import CommandRegistrar, StrategyRegistrar, hookimpl
from mtlsearch.registry import lazy_exports

_LAZY = {
    "DEFAULT_MAX_BYTES": ".evaluation",
    "BatchedRouting": ".evaluation",
    "evaluate_routed": ".evaluation",
    "routed_bytes_per_row": ".evaluation",
    "routed_forward": ".evaluation",
    "task_chunk_size": ".evaluation",
    "SUPPORTED_BLOCKS": ".extract",
    "SpecialisedSubnet": ".extract",
    "extract_subnet": ".extract",
    "SCHEMES": ".masks",
    "MaskStats": ".masks",
    "mask_stats": ".masks",
    "routing_masks": ".masks",
    "shared_units": ".masks",
    "norm_statistics": ".norms",
    "recalibrate_norms": ".norms",
    "INITIAL_SIGMAS": ".strategy",
    "TASK_NORMS": ".strategy",
    "TaskRouting": ".strategy",
    "routed_graph": ".strategy",
}
_LAZY.update(dict.fromkeys(("sigma_sweep", "SweepResult", "plot_sigma_sweep"), ".sweep"))
# what `from this_plugin import X` finds, imported on first use: listing the strategies
# imports this module alone
__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "BatchedRouting",
    "DEFAULT_MAX_BYTES",
    "INITIAL_SIGMAS",
    "SCHEMES",
    "TASK_NORMS",
    "SUPPORTED_BLOCKS",
    "MaskStats",
    "SpecialisedSubnet",
    "TaskRouting",
    "evaluate_routed",
    "extract_subnet",
    "mask_stats",
    "norm_statistics",
    "recalibrate_norms",
    "routed_bytes_per_row",
    "routed_forward",
    "routed_graph",
    "routing_masks",
    "shared_units",
    "sigma_sweep",
    "task_chunk_size",
]


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    register(f"{__name__}.strategy:TaskRouting", name="task_routing", dynamic=True,
             description="hard-shared backbone with fixed random per-task channel masks "
                         "(sharing ratio σ)")


def _sweep_main(argv: Sequence[str]) -> int:
    from .sweep import main

    return main(list(argv))


def _sweep_parser() -> argparse.ArgumentParser:
    from .sweep import build_parser

    return build_parser()


@hookimpl
def register_commands(register: CommandRegistrar) -> None:
    """Contribute ``mtlsearch sweep``, the σ sweep (its own parser takes the arguments)."""
    register("sweep", _sweep_main, parser=_sweep_parser,
             help="Task routing: train at each sharing ratio sigma, plot metric vs sigma.")
