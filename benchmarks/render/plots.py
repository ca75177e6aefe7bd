"""The pictures of the generated pages: a figure of the right size, saved as PNG and SVG
under the page's images folder, and the markdown line that shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Every picture the suite draws is ``<images>/bench_<name>.png`` (and ``.svg``).
IMAGE_PREFIX = "bench_"


def figure(width: float = 7.0, height: float = 3.2, cols: int = 1) -> tuple[Any, Any]:
    """A matplotlib figure (no pyplot state) and its ``cols`` axes, laid out to fit."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, cols)
    return fig, axes


def save(fig: Any, images: Path, name: str) -> str:
    """Write ``fig`` as ``images/bench_<name>.png`` and ``.svg``; returns the PNG's file name."""
    from mtlsearch.viz import save_figure

    stem = Path(images) / f"{IMAGE_PREFIX}{name}"
    save_figure(fig, stem)
    return f"{IMAGE_PREFIX}{name}.png"


def image_link(rel_dir: str, file: str | None, alt: str) -> str:
    """The markdown image line of ``rel_dir/file`` (nothing when no picture was drawn)."""
    return "" if file is None else f"\n![{alt}]({rel_dir}/{file})\n"
