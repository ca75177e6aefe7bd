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
        p.set_defaults(func=cmd_list, what=name)
    p = add("plugins", "List loaded plugins (distribution, version, hooks) and failures.",
            "  mtlsearch plugins\n  MTLSEARCH_DISABLE_PLUGINS=NAME,OTHER mtlsearch plugins --json")
    json_flag(p)
    p.set_defaults(func=cmd_plugins)


def listing(what: str) -> list[dict[str, Any]]:
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

    rows = listing(args.what)
    if args.json:
        print_json(rows)
        return 0
    table = Table(title=f"{len(rows)} {args.what}")
    for column in rows[0] if rows else ["name"]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    make_console().print(table)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mtlsearch.plugin_manager import list_plugins, plugin_failures

    plugins = [{"name": p.name, "distribution": p.distribution, "version": p.version,
                "hooks": list(p.hooks)} for p in list_plugins()]
    failures = plugin_failures()
    if args.json:
        print_json({"plugins": plugins, "failures": failures})
        return 0
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


