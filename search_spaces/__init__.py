"""Built-in search spaces, registered through the ``mtlsearch`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable

from mtlsearch.hookspecs import hookimpl

SPACE_FACTORIES: dict[str, Callable[..., object]] = {}


@hookimpl
def register_search_spaces(register: Callable[..., None]) -> None:
    for name, factory in SPACE_FACTORIES.items():
        register(name, factory)
