"""The argument parser of ``mtlsearch``: each command declares its own options in its module;
this one assembles them and fills the help texts from the registry."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from mtlsearch.cli.export_command import add_export
from mtlsearch.cli.listing import add_listings
from mtlsearch.cli.options import common_options, formatter
from mtlsearch.cli.plugin_commands import add_plugin_commands
from mtlsearch.cli.predict_command import add_predict
from mtlsearch.cli.search_commands import add_compare, add_search
from mtlsearch.cli.study_commands import add_fail_stale, add_show
from mtlsearch.errors import MTLSearchError

log = logging.getLogger(__name__)

#: The built-in commands in the order ``--help`` lists them.
COMMANDS = (add_search, add_compare, add_listings, add_show, add_export, add_fail_stale,
            add_predict)


def version() -> str:
    from mtlsearch._version import __version__

    return __version__


def registered() -> dict[str, Any]:
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


def quick_text(names: Sequence[str]) -> str:
    """``compare``'s quick settings of ``names``, from their registrations (nothing imported:
    a lazy strategy declares them, an eager one is asked)."""
    from mtlsearch.registry import strategies

    reg = strategies()
    parts = []
    for name in names:
        settings = reg.registration(name).info.get("quick_settings") or {}
        if settings:
            parts.append(f"{name} gets " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return "; ".join(parts) or "none declare quick settings"


def build_parser(*, plugins: bool = True) -> argparse.ArgumentParser:
    """The argument parser of ``mtlsearch`` and its subcommands.

    ``plugins=False`` skips loading the plugins, for a command line that prints no help and
    runs a built-in command: the help texts then name no registered strategy, and the plugins'
    commands are not listed.
    """
    common = common_options()
    reg = registered() if plugins else {"default": None, "names": [], "commands": []}
    reg["quick"] = quick_text(reg["names"])
    parser = argparse.ArgumentParser(
        prog="mtlsearch", formatter_class=formatter,
        description="Search how a deep network should be shared among many tasks.",
        epilog="examples:\n  mtlsearch search --trials 10\n  mtlsearch compare\n"
               "  mtlsearch show\n  mtlsearch export --best --out best-model\n\n"
               "`mtlsearch COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"mtlsearch {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=[common],
                              formatter_class=formatter, epilog="example:\n" + epilog)

    for declare in COMMANDS:
        declare(add, reg)
    add_plugin_commands(sub, reg["commands"])
    return parser
