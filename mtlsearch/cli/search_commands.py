"""``mtlsearch search`` and ``mtlsearch compare``: the commands that train candidates."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtlsearch.cli.config import (
    add_config_option,
    effective_config,
    record_config,
    record_config_in,
)
from mtlsearch.cli.options import (
    DEFAULT_OUT,
    DEFAULT_SEARCH_EPOCHS,
    add_tracker_options,
    csv_list,
    default_storage,
    int_list,
    json_flag,
    kv,
    open_trackers,
    print_json,
    train_config,
    training_options,
)
from mtlsearch.errors import MTLSearchError

AddParser = Callable[[str, str, str], argparse.ArgumentParser]


def add_search(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare ``mtlsearch search``."""
    default = reg["default"]
    example = default or (reg["names"] or ["STRATEGY"])[0]
    p = add("search", "Search sharing architectures with an Optuna study (resumable).",
            "  mtlsearch search --trials 20 --epochs 5\n"
            f"  mtlsearch search --strategy {example} --dataset synthetic --space mlp \\\n"
            "      --dataset-arg n_tasks=6 --storage journal:runs/study.log --study s1\n"
            "  mtlsearch search --dataset dense_shapes --dataset-arg size=32 \\\n"
            "      --space dilated_resnet18   # segmentation, depth, normals, edges\n"
            "Run the same command again to resume an interrupted study.")
    p.add_argument("--strategy", default=None,
                   help=f"strategy (default: the registered default, {default or 'none'})")
    p.add_argument("--strategy-arg", type=kv, action="append", default=[], metavar="KEY=VALUE",
                   help="strategy option (repeatable)")
    training_options(p, DEFAULT_SEARCH_EPOCHS)
    s = p.add_argument_group("study")
    s.add_argument("--trials", type=int, default=10, help="study-wide trial budget (default 10)")
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.add_argument("--out", default=DEFAULT_OUT, help="output folder (default %(default)s)")
    s.add_argument("--storage", default=None,
                   help="sqlite:///F.db, journal:F.log, postgresql://... or memory "
                        "(default sqlite:///OUT/study.db)")
    s.add_argument("--study", default=None, help="study name (default STRATEGY-DATASET-SPACE)")
    s.add_argument("--objectives", type=csv_list, default=["delta_mtl", "params"],
                   help="comma list of delta_mtl, params, macs (default delta_mtl,params)")
    s.add_argument("--pruner", default="median",
                   help="median, percentile, hyperband, successive_halving or none "
                        "(single-objective studies only; default median)")
    s.add_argument("--timeout", type=float, default=None, help="start no trial after SECONDS")
    s.add_argument("--compute", default=None,
                   help="start no trial once the study spent this much compute: training "
                        "MACs, or Nx = N hard-sharing trainings (default: --trials alone)")
    s.add_argument("--weighting", default=None, metavar="NAME|auto|A,B",
                   help="loss weighting: a registered name (fixed), 'auto' (sampled among "
                        "all) or a comma list to sample from (default: equal; see "
                        "`mtlsearch weightings`)")
    s.add_argument("--workers", default="auto", metavar="N|auto",
                   help="processes running trials side by side on this machine, sharing the "
                        "study: same trials as one (default auto: one per CPU core, on a GPU "
                        "as many as its memory holds, 1 with --storage memory)")
    s.add_argument("--artifact-store", default=None, metavar="STORE",
                   help="where trial weights are kept: a folder, s3://BUCKET or gs://BUCKET "
                        "(default OUT/artifacts); any machine with the storage and the store "
                        "exports a trial without retraining")
    optuna_options(s)
    add_tracker_options(p.add_argument_group("experiment trackers"))
    add_config_option(p)
    p.set_defaults(func=cmd_search)


def optuna_options(g: Any) -> None:
    """``--sampler``, ``--sampler-arg``, ``--history-lag`` and ``--callback``.

    The names and the lag are written out (tests/test_samplers.py checks them against
    mtlsearch.study.samplers): importing Optuna here would slow ``mtlsearch --help``.
    """
    g.add_argument("--sampler", default=None, metavar="NAME",
                   help="Optuna sampler: tpe, nsga2, nsga3, random, gp or qmc (default tpe; "
                        "seeded per trial)")
    g.add_argument("--sampler-arg", type=kv, action="append", default=[], metavar="KEY=VALUE",
                   help="sampler option, e.g. n_startup_trials=5 or population_size=20 "
                        "(repeatable)")
    g.add_argument("--history-lag", type=int, default=None, metavar="N",
                   help="trial n's sampler sees the trials before n-N only, so that workers "
                        "need not wait for one another (default 3)")
    g.add_argument("--callback", action="append", default=[], metavar="MODULE:OBJECT",
                   help="Optuna study callback (study, trial) run after each trial; a class "
                        "is made with no arguments; study.stop() ends the search (repeatable)")


