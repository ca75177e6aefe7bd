"""Name-keyed registries of strategies, search spaces, datasets and task kinds.

Each registry is filled from the plugin hooks on first use. ``list_*`` returns names (with an
optional glob filter); ``create_*`` builds the named thing, and an unknown name lists the
known ones.

Example:
    >>> "hard_sharing" in list_strategies()
    True
    >>> space = create_space("mlp", input_shape=(8,))
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from mtlsearch.errors import MTLSearchError, UnknownNameError
from mtlsearch.plugin_manager import cached_registry

__all__ = [
    "Registry",
    "list_strategies",
    "create_strategy",
    "get_strategy_class",
    "list_spaces",
    "create_space",
    "list_datasets",
    "load_dataset",
    "task_kinds",
]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name; registering a name twice is an error naming both entries."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> None:
        if not isinstance(name, str) or not name:
            raise MTLSearchError(f"a {self.what} needs a non-empty string name, got {name!r}")
        if name in self._entries and self._entries[name] is not entry:
            raise MTLSearchError(
                f"{self.what} {name!r} is registered twice ({self._entries[name]!r} and "
                f"{entry!r}); rename one or disable a plugin with MTLSEARCH_DISABLE_PLUGINS"
            )
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.what, name, self._entries) from None

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _build(what: str, hook_name: str, adapt: Callable[[Registry[Any]], Callable[..., None]]):
    def build(pm: Any) -> Registry[Any]:
        registry: Registry[Any] = Registry(what)
        getattr(pm.hook, hook_name)(register=adapt(registry))
        return registry

    return build


def _strategy_register(registry: Registry[Any]) -> Callable[..., None]:
    def register(cls: type, name: str | None = None) -> None:
        registry.register(name or getattr(cls, "name", ""), cls)

    return register


def _named_register(registry: Registry[Any]) -> Callable[..., None]:
    return registry.register


def _kind_register(registry: Registry[Any]) -> Callable[..., None]:
    def register(kind: Any) -> None:
        registry.register(kind.name, kind)

    return register


def strategies() -> Registry[type]:
    return cached_registry(
        "strategies", _build("strategy", "register_strategies", _strategy_register)
    )


def spaces() -> Registry[Callable[..., Any]]:
    return cached_registry(
        "spaces", _build("search space", "register_search_spaces", _named_register)
    )


def datasets() -> Registry[Callable[..., Any]]:
    return cached_registry("datasets", _build("dataset", "register_datasets", _named_register))


def task_kinds() -> Registry[Any]:
    return cached_registry("task_kinds", _build("task kind", "register_task_kinds", _kind_register))


def list_strategies(pattern: str | None = None) -> list[str]:
    """Names of registered strategies, optionally filtered by a glob ``pattern``."""
    return strategies().names(pattern)


def get_strategy_class(name: str) -> type:
    """The Strategy class registered as ``name``."""
    return strategies().get(name)


def create_strategy(name: str, **kwargs: Any) -> Any:
    """A new instance of the strategy ``name`` (keyword arguments go to its constructor)."""
    return get_strategy_class(name)(**kwargs)


def list_spaces(pattern: str | None = None) -> list[str]:
    """Names of registered search spaces, optionally filtered by a glob ``pattern``."""
    return spaces().names(pattern)


def create_space(name: str, **kwargs: Any) -> Any:
    """Build the search space ``name``; ``kwargs`` go to its factory (e.g. ``input_shape``)."""
    factory = spaces().get(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise MTLSearchError(f"search space {name!r} cannot take these arguments: {exc}") from None


def list_datasets(pattern: str | None = None) -> list[str]:
    """Names of registered datasets, optionally filtered by a glob ``pattern``."""
    return datasets().names(pattern)


def load_dataset(name: str, **kwargs: Any) -> Any:
    """Load the dataset ``name`` as :class:`~mtlsearch.data.dataset.DatasetSplits`."""
    loader = datasets().get(name)
    try:
        return loader(**kwargs)
    except TypeError as exc:
        raise MTLSearchError(f"dataset {name!r} cannot take these arguments: {exc}") from None
