"""The start-up of the ``mtlsearch`` command, from ``bench_cli_start.py --json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .markup import Target, decimal, table

#: ``mtlsearch --help``: wall seconds, median of 5, on the 2-core machine.
HELP_SECONDS = 0.5
#: ``mtlsearch strategies --json``: wall seconds, median of 5.
LISTING_SECONDS = 1.0
#: What neither may import.
HEAVY = ("torch", "torchvision", "optuna")


def _row(data: Mapping[str, Any], command: str) -> Mapping[str, Any] | None:
    return next((r for r in data.get("rows", []) if r["command"] == command), None)


def targets(data: Mapping[str, Any], section: str = "h") -> list[Target]:
    """``--help`` and ``strategies --json`` within their seconds, and no listing importing
    torch, torchvision or Optuna."""
    out = []
    for command, limit in (("mtlsearch --help", HELP_SECONDS),
                           ("mtlsearch strategies --json", LISTING_SECONDS)):
        row = _row(data, command)
        figure = None if row is None else float(row["median_s"])
        out.append(Target(section, f"`{command}` wall seconds (median of "
                                   f"{data.get('settings', {}).get('repeats')})",
                          f"<= {limit:.1f}", figure, None if figure is None else figure <= limit))
    listed = [r for r in data.get("rows", []) if r.get("heavy") is not None]
    heavy = sorted({m for r in listed for m in r["heavy"] if m in HEAVY})
    out.append(Target(section, "modules the help and the listings import of "
                               + ", ".join(HEAVY), "none", ", ".join(heavy) or "none",
                      None if not listed else not heavy))
    return out


def markdown(data: Mapping[str, Any]) -> str:
    """The table: each command's median wall time, beside an empty Python's."""
    s = data.get("settings", {})
    rows = data.get("rows", [])
    head = (f"**Start-up of the `mtlsearch` command**: each command a fresh process "
            f"(`{s.get('script')}`), all in turns, median of {s.get('repeats')} runs, beside "
            "`python -c pass` and `python -c 'import torch'` measured in the same run. "
            f"Command: `{data.get('command')}`.")
    body = table(["command", "median s", "over `python -c pass` s", "imports torch / optuna"],
                 [[f"`{r['command']}`", decimal(r["median_s"], 3),
                   decimal(r["over_python_s"], 3),
                   "—" if r.get("heavy") is None else (", ".join(r["heavy"]) or "none")]
                  for r in rows])
    return "\n".join([head, "", body])
