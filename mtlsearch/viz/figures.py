"""What every picture shares: saving as PNG and SVG, and a palette that stays distinguishable.

Figures are built without :mod:`matplotlib.pyplot`, so nothing touches a display or the
global figure list.

Example:
    >>> len(palette(3))
    3
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
from matplotlib import colormaps
from matplotlib.figure import Figure

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["palette", "plain_text", "save_figure"]


def save_figure(fig: Figure, path: str | Path | None) -> None:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.svg`` when ``path`` is given (the convention
    of every picture mtlsearch and its plugins draw)."""
    if path is None:
        return
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".svg", ".pdf") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_name(stem.name + ".png"), dpi=150, bbox_inches="tight")
    fig.savefig(stem.with_name(stem.name + ".svg"), bbox_inches="tight")


def palette(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinguishable colours; neighbours differ even when ``n`` is large."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    cmap = colormaps["turbo"]
    stride = next(s for s in (7, 11, 13, 17, 19, 23, 1) if math.gcd(s, n) == 1)
    # Spread consecutive groups across the colour map, avoiding turbo's darkest ends.
    return [cmap(0.08 + 0.84 * ((i * stride) % n) / max(n - 1, 1)) for i in range(n)]


def plain_text(draw: _F) -> _F:
    """Draw with every label taken literally: task names are data, and a valid name such as
    ``a$^$b`` must not be parsed as mathtext (it would fail, or show something else)."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
