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

from .evaluation import (
    DEFAULT_MAX_BYTES,
    BatchedRouting,
    evaluate_routed,
    routed_bytes_per_row,
    routed_forward,
    task_chunk_size,
)
from .extract import SUPPORTED_BLOCKS, SpecialisedSubnet, extract_subnet
from .masks import SCHEMES, MaskStats, mask_stats, routing_masks, shared_units
from .norms import norm_statistics, recalibrate_norms
from .strategy import INITIAL_SIGMAS, TASK_NORMS, TaskRouting, routed_graph

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


def __getattr__(name: str):
    # the sweep pulls in matplotlib: import it only when asked for
    if name in ("sigma_sweep", "SweepResult", "plot_sigma_sweep"):
        from . import sweep

        return getattr(sweep, name)
    raise AttributeError(name)


@hookimpl
def register_strategies(register: StrategyRegistrar) -> None:
    register(TaskRouting)


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
