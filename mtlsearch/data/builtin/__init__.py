"""Built-in datasets, registered through the ``mtlsearch`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable

from mtlsearch.hookspecs import hookimpl


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    from . import _catalog

    for name, loader in _catalog.LOADERS.items():
        register(name, loader)
