"""The rich console every command prints through: a terminal's width on a terminal, and
elsewhere (a pipe, a file, CI) each table as wide as its content, never cut or wrapped.

A base module (rich only, no torch): the CLI and ``study`` both print tables.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.rule import Rule
from rich.text import Text

__all__ = ["ContentWidthConsole", "make_console"]

#: Lines of what has no natural width (a rule, an expanding panel) when not on a terminal.
FALLBACK_WIDTH = 200
_UNBOUNDED = 1_000_000


class ContentWidthConsole(Console):
    """A console that prints each call at the width of its widest renderable.

    Off a terminal there is no screen to fit: a leaderboard of many columns is written in
    full, and short output is not padded to a fixed width.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(width=_UNBOUNDED, **kwargs)

    def content_width(self, objects: tuple[Any, ...]) -> int:
        """The width ``objects`` need: the widest natural width among them."""
        widest = 1
        for obj in objects:
            if isinstance(obj, Rule):  # measures 1 cell: it fills whatever it is given
                need = FALLBACK_WIDTH
            elif isinstance(obj, str):
                need = max((Text(line).cell_len for line in obj.splitlines()), default=0)
            else:
                need = Measurement.get(self, self.options, obj).maximum
            widest = max(widest, need if need < _UNBOUNDED else FALLBACK_WIDTH)
        return widest

    def print(self, *objects: Any, width: int | None = None, **kwargs: Any) -> None:
        if width is None and objects:
            width = self.content_width(objects)
        super().print(*objects, width=width, **kwargs)


def make_console(stderr: bool = False) -> Console:
    """A terminal's console on a terminal, else a :class:`ContentWidthConsole`.

    Example:
        >>> from rich.table import Table
        >>> make_console().print(Table("a", "b"))  # doctest: +SKIP
    """
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return ContentWidthConsole(stderr=stderr)
