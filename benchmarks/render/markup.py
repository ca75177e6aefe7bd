"""The markdown pieces every part's renderer uses: checked targets, page sections, tables,
numbers.

Example:
    >>> t = Target("c", "one-task step, 312 vs 10 tasks", "<= 1.10", 1.02, 1.02 <= 1.10)
    >>> t.status
    '**met**'
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Target:
    """One checked target: what, the target, the measured figure and whether it is met.

    Attributes:
        section: Section letter (``"a"``..``"f"``).
        what: What is measured, in words.
        target: The target, in words or as a comparison (``"<= 1.05"``).
        figure: The measured figure (a number, or text when several numbers make it).
        met: ``True``/``False`` computed from the figure, ``None`` when it was not measured.
    """

    section: str
    what: str
    target: str
    figure: float | str | None
    met: bool | None

    @property
    def status(self) -> str:
        """``**met**``, ``**not met**`` or ``not measured``."""
        return {True: "**met**", False: "**not met**", None: "not measured"}[self.met]

    def figure_text(self) -> str:
        """The figure as the tables show it (3 significant-ish decimals, ``—`` if missing)."""
        if self.figure is None:
            return "—"
        if isinstance(self.figure, float):
            size = abs(self.figure)
            return f"{self.figure:.{3 if size < 10 else 2 if size < 100 else 0}f}"
        return str(self.figure)


@dataclass
class Section:
    """A section of the generated page: heading, markdown body, its targets."""

    key: str
    title: str
    body: str
    targets: list[Target] = field(default_factory=list)

    def to_markdown(self) -> str:
        """The section: its heading, body and a list of its targets."""
        lines = [f"## {self.key}. {self.title}", "", self.body.strip(), ""]
        if self.targets:
            lines += ["**Targets of this section:**", ""]
            lines += [f"- {t.what}: target {t.target}, measured {t.figure_text()} — {t.status}"
                      for t in self.targets]
            lines.append("")
        return "\n".join(lines)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: the
    first column left, the others right).

    Example:
        >>> print(table(["a", "b"], [[1, 2]]))
        | a | b |
        |---|---:|
        | 1 | 2 |
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align has {len(align)} letters for {len(header)} columns")
    sep = ["---" if a == "l" else "---:" for a in align]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def not_generated(reason: str) -> str:
    """The line a section shows when its figures could not be produced."""
    return f"*Section not generated: {reason}.*"


def demote_headings(markdown: str, levels: int = 1) -> str:
    """Push every ATX heading of ``markdown`` down ``levels`` levels (``##`` -> ``###``),
    outside fenced code blocks, so an included file sits under the including heading."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,5} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def decimal(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; ``—`` when it is missing (``None`` or NaN)."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def names(items: Sequence[str]) -> str:
    """The names in backticks, joined by commas and a last "and" (one name alone, none: "").

    Example:
        >>> names(["a", "b", "c"]), names(["a"])
        ('`a`, `b` and `c`', '`a`')
    """
    items = [f"`{i}`" for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
