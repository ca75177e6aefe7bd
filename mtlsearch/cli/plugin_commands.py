"""Plugins' own commands (``register_commands``): listed in ``mtlsearch --help`` and handed
their arguments unparsed, since each parses its own."""

from __future__ import annotations

import argparse
from typing import Any

from mtlsearch.cli.options import formatter
from mtlsearch.errors import MTLSearchError


def add_plugin_commands(sub: Any, registrations: list[Any]) -> None:
    """List each plugin command under ``sub`` (the subcommand action of the parser)."""
    for registration in registrations:
        command = registration.entry
        p = sub.add_parser(command.name, add_help=False, formatter_class=formatter,
                           help=command.help,
                           description=f"{command.help} (see `mtlsearch {command.name} --help`; "
                                       f"from the plugin {registration.plugin}).")
        p.add_argument("plugin_args", nargs=argparse.REMAINDER)
        p.set_defaults(func=cmd_plugin_command, log_level="WARNING")


def cmd_plugin_command(args: argparse.Namespace) -> int:
    """Run a plugin's command that argparse parsed (main() normally hands it over first)."""
    return run_plugin_command(args.command, list(args.plugin_args))


def run_plugin_command(name: str, argv: list[str]) -> int:
    """Hand ``argv`` to the registered command ``name`` (``--help`` prints its parser's help)."""
    from mtlsearch.registry import commands

    command = commands().get(name)
    if command.parser is not None and argv[:1] in (["-h"], ["--help"]):
        parser = command.parser()
        parser.prog = f"mtlsearch {name}"
        parser.print_help()
        return 0
    return int(command.run(argv) or 0)


def is_plugin_command(name: str) -> bool:
    from mtlsearch.registry import BUILTIN_COMMANDS, commands

    if name.startswith("-") or name in BUILTIN_COMMANDS:
        return False
    try:
        return name in commands()
    except MTLSearchError:
        return False