def add_compare(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare ``mtlsearch compare``."""
    from mtlsearch.defaults import DEFAULT_COMPUTE, DEFAULT_EPOCHS, DEFAULT_TRIALS

    pair = ",".join((reg["names"] or ["STRATEGY"])[:2])
    p = add("compare", "Run several strategies over several seeds and write a report.",
            "  mtlsearch compare\n"
            f"  mtlsearch compare --strategies {pair} --seeds 0,1 --trials 5\n")
    p.add_argument("--strategies", type=csv_list, default=None,
                   help="comma list (default: every registered strategy)")
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="default 0,1,2")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help="most trials per search (default %(default)s)")
    p.add_argument("--compute", default=DEFAULT_COMPUTE,
                   help="equal compute per search: training MACs, or Nx = N hard-sharing "
                        "trainings; 'none' = equal trials instead (default %(default)s)")
    p.add_argument("--workers", default="auto", metavar="N|auto",
                   help="searches run side by side in this many processes, same leaderboard "
                        "(default auto: one per CPU core, at most 8; on a GPU as many as its "
                        "memory holds)")
    p.add_argument("--weighting", default=None, metavar="NAME|auto|A,B",
                   help="loss weighting: a registered name (fixed), 'auto' (sampled among "
                        "all) or a comma list to sample from (default: equal; see "
                        "`mtlsearch weightings`)")
    p.add_argument("--out", default=DEFAULT_OUT, help="report folder (default %(default)s)")
    p.add_argument("--storage", default=None, help="Optuna storage (default sqlite:///OUT/compare.db)")
    p.add_argument("--strategy-arg", type=kv, action="append", default=[],
                   metavar="STRATEGY.KEY=VALUE",
                   help="a strategy's setting, e.g. STRATEGY.estimator=full (repeatable); "
                        "strategies left out get their quick settings, to keep compare quick: "
                        f"{reg['quick']}")
    training_options(p, DEFAULT_EPOCHS)
    optuna_options(p.add_argument_group("every search's study"))
    add_tracker_options(p.add_argument_group("experiment trackers"))
    add_config_option(p)
    json_flag(p)
    p.set_defaults(func=cmd_compare)


def terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")  # the running trial is queued again, as on Ctrl-C


def stop_on_sigterm() -> Any:
    """Make SIGTERM (a batch scheduler's stop, ``kill``) stop a search like Ctrl-C.

    Not under torchrun: its ranks may sit in a collective where no Python handler runs, and
    torchrun ends them itself. Returns the handler to restore (``None``: unchanged).
    """
    import signal
    import threading

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, terminated)


def cmd_search(args: argparse.Namespace) -> int:
    import signal

    from mtlsearch.study import search

    storage = default_storage(args)
    previous = stop_on_sigterm()
    try:
        with open_trackers(args):  # --tracker: registered for this search only
            result = search(
                strategy=args.strategy, dataset=args.dataset, space=args.space,
                trials=args.trials, budget=train_config(args, DEFAULT_SEARCH_EPOCHS),
                seed=args.seed, storage=storage, study_name=args.study,
                objectives=args.objectives, pruner=args.pruner,
                dataset_kwargs=dict(args.dataset_arg), space_kwargs=dict(args.space_arg),
                strategy_kwargs=dict(args.strategy_arg), out=args.out,
                progress=not args.quiet, timeout=args.timeout, compute=args.compute,
                weighting=args.weighting, sampler=args.sampler,
                sampler_kwargs=dict(args.sampler_arg), history_lag=args.history_lag,
                callbacks=callbacks(args.callback), workers=workers(args.workers),
                artifact_store=args.artifact_store,
            )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result.study is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    record_config(result.study, effective_config(args))  # show --config prints it back
    print(result.describe())
    if storage is not None:
        name = result.study.study_name
        print(f"\nnext: mtlsearch show --storage {storage} --study {name}\n"
              f"      mtlsearch export --storage {storage} --study {name} --out best-model")
    return 0


def callbacks(paths: Sequence[str]) -> list[str]:
    """``--callback`` paths, checked now (a bad path fails before any training)."""
    from mtlsearch.study.samplers import load_callback

    for path in paths:
        load_callback(path)
    return list(paths)


def workers(asked: str | None) -> int | str:
    """``--workers``: a whole number or ``auto`` (compare's default); checked now."""
    from mtlsearch.study.worker_count import parse_workers

    return parse_workers("auto" if asked is None else asked)


def per_strategy(pairs: Sequence[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """``[("affinity_tree.estimator", "full")]`` -> ``{"affinity_tree": {"estimator": "full"}}``."""
    result: dict[str, dict[str, Any]] = {}
    for key, value in pairs:
        strategy, dot, name = key.partition(".")
        if not dot or not strategy or not name:
            raise MTLSearchError(f"compare's --strategy-arg needs STRATEGY.KEY=VALUE, got {key!r}")
        result.setdefault(strategy, {})[name] = value
    return result


def cmd_compare(args: argparse.Namespace) -> int:
    from mtlsearch.study.comparison import DEFAULT_EPOCHS, compare

    with open_trackers(args):
        board = compare(
            strategies=args.strategies, dataset=args.dataset, space=args.space,
            seeds=args.seeds, trials=args.trials, budget=train_config(args, DEFAULT_EPOCHS),
            compute=None if str(args.compute).lower() == "none" else args.compute,
            out=args.out, dataset_kwargs=dict(args.dataset_arg),
            space_kwargs=dict(args.space_arg), strategy_kwargs=per_strategy(args.strategy_arg),
            storage=args.storage, progress=not args.quiet and not args.json,
            show=not args.json, workers=workers(args.workers), weighting=args.weighting,
            sampler=args.sampler, sampler_kwargs=dict(args.sampler_arg),
            history_lag=args.history_lag, callbacks=callbacks(args.callback),
        )
    storage = args.storage or f"sqlite:///{Path(args.out).resolve() / 'compare.db'}"
    if storage != "memory":  # each search's study keeps the comparison's options
        record_config_in(storage, [r["study"] for r in board.runs], effective_config(args),
                         "compare")
    if args.json:
        print_json(board.to_dict())
    return 0


