"""The ``mtlsearch`` command: search, compare, inspect, export and predict.

Every subcommand has ``--help`` with an example. Bad input (unknown names, mismatched
studies, missing or damaged files) prints one line to stderr and exits with status 2; the
other exit statuses are in :data:`EXIT_CODES`.

One module per group of commands, each declaring its own options (``add_*``) and running
them (``cmd_*``); :mod:`~mtlsearch.cli.parser` assembles the parser and
:mod:`~mtlsearch.cli.main` is the entry point.

Example:
    >>> main(["strategies", "--json"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

from mtlsearch.cli.main import EXIT_CODES, main
from mtlsearch.cli.parser import build_parser

__all__ = ["main", "build_parser", "EXIT_CODES"]
