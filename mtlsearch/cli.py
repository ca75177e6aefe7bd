"""The ``mtlsearch`` command: search, compare, inspect, export and predict.

Every subcommand has ``--help`` with an example. Bad input (unknown names, mismatched
studies, missing or damaged files) prints one line to stderr and exits with status 2; the
other exit statuses are in :data:`EXIT_CODES`.

Example:
    >>> main(["strategies", "--json"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtlsearch.errors import MTLSearchError

__all__ = ["main", "build_parser", "EXIT_CODES"]

log = logging.getLogger(__name__)

DEFAULT_OUT = "mtlsearch-out"
DEFAULT_SEARCH_EPOCHS = 3
#: What ``mtlsearch`` exits with. 75 is sysexits' EX_TEMPFAIL ("try again later"): the study
#: stopped for lack of disk space and resumes once there is some; 130 and 143 are the shell's
#: 128 + SIGINT / SIGTERM: the running trial was queued again.
EXIT_CODES = {"ok": 0, "error": 2, "no_space": 75, "interrupted": 130, "terminated": 143}


def _version() -> str:
    from mtlsearch._version import __version__

    return __version__


# ----------------------------------------------------------------------------- parsing
def _kv(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, lists), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(p) for p in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def _registered() -> dict[str, Any]:
    """What the help texts show of the registry: the default strategy, two strategy names for
    examples, the quick settings compare uses and the plugins' commands (the core names no
    plugin; a broken plugin set still gets its help)."""
    from mtlsearch.registry import commands, default_strategy, list_strategies

    try:
        default: str | None = default_strategy()
    except MTLSearchError:
        default = None
    try:
        names = list_strategies()
    except MTLSearchError:
        names = []
    try:
        plugin_commands = commands().registrations()
    except MTLSearchError as exc:
        log.warning("plugin commands are unavailable: %s", exc)
        plugin_commands = []
    return {"default": default, "names": names, "commands": plugin_commands}


def _quick_text(names: Sequence[str]) -> str:
    from mtlsearch.study.comparison import quick_settings

    parts = []
    for name in names:
        settings = quick_settings(name)
        if settings:
            parts.append(f"{name} gets " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return "; ".join(parts) or "none declare quick settings"


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    common.add_argument("--log-level", default="WARNING", metavar="LEVEL",
                        help="DEBUG, INFO, WARNING (default), ERROR")
    return common


def _training(p: argparse.ArgumentParser, epochs: int) -> None:
    g = p.add_argument_group("what to search")
    g.add_argument("--dataset", default="multi_digits", help="dataset name (default %(default)s)")
    g.add_argument("--space", default="small_cnn", help="search space (default %(default)s)")
    g.add_argument("--dataset-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. n_train=500 (repeatable)")
    g.add_argument("--space-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="search-space option, e.g. channels=[8,16] (repeatable)")
    t = p.add_argument_group("training of every candidate")
    t.add_argument("--epochs", type=int, default=epochs, help="epochs (default %(default)s)")
    t.add_argument("--batch-size", type=int, default=64, help="batch size (default %(default)s)")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default %(default)s)")
    t.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    t.add_argument("--threads", type=int, default=1,
                   help="CPU threads of torch (default 1: small models train faster on one "
                        "thread than on contended cores; 0 = torch's default)")
    t.add_argument("--compile", action="store_true",
                   help="run every candidate's forward pass through torch.compile (long runs)")
    t.add_argument("--no-amp", dest="amp", action="store_const", const=False, default=None,
                   help="train in fp32 on a GPU (default: bf16 autocast where supported)")
    t.add_argument("--no-channels-last", dest="channels_last", action="store_const",
                   const=False, default=None,
                   help="keep image tensors contiguous on a GPU (default: channels-last)")


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=None,
                   help=f"Optuna storage (default sqlite:///{DEFAULT_OUT}/study.db)")
    p.add_argument("--study", default=None,
                   help="study name (may be left out when the storage holds one study)")


def build_parser(*, plugins: bool = True) -> argparse.ArgumentParser:
    """The argument parser of ``mtlsearch`` and its subcommands.

    ``plugins=False`` skips loading the plugins, for a command line that prints no help and
    runs a built-in command: the help texts then name no registered strategy, and the plugins'
    commands are not listed.
    """
    from mtlsearch.study.comparison import DEFAULT_COMPUTE, DEFAULT_EPOCHS, DEFAULT_TRIALS

    common = _common()
    reg = _registered() if plugins else {"default": None, "names": [], "commands": []}
    default = reg["default"]
    example = default or (reg["names"] or ["STRATEGY"])[0]
    pair = ",".join((reg["names"] or ["STRATEGY"])[:2])
    parser = argparse.ArgumentParser(
        prog="mtlsearch", formatter_class=_formatter,
        description="Search how a deep network should be shared among many tasks.",
        epilog="examples:\n  mtlsearch search --trials 10\n  mtlsearch compare\n"
               "  mtlsearch show\n  mtlsearch export --best --out best-model\n\n"
               "`mtlsearch COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"mtlsearch {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=[common],
                              formatter_class=_formatter, epilog="example:\n" + epilog)

    p = add("search", "Search sharing architectures with an Optuna study (resumable).",
            "  mtlsearch search --trials 20 --epochs 5\n"
            f"  mtlsearch search --strategy {example} --dataset synthetic --space mlp \\\n"
            "      --dataset-arg n_tasks=6 --storage journal:runs/study.log --study s1\n"
            "  mtlsearch search --dataset dense_shapes --dataset-arg size=32 \\\n"
            "      --space dilated_resnet18   # segmentation, depth, normals, edges\n"
            "Run the same command again to resume an interrupted study.")
    p.add_argument("--strategy", default=None,
                   help=f"strategy (default: the registered default, {default or 'none'})")
    p.add_argument("--strategy-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="strategy option (repeatable)")
    _training(p, DEFAULT_SEARCH_EPOCHS)
    s = p.add_argument_group("study")
    s.add_argument("--trials", type=int, default=10, help="study-wide trial budget (default 10)")
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.add_argument("--out", default=DEFAULT_OUT, help="output folder (default %(default)s)")
    s.add_argument("--storage", default=None,
                   help="sqlite:///F.db, journal:F.log, postgresql://... or memory "
                        "(default sqlite:///OUT/study.db)")
    s.add_argument("--study", default=None, help="study name (default STRATEGY-DATASET-SPACE)")
    s.add_argument("--objectives", type=_csv, default=["delta_mtl", "params"],
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
    p.set_defaults(func=cmd_search)

    p = add("compare", "Run several strategies over several seeds and write a report.",
            "  mtlsearch compare\n"
            f"  mtlsearch compare --strategies {pair} --seeds 0,1 --trials 5\n")
    p.add_argument("--strategies", type=_csv, default=None,
                   help="comma list (default: every registered strategy)")
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="default 0,1,2")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help="most trials per search (default %(default)s)")
    p.add_argument("--compute", default=DEFAULT_COMPUTE,
                   help="equal compute per search: training MACs, or Nx = N hard-sharing "
                        "trainings; 'none' = equal trials instead (default %(default)s)")
    p.add_argument("--workers", type=int, default=None,
                   help="searches run side by side in this many processes, same leaderboard "
                        "(default: the usable CPU cores, at most 8)")
    p.add_argument("--weighting", default=None, metavar="NAME|auto|A,B",
                   help="loss weighting: a registered name (fixed), 'auto' (sampled among "
                        "all) or a comma list to sample from (default: equal; see "
                        "`mtlsearch weightings`)")
    p.add_argument("--out", default=DEFAULT_OUT, help="report folder (default %(default)s)")
    p.add_argument("--storage", default=None, help="Optuna storage (default sqlite:///OUT/compare.db)")
    p.add_argument("--strategy-arg", type=_kv, action="append", default=[],
                   metavar="STRATEGY.KEY=VALUE",
                   help="a strategy's setting, e.g. STRATEGY.estimator=full (repeatable); "
                        "strategies left out get their quick settings, to keep compare quick: "
                        f"{_quick_text(reg['names'])}")
    _training(p, DEFAULT_EPOCHS)
    _json_flag(p)
    p.set_defaults(func=cmd_compare)

    for name, what in (("strategies", "search strategies"), ("spaces", "search spaces"),
                       ("datasets", "datasets"),
                       ("weightings", "loss weightings and gradient aggregators")):
        p = add(name, f"List the registered {what}.", f"  mtlsearch {name}\n  mtlsearch {name} --json")
        _json_flag(p)
        p.set_defaults(func=cmd_list, what=name)
    p = add("plugins", "List loaded plugins (distribution, version, hooks) and failures.",
            "  mtlsearch plugins\n  MTLSEARCH_DISABLE_PLUGINS=NAME,OTHER mtlsearch plugins --json")
    _json_flag(p)
    p.set_defaults(func=cmd_plugins)

    p = add("show", "Show a study's trials, or one trial (with --trial).",
            "  mtlsearch show\n  mtlsearch show --storage sqlite:///mtlsearch-out/study.db --json\n"
            "  mtlsearch show --trial 3 --picture trial3.png")
    _storage_args(p)
    p.add_argument("--trial", type=int, default=None, help="show this trial in detail")
    p.add_argument("--picture", default=None, metavar="FILE",
                   help="with --trial: draw its architecture (FILE.png and FILE.svg)")
    _json_flag(p)
    p.set_defaults(func=cmd_show)

    p = add("export", "Export a trained trial (weights, architecture, pictures, ONNX).",
            "  mtlsearch export --best --out best-model\n"
            "  mtlsearch export --study s1 --storage journal:runs/study.log --trial 4 --out m4 --onnx\n"
            "  mtlsearch export --pareto 1 --out smaller-model")
    _storage_args(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="trial number")
    which.add_argument("--best", action="store_true", help="the best validation Δ_MTL")
    which.add_argument("--pareto", type=int, metavar="K",
                       help="entry K (from 0) of the Pareto front as `mtlsearch show` lists it")
    p.add_argument("--out", required=True, metavar="FOLDER", help="export folder")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx")
    p.add_argument("--search-out", default=None, metavar="DIR",
                   help="the search's --out (kept weights); default: as recorded")
    p.set_defaults(func=cmd_export)

    p = add("fail-stale",
            "Fail, and queue again, the running trials whose worker is dead or silent.",
            "  mtlsearch fail-stale --storage journal:runs/study.log --study s1\n"
            "  mtlsearch fail-stale --storage sqlite:///runs/study.db --older-than 600 "
            "--dry-run\n"
            "A trial's lease is renewed every MTLSEARCH_HEARTBEAT_INTERVAL seconds by its worker;\n"
            "workers do this themselves before each trial after MTLSEARCH_GRACE_PERIOD seconds.\n"
            "Each failed trial is queued again with the same parameters and seed and no longer\n"
            "counts toward the budget: run the search again to redo it.")
    _storage_args(p)
    p.add_argument("--older-than", type=float, default=None, metavar="SECONDS",
                   help="fail trials whose lease is older than this (default: "
                        "MTLSEARCH_GRACE_PERIOD, 120 s); a worker known dead on this machine "
                        "is failed whatever its lease")
    p.add_argument("--dry-run", action="store_true", help="only list what would be failed")
    _json_flag(p)
    p.set_defaults(func=cmd_fail_stale)

    p = add("predict", "Predict every task for the inputs of an .npz file.",
            "  mtlsearch predict best-model --input new.npz --output preds.npz")
    p.add_argument("folder", help="an exported model folder")
    p.add_argument("--input", required=True, help=".npz file with the inputs")
    p.add_argument("--output", required=True, help=".npz file to write (one array per task)")
    p.add_argument("--input-key", default="X", help="array holding the inputs (default X)")
    p.add_argument("--device", default="cpu", help="default cpu")
    p.add_argument("--picture", default=None, metavar="PATH",
                   help="dense models: draw inputs and predicted maps to PATH.png and PATH.svg "
                        "(arrays of the input file named like a task are drawn as ground truth)")
    p.add_argument("--picture-samples", type=int, default=4, metavar="N",
                   help="rows of the picture: the first N inputs (default 4)")
    p.set_defaults(func=cmd_predict)
    # Plugins' commands (register_commands): each parses its own arguments, so main() hands
    # them over before argparse sees them; listed here for `mtlsearch --help`.
    for registration in reg["commands"]:
        command = registration.entry
        p = sub.add_parser(command.name, add_help=False, formatter_class=_formatter,
                           help=command.help,
                           description=f"{command.help} (see `mtlsearch {command.name} --help`; "
                                       f"from the plugin {registration.plugin}).")
        p.add_argument("plugin_args", nargs=argparse.REMAINDER)
        p.set_defaults(func=cmd_plugin_command, log_level="WARNING")
    return parser


def cmd_plugin_command(args: argparse.Namespace) -> int:
    """Run a plugin's command that argparse parsed (main() normally hands it over first)."""
    return _plugin_command(args.command, list(args.plugin_args))


