"""Safe readers for files that may come from someone else: size and nesting limits, no code.

JSON is parsed with the standard library (never ``pickle``), after checking its size, and its
nesting depth is checked before anything walks it recursively. GraphML is XML: documents with
a DOCTYPE or entity declarations (the "billion laughs" family) are refused before parsing.

Example:
    >>> load_json_text('{"a": [1, 2]}', what="graph")
    {'a': [1, 2]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtlsearch.errors import UnsafeInputError

__all__ = ["MAX_JSON_BYTES", "MAX_DEPTH", "load_json_text", "read_json",
           "check_depth", "read_graphml"]

MAX_JSON_BYTES = 50 * 1024 * 1024  # an architecture is kilobytes; a huge file is refused
MAX_DEPTH = 64  # a graph record nests about 5 levels deep


def check_depth(value: Any, *, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`UnsafeInputError` when ``value`` nests deeper than ``max_depth``.

    Iterative, so a hostile document cannot exhaust the interpreter's stack.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise UnsafeInputError(f"{what} nests deeper than {max_depth} levels; it is not a "
                                   "file written by mtlsearch")
        stack.extend((c, depth + 1) for c in children)


def load_json_text(text: str | bytes, *, what: str, max_bytes: int = MAX_JSON_BYTES,
                   max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text with size and depth limits.

    Raises:
        UnsafeInputError: too large, too deep, not UTF-8 or not JSON (naming ``what``).
    """
    if len(text) > max_bytes:
        raise UnsafeInputError(f"{what} is {len(text):,} bytes, above the {max_bytes:,}-byte "
                               "limit; it cannot be an mtlsearch file")
    try:
        data = json.loads(text)
    except RecursionError:
        raise UnsafeInputError(f"{what} nests too deeply to parse") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise UnsafeInputError(f"{what} is not valid JSON: {exc}") from None
    check_depth(data, what=what, max_depth=max_depth)
    return data


def read_json(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_DEPTH) -> Any:
    """Read a JSON file, checking its size before reading it.

    Example:
        >>> read_json("runs/best/architecture.json")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnsafeInputError(f"cannot read {path}: {exc.strerror}") from None
    if size > max_bytes:
        raise UnsafeInputError(f"{path} is {size:,} bytes, above the {max_bytes:,}-byte limit")
    return load_json_text(path.read_bytes(), what=str(path), max_bytes=max_bytes,
                          max_depth=max_depth)


def read_graphml(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read a GraphML file into a ``networkx`` graph, refusing DOCTYPE/entity declarations.

    Raises:
        UnsafeInputError: too large, declares entities, or is not valid GraphML.

    Example:
        >>> g = read_graphml("runs/best/architecture.graphml")  # doctest: +SKIP
    """
    import networkx as nx

    path = Path(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= max_bytes else None
    except OSError as exc:
        raise UnsafeInputError(f"cannot read {path}: {exc.strerror}") from None
    if data is None:
        raise UnsafeInputError(f"{path} is above the {max_bytes:,}-byte limit")
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise UnsafeInputError(f"{path} declares a DOCTYPE or entities; GraphML written by "
                               "mtlsearch never does, so it is refused")
    try:
        return nx.parse_graphml(data.decode("utf-8"))
    except RecursionError:
        raise UnsafeInputError(f"{path} nests too deeply to parse") from None
    except Exception as exc:  # ParseError, NetworkXError, KeyError, ValueError...
        raise UnsafeInputError(f"{path} is not valid GraphML: {type(exc).__name__}: {exc}") \
            from None
