"""Name -> loader of every built-in dataset (filled in module by module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LOADERS: dict[str, Callable[..., Any]] = {}