def _plugin_command(name: str, argv: list[str]) -> int:
    """Hand ``argv`` to the registered command ``name`` (``--help`` prints its parser's help)."""
    from mtlsearch.registry import commands

    command = commands().get(name)
    if command.parser is not None and argv[:1] in (["-h"], ["--help"]):
        parser = command.parser()
        parser.prog = f"mtlsearch {name}"
        parser.print_help()
        return 0
    return int(command.run(argv) or 0)


def _is_plugin_command(name: str) -> bool:
    from mtlsearch.registry import BUILTIN_COMMANDS, commands

    if name.startswith("-") or name in BUILTIN_COMMANDS:
        return False
    try:
        return name in commands()
    except MTLSearchError:
        return False


# ----------------------------------------------------------------------------- helpers
def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:  # piped or in CI: wide lines beat cells wrapped at 80 columns
        console = Console(stderr=stderr, width=200)
    return console


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, default=str, allow_nan=True) + "\n")


def _budget(args: argparse.Namespace, default_epochs: int) -> Any:
    from mtlsearch.engine.train import TrainConfig

    if args.threads:  # 0 keeps torch's default
        import torch

        if args.threads < 0:
            raise MTLSearchError(f"--threads must be 0 or more, got {args.threads}")
        torch.set_num_threads(args.threads)

    return TrainConfig(epochs=args.epochs or default_epochs, batch_size=args.batch_size,
                       lr=args.lr, device=args.device, compile=args.compile, amp=args.amp,
                       channels_last=args.channels_last)


