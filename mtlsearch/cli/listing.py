"""``mtlsearch strategies|spaces|datasets|weightings|plugins``: what is registered."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mtlsearch.cli.options import json_flag, make_console, print_json

AddParser = Callable[[str, str, str], argparse.ArgumentParser]


def add_listings(add: AddParser, reg: dict[str, Any]) -> None:
    """Declare the listing commands."""
    for name, what in (("strategies", "search strategies"), ("spaces", "search spaces"),
                       ("datasets", "datasets"),
                       ("weightings", "loss weightings and gradient aggregators")):
        p = add(name, f"List the registered {what}.", f"  mtlsearch {name}\n  mtlsearch {name} --json")
        json_flag(p)
        p.set_defaults(func=cmd_list, what=name, light=True)
    p = add("plugins", "List loaded plugins (distribution, version, hooks) and failures.",
            "  mtlsearch plugins\n  MTLSEARCH_DISABLE_PLUGINS=NAME,OTHER mtlsearch plugins --json")
    json_flag(p)
    p.set_defaults(func=cmd_plugins, light=True)


def listing(what: str) -> list[dict[str, Any]]:
    """The rows ``mtlsearch WHAT`` shows, from the registrations alone: a lazy registration
    is described by what it declared, so listing imports none of the entries."""
    import importlib.util

    from mtlsearch import registry

    if what == "strategies":
        return [{"name": r.name, "description": r.info["description"],
                 "dynamic": r.info["dynamic"], "module": r.info["module"]}
                for r in registry.strategies().registrations()]
    if what == "weightings":
        rows = []
        for r in registry.weightings().registrations():
            info = r.info
            # Weighting.missing(): the required modules that cannot be imported here
            missing = [m for m in info["requires"] if importlib.util.find_spec(m) is None]
            rows.append({"name": r.name, "description": info["description"],
                         "kind": "gradient" if info["gradient"] else "loss",
                         "one_task": not info["all_tasks"], "ddp": info["distributed"],
                         "missing": ", ".join(missing), "module": info["module"]})
        return rows
    reg = registry.spaces() if what == "spaces" else registry.datasets()
    return [{"name": r.name, "description": r.info["description"], "module": r.info["module"]}
            for r in reg.registrations()]


def cmd_list(args: argparse.Namespace) -> int:
    rows = listing(args.what)
    if args.json:
        print_json(rows)
        return 0
    from rich.table import Table

    table = Table(title=f"{len(rows)} {args.what}")
    for column in rows[0] if rows else ["name"]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    make_console().print(table)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from mtlsearch.plugin_manager import list_plugins, plugin_failures

    plugins = [{"name": p.name, "distribution": p.distribution, "version": p.version,
                "hooks": list(p.hooks)} for p in list_plugins()]
    failures = plugin_failures()
    if args.json:
        print_json({"plugins": plugins, "failures": failures})
        return 0
    from rich.table import Table

    table = Table(title=f"{len(plugins)} plugins")
    for column in ("name", "distribution", "version", "hooks"):
        table.add_column(column)
    for p in plugins:
        table.add_row(p["name"], p["distribution"] or "-", p["version"] or "-", ", ".join(p["hooks"]))
    console = make_console()
    console.print(table)
    if failures:
        bad = Table(title=f"{len(failures)} plugins failed to load", style="red")
        bad.add_column("name")
        bad.add_column("error")
        for name, error in sorted(failures.items()):
            bad.add_row(name, error)
        console.print(bad)
    return 0
