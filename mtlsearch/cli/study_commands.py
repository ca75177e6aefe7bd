"""``mtlsearch show`` and ``mtlsearch fail-stale``: read and repair a study."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtlsearch.cli.options import (
    default_storage,
    fmt,
    json_flag,
    make_console,
    print_json,
    storage_options,
)
from mtlsearch.errors import MTLSearchError

AddParser = Callable[[str, str, str], argparse.ArgumentParser]


def add_show(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare ``mtlsearch show``."""
    p = add("show", "Show a study's trials, or one trial (with --trial).",
            "  mtlsearch show\n  mtlsearch show --storage sqlite:///mtlsearch-out/study.db --json\n"
            "  mtlsearch show --trial 3 --picture trial3.png\n"
            "  mtlsearch show --config > search.toml   # then: mtlsearch search --config "
            "search.toml")
    storage_options(p)
    p.add_argument("--trial", type=int, default=None, help="show this trial in detail")
    p.add_argument("--picture", default=None, metavar="FILE",
                   help="with --trial: draw its architecture (FILE.png and FILE.svg)")
    p.add_argument("--config", action="store_true",
                   help="print the options the study ran with as TOML: `mtlsearch search "
                        "--config FILE` runs it again (with --json: as JSON)")
    json_flag(p)
    p.set_defaults(func=cmd_show)


def add_fail_stale(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare ``mtlsearch fail-stale``."""
    p = add("fail-stale",
            "Fail, and queue again, the running trials whose worker is dead or silent.",
            "  mtlsearch fail-stale --storage journal:runs/study.log --study s1\n"
            "  mtlsearch fail-stale --storage sqlite:///runs/study.db --older-than 600 "
            "--dry-run\n"
            "A trial's lease is renewed every MTLSEARCH_HEARTBEAT_INTERVAL seconds by its worker;\n"
            "workers do this themselves before each trial after MTLSEARCH_GRACE_PERIOD seconds.\n"
            "Each failed trial is queued again with the same parameters and seed and no longer\n"
            "counts toward the budget: run the search again to redo it.")
    storage_options(p)
    p.add_argument("--older-than", type=float, default=None, metavar="SECONDS",
                   help="fail trials whose lease is older than this (default: "
                        "MTLSEARCH_GRACE_PERIOD, 120 s); a worker known dead on this machine "
                        "is failed whatever its lease")
    p.add_argument("--dry-run", action="store_true", help="only list what would be failed")
    json_flag(p)
    p.set_defaults(func=cmd_fail_stale)


def cmd_show(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from mtlsearch.study import describe, open_study, trials_table
    from mtlsearch.tasks.names import display_name

    study = open_study(default_storage(args), args.study)
    if args.config:
        return show_config(args, study)
    if args.trial is not None:
        return show_trial(args, study)
    rows = trials_table(study)
    if args.json:
        print_json({"study": study.study_name, "settings": study.user_attrs.get("mtlsearch"),
                     "trials": rows})
        return 0
    table = Table(title=f"study {study.study_name} ({len(rows)} trials; * = Pareto front)")
    for column, justify in (("#", "right"), ("state", "left"), ("Δ_MTL val %", "right"),
                            ("Δ_MTL test %", "right"), ("params", "right"), ("MACs", "right"),
                            ("train s", "right"), ("", "left"), ("hyper-parameters / reason", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        detail = r["fail_reason"] or ", ".join(f"{k}={v}" for k, v in r["hyperparams"].items())
        table.add_row(str(r["number"]), r["state"].lower(), fmt(r["delta_mtl"], "+.2f"),
                      fmt(r["delta_mtl_test"], "+.2f"), fmt(r["params"], ","),
                      fmt(r["macs"], ","), fmt(r["train_seconds"], ".1f"),
                      "*" if r["pareto"] else "", escape(display_name(detail)))
    console = make_console()
    console.print(table)
    console.print(describe(study), highlight=False, markup=False)
    return 0


def show_config(args: argparse.Namespace, study: Any) -> int:
    """``show --config``: the study's recorded options, as TOML (or JSON)."""
    from mtlsearch.cli.config import config_toml, recorded_config

    record = recorded_config(study)
    if args.json:
        print_json({"study": study.study_name, **record})
    else:
        sys.stdout.write(config_toml(record))
    return 0


def show_trial(args: argparse.Namespace, study: Any) -> int:
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
        print_json(data)
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




def cmd_fail_stale(args: argparse.Namespace) -> int:
    from mtlsearch.study import open_study
    from mtlsearch.study.storage import budget_lock, fail_stale_trials

    storage = default_storage(args)
    if args.older_than is not None and args.older_than < 0:
        raise MTLSearchError(f"--older-than must be 0 or more seconds, got {args.older_than}")
    study = open_study(storage, args.study)
    with budget_lock(storage):  # the workers' "count, then ask" never sees half of it
        rows = fail_stale_trials(study, grace=args.older_than, dry_run=args.dry_run)
    if args.json:
        print_json({"study": study.study_name, "dry_run": args.dry_run,
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