def _default_storage(args: argparse.Namespace) -> str | None:
    storage = getattr(args, "storage", None)
    if storage == "memory":
        return None
    if storage:
        return storage
    out = getattr(args, "out", None) if args.command == "search" else DEFAULT_OUT
    return f"sqlite:///{Path(out or DEFAULT_OUT) / 'study.db'}"


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


# ----------------------------------------------------------------------------- commands
def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")  # the running trial is queued again, as on Ctrl-C


def _stop_on_sigterm() -> Any:
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
    return signal.signal(signal.SIGTERM, _terminated)


def cmd_search(args: argparse.Namespace) -> int:
    import signal

    from mtlsearch.study import search

    storage = _default_storage(args)
    previous = _stop_on_sigterm()
    try:
        result = search(
            strategy=args.strategy, dataset=args.dataset, space=args.space, trials=args.trials,
            budget=_budget(args, DEFAULT_SEARCH_EPOCHS), seed=args.seed, storage=storage,
            study_name=args.study, objectives=args.objectives, pruner=args.pruner,
            dataset_kwargs=dict(args.dataset_arg), space_kwargs=dict(args.space_arg),
            strategy_kwargs=dict(args.strategy_arg), out=args.out, progress=not args.quiet,
            timeout=args.timeout, compute=args.compute, weighting=args.weighting,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result.study is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    print(result.describe())
    if storage is not None:
        name = result.study.study_name
        print(f"\nnext: mtlsearch show --storage {storage} --study {name}\n"
              f"      mtlsearch export --storage {storage} --study {name} --best --out best-model")
    return 0


def _workers(asked: int | None) -> int:
    """``--workers``, or the usable CPU cores (at most 8) when not given."""
    if asked is not None:
        if asked < 1:
            raise MTLSearchError(f"--workers must be at least 1, got {asked}")
        return asked
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cores or 1))


def _per_strategy(pairs: Sequence[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
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

    board = compare(
        strategies=args.strategies, dataset=args.dataset, space=args.space, seeds=args.seeds,
        trials=args.trials, budget=_budget(args, DEFAULT_EPOCHS),
        compute=None if str(args.compute).lower() == "none" else args.compute,
        out=args.out, dataset_kwargs=dict(args.dataset_arg), space_kwargs=dict(args.space_arg),
        strategy_kwargs=_per_strategy(args.strategy_arg), storage=args.storage,
        progress=not args.quiet and not args.json, show=not args.json,
        workers=_workers(args.workers), weighting=args.weighting,
    )
    if args.json:
        _print_json(board.to_dict())
    return 0


def _listing(what: str) -> list[dict[str, Any]]:
    from mtlsearch.registry import datasets, spaces, strategies

    def first_line(obj: Any) -> str:
        doc = (getattr(obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""

    if what == "strategies":
        reg = strategies()
        return [{"name": n, "description": getattr(reg.get(n), "description", "") or
                 first_line(reg.get(n)), "dynamic": reg.get(n).is_dynamic(),
                 "module": reg.get(n).__module__} for n in reg.names()]
    if what == "weightings":
        from mtlsearch.registry import weightings

        reg = weightings()
        return [{"name": n, "description": getattr(reg.get(n), "description", "") or
                 first_line(reg.get(n)), "kind": "gradient" if reg.get(n).gradient else "loss",
                 "one_task": not reg.get(n).all_tasks, "ddp": bool(reg.get(n).distributed),
                 "missing": ", ".join(reg.get(n).missing()), "module": reg.get(n).__module__}
                for n in reg.names()]
    reg = spaces() if what == "spaces" else datasets()
    return [{"name": n, "description": first_line(reg.get(n)),
             "module": getattr(reg.get(n), "__module__", "")} for n in reg.names()]


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    rows = _listing(args.what)
    if args.json:
        _print_json(rows)
        return 0
    table = Table(title=f"{len(rows)} {args.what}")
    for column in rows[0] if rows else ["name"]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    _console().print(table)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mtlsearch.plugin_manager import list_plugins, plugin_failures

    plugins = [{"name": p.name, "distribution": p.distribution, "version": p.version,
                "hooks": list(p.hooks)} for p in list_plugins()]
    failures = plugin_failures()
    if args.json:
        _print_json({"plugins": plugins, "failures": failures})
        return 0
    table = Table(title=f"{len(plugins)} plugins")
    for column in ("name", "distribution", "version", "hooks"):
        table.add_column(column)
    for p in plugins:
        table.add_row(p["name"], p["distribution"] or "-", p["version"] or "-", ", ".join(p["hooks"]))
    console = _console()
    console.print(table)
    if failures:
        bad = Table(title=f"{len(failures)} plugins failed to load", style="red")
        bad.add_column("name")
        bad.add_column("error")
        for name, error in sorted(failures.items()):
            bad.add_row(name, error)
        console.print(bad)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from mtlsearch.study import describe, open_study, trials_table
    from mtlsearch.tasks.names import display_name

    study = open_study(_default_storage(args), args.study)
    if args.trial is not None:
        return _show_trial(args, study)
    rows = trials_table(study)
    if args.json:
        _print_json({"study": study.study_name, "settings": study.user_attrs.get("mtlsearch"),
                     "trials": rows})
        return 0
    table = Table(title=f"study {study.study_name} ({len(rows)} trials; * = Pareto front)")
    for column, justify in (("#", "right"), ("state", "left"), ("Δ_MTL val %", "right"),
                            ("Δ_MTL test %", "right"), ("params", "right"), ("MACs", "right"),
                            ("train s", "right"), ("", "left"), ("hyper-parameters / reason", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        detail = r["fail_reason"] or ", ".join(f"{k}={v}" for k, v in r["hyperparams"].items())
        table.add_row(str(r["number"]), r["state"].lower(), _fmt(r["delta_mtl"], "+.2f"),
                      _fmt(r["delta_mtl_test"], "+.2f"), _fmt(r["params"], ","),
                      _fmt(r["macs"], ","), _fmt(r["train_seconds"], ".1f"),
                      "*" if r["pareto"] else "", escape(display_name(detail)))
    console = _console()
    console.print(table)
    console.print(describe(study), highlight=False, markup=False)
    return 0


def _show_trial(args: argparse.Namespace, study: Any) -> int:
    from mtlsearch.study import rebuild_trial
    from mtlsearch.tasks.names import display_name

    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == args.trial), None)
    if trial is None:
        raise MTLSearchError(f"study {study.study_name!r} has no trial {args.trial}")
    data = {"number": trial.number, "state": trial.state.name, "hyperparams": trial.params,
            "values": trial.values, "user_attrs": trial.user_attrs}
    if args.picture:
        from mtlsearch import viz

        graph, _ = rebuild_trial(study, args.trial)
        viz.draw_architecture(graph, args.picture, title=f"{study.study_name} trial {args.trial}")
        stem = Path(args.picture).with_suffix("")
        data["picture"] = [f"{stem}.png", f"{stem}.svg"]
    if args.json:
        _print_json(data)
        return 0
    a = trial.user_attrs
    lines = [f"trial {trial.number} of {study.study_name}: {trial.state.name.lower()}",
             f"hyper-parameters: {json.dumps(trial.params)}"]
    if "delta_mtl" in a:
        lines += [f"Δ_MTL val {a['delta_mtl']:+.2f}%  test {a['delta_mtl_test']:+.2f}%  "
                  f"params {a['params']:,}  MACs {a['macs']:,}  train {a['train_seconds']:.1f}s",
                  "per task (validation Δ %, test metrics):"]
        for task, delta in a.get("per_task_delta", {}).items():
            test = a["metrics"]["test"].get(task, {})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "loss")
            lines.append(f"  {display_name(task):<20} {delta:+7.2f}   {shown}")
        from mtlsearch.graph.sharing import SharingGraph

        graph = SharingGraph.from_dict(a["graph"])
        lines.append(f"branches per depth: {graph.branches_per_depth()}")
    if a.get("fail_reason"):
        lines.append(f"failure: {a['fail_reason']}")
    if "picture" in data:
        lines.append(f"picture: {', '.join(data['picture'])}")
    print("\n".join(lines))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mtlsearch.study import best_trial, export_trial, open_study, pareto_front

    study = open_study(_default_storage(args), args.study)
    if args.best:
        which: int | str = "best"
    elif args.pareto is not None:
        front = pareto_front(study)
        if not 0 <= args.pareto < len(front):
            raise MTLSearchError(f"the Pareto front of {study.study_name!r} has {len(front)} "
                                 f"entries (0..{len(front) - 1}); --pareto {args.pareto} is outside")
        which = front[args.pareto]["number"]
    else:
        which = args.trial
    if which == "best":
        which = best_trial(study).number
    folder = export_trial(study, which, args.out, out=args.search_out, onnx=args.onnx)
    print(f"exported trial {which} of {study.study_name} to {folder}")
    return 0


def cmd_fail_stale(args: argparse.Namespace) -> int:
    from mtlsearch.study import open_study
    from mtlsearch.study.storage import budget_lock, fail_stale_trials

    storage = _default_storage(args)
    if args.older_than is not None and args.older_than < 0:
        raise MTLSearchError(f"--older-than must be 0 or more seconds, got {args.older_than}")
    study = open_study(storage, args.study)
    with budget_lock(storage):  # the workers' "count, then ask" never sees half of it
        rows = fail_stale_trials(study, grace=args.older_than, dry_run=args.dry_run)
    if args.json:
        _print_json({"study": study.study_name, "dry_run": args.dry_run,
                     "trials": [r.to_dict() for r in rows]})
        return 0
    from mtlsearch.study.progress import format_seconds

    failed = [r for r in rows if r.verdict != "running"]
    kept = [r for r in rows if r.verdict == "running"]
    for r in failed:
        if args.dry_run:
            print(f"trial {r.number}: would be failed and queued again ({r.reason})")
        elif r.retry is not None:
            print(f"trial {r.number}: failed ({r.reason}); queued again as trial {r.retry} "
                  "with the same parameters and seed")
        else:
            print(f"trial {r.number}: failed ({r.reason}); not queued again (retried "
                  "MTLSEARCH_MAX_RETRY times already: it counts as a failed trial)")
    for r in kept:
        who = f"{r.worker.get('host', '?')} pid {r.worker.get('pid', '?')}"
        print(f"trial {r.number}: kept running (worker {who}, lease renewed "
              f"{format_seconds(r.age)} ago)")
    verb = "would fail" if args.dry_run else "failed and queued again"
    print(f"study {study.study_name!r}: {len(failed)} stale trial"
          f"{'s' if len(failed) != 1 else ''} {verb}, {len(kept)} running trial"
          f"{'s' if len(kept) != 1 else ''} kept"
          + ("; run the search again to redo them" if failed and not args.dry_run else ""))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mtlsearch import export
    from mtlsearch.tasks.names import display_name

    path = export.predict_npz(args.folder, args.input, args.output, input_key=args.input_key,
                              device=args.device, picture=args.picture,
                              picture_samples=args.picture_samples)
    import numpy as np

    with np.load(path) as data:
        shapes = {k: data[k].shape for k in data.files}
    print(f"wrote {path}: " + ", ".join(f"{display_name(k)} {tuple(v)}" for k, v in shapes.items()))
    if args.picture:
        stem = Path(args.picture).with_suffix("") if Path(args.picture).suffix.lower() in (
            ".png", ".svg", ".pdf") else Path(args.picture)
        print(f"wrote {stem}.png and {stem}.svg")
    return 0


# ----------------------------------------------------------------------------- entry point
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtlsearch`` with ``argv`` (default: the command line); returns the exit status.

    Example:
        >>> main(["--version"])  # doctest: +SKIP
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and _is_plugin_command(argv[0]):  # argparse would swallow the command's options
        try:
            return _plugin_command(argv[0], argv[1:])
        except MTLSearchError as exc:
            print(f"mtlsearch: error: {_one_line(exc)}", file=sys.stderr)
            return 2
    from mtlsearch.registry import BUILTIN_COMMANDS

    # Loading every plugin costs seconds: only help texts and the command list need them.
    no_help = bool(argv) and argv[0] in BUILTIN_COMMANDS and not {"-h", "--help"} & set(argv)
    parser = build_parser(plugins=not no_help)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    import torch

    threads = torch.get_num_threads()
    try:
        from mtlsearch.study.progress import configure_logging

        configure_logging(args.log_level)
        return int(args.func(args) or 0)
    except MTLSearchError as exc:
        from mtlsearch.errors import OutOfSpaceError

        print(f"mtlsearch: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CODES["no_space" if isinstance(exc, OutOfSpaceError) else "error"]
    except KeyboardInterrupt as exc:
        terminated = str(exc) == "SIGTERM"
        print(f"mtlsearch: {'terminated (SIGTERM)' if terminated else 'interrupted'}; the "
              "running trial is queued again with the same parameters and seed. Run the same "
              "command again to resume.", file=sys.stderr)
        return EXIT_CODES["terminated" if terminated else "interrupted"]
    except Exception as exc:
        # Storage drivers that are not installed, unreadable files, malformed storage URLs,
        # a database that fails under us: one line, not a traceback.
        if isinstance(exc, (ImportError, OSError)) or _is_storage_error(exc):
            print(f"mtlsearch: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            return EXIT_CODES["error"]
        raise
    finally:
        torch.set_num_threads(threads)  # --threads must not outlive an in-process call


def _is_storage_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "optuna"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
