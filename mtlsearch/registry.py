"""Name-keyed registries of strategies, search spaces, datasets, task kinds, weightings and
commands.

Each registry is filled from the plugin hooks (through :class:`~mtlsearch.plugin_manager.Hooks`)
on first use. ``list_*`` returns names (with an optional glob filter); ``create_*`` builds the
named thing, and an unknown name lists the known ones. Every entry remembers the plugin that
registered it and its tiny size (:func:`tiny_settings`: the keyword arguments that make it cheap
enough for a conformance test), so a third-party registration carries its own.

A registration may be lazy: ``"module:attribute"`` in place of the object, with what the
listings show (``description``, a strategy's ``dynamic``, ...) declared beside it. Listing the
names and that information imports nothing; the module is imported on first
:meth:`Registration.entry` (``get()``, ``create_*``), and what the registration declared is
checked against the object then (a mismatch is an error naming the field).

Example:
    >>> "hard_sharing" in list_strategies()
    True
    >>> space = create_space("mlp", input_shape=(8,))
    >>> tiny_settings("search space", "mlp")["input_shape"]
    (6,)
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import importlib.util
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mtlsearch.errors import MTLSearchError, UnknownNameError
from mtlsearch.hookspecs import (
    CommandRegistrar,
    DatasetRegistrar,
    SpaceRegistrar,
    StrategyRegistrar,
    TaskKindRegistrar,
    WeightingRegistrar,
)
from mtlsearch.plugin_manager import Hooks, cached_registry

__all__ = [
    "BUILTIN_COMMANDS",
    "Registry",
    "Registration",
    "Command",
    "list_strategies",
    "create_strategy",
    "get_strategy_class",
    "default_strategy",
    "paired_baseline",
    "list_spaces",
    "create_space",
    "list_datasets",
    "load_dataset",
    "task_kinds",
    "weightings",
    "list_weightings",
    "get_weighting_class",
    "create_weighting",
    "commands",
    "tiny_settings",
    "describe",
    "lazy_exports",
]

T = TypeVar("T")

#: The core's own subcommands: a plugin's command may not take one of these names.
BUILTIN_COMMANDS = frozenset({"search", "fail-stale", "weightings", "compare", "strategies", "spaces", "datasets",
                              "plugins", "show", "export", "predict"})


#: ``module:attribute`` (attribute may be dotted), as in an entry point.
_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def first_line(obj: Any) -> str:
    """The first line of ``obj``'s docstring (``""`` without one)."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def describe(what: str, entry: Any) -> dict[str, Any]:
    """What the listings show of a loaded ``entry`` of the registry ``what``.

    A lazy registration declares the same fields (less ``module``, taken from its path), and
    they are checked against this when the entry is loaded.
    """
    info: dict[str, Any] = {}
    if what == "strategy":
        info = {"description": getattr(entry, "description", "") or first_line(entry),
                "dynamic": bool(entry.is_dynamic()) if hasattr(entry, "is_dynamic") else False,
                "quick_settings": dict(getattr(entry, "quick_settings", None) or {})}
    elif what == "weighting":
        info = {"description": getattr(entry, "description", "") or first_line(entry),
                "gradient": bool(getattr(entry, "gradient", False)),
                "all_tasks": bool(getattr(entry, "all_tasks", False)),
                "distributed": bool(getattr(entry, "distributed", False)),
                "requires": list(getattr(entry, "requires", ()) or ())}
    elif what in ("search space", "dataset"):
        info = {"description": first_line(entry)}
    return {**info, "module": getattr(entry, "__module__", None) or ""}


#: The fields a lazy registration declares, with their defaults (``...``: required).
DECLARED: dict[str, dict[str, Any]] = {
    "strategy": {"description": ..., "dynamic": ..., "quick_settings": {}},
    "search space": {"description": ...},
    "dataset": {"description": ...},
    "weighting": {"description": ..., "gradient": False, "all_tasks": False,
                  "distributed": False, "requires": []},
}


def _plain(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, so declared and derived values compare equal."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def resolve(target: str) -> Any:
    """The object ``"module:attribute"`` names (``attribute`` may be dotted), imported."""
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Registration(Generic[T]):
    """One registered entry and what came with it.

    Attributes:
        name: The registry key.
        source: The class, factory, loader, kind or command; or ``"module:attribute"`` for a
            lazy registration (imported on first :attr:`entry`).
        plugin: The plugin that registered it (``None`` when registered directly).
        tiny: Keyword arguments that make it tiny for tests; ``None`` when it has none.
        options: What else the registration said (strategies: ``default``, ``baseline``).
        declared: A lazy registration's listing fields (see :data:`DECLARED`); ``None`` for an
            eager one, whose fields come from the object itself.
        what: The registry's noun (``"strategy"``, ...), which says how to describe the entry.
    """

    name: str
    source: Any
    plugin: str | None = None
    tiny: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    declared: Mapping[str, Any] | None = None
    what: str = ""
    _loaded: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def lazy(self) -> bool:
        """Whether this registration names its entry by ``"module:attribute"``."""
        return self.declared is not None

    @property
    def loaded(self) -> bool:
        """Whether the entry is at hand (eager, or lazy and imported already)."""
        return not self.lazy or "entry" in self._loaded

    @property
    def entry(self) -> T:
        """The registered object; a lazy one is imported now and checked against what its
        registration declared."""
        if not self.lazy:
            return self.source
        if "entry" not in self._loaded:
            self._loaded["entry"] = self._load()
        return self._loaded["entry"]

    def _load(self) -> Any:
        where = f"{self.what} {self.name!r} (plugin {self.plugin!r})"
        try:
            obj = resolve(self.source)
        except (ImportError, AttributeError) as exc:
            raise MTLSearchError(f"{where} cannot be loaded from {self.source!r}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        if self.what == "strategy" and not isinstance(obj, type):
            raise MTLSearchError(f"{where}: {self.source!r} is {obj!r}, not a Strategy class")
        if self.what != "strategy" and not callable(obj):
            raise MTLSearchError(f"{where}: {self.source!r} is {obj!r}, not callable")
        actual = _plain(describe(self.what, obj))
        wrong = [f"{k}={v!r} (the object has {actual.get(k)!r})"
                 for k, v in sorted(_plain(dict(self.info)).items()) if actual.get(k) != v]
        if wrong:
            raise MTLSearchError(
                f"{where}: its registration says {'; '.join(wrong)}; make the registration "
                f"match {self.source!r}")
        return obj

    @property
    def info(self) -> dict[str, Any]:
        """What the listings show (:func:`describe`'s fields), without importing a lazy entry."""
        if self.lazy:
            assert self.declared is not None
            return {**self.declared,
                    "module": self.declared.get("module") or self.source.partition(":")[0]}
        if "info" not in self._loaded:
            self._loaded["info"] = describe(self.what, self.source)
        return dict(self._loaded["info"])


class Registry(Generic[T]):
    """Entries by name; registering a name twice is an error naming both entries."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, Registration[T]] = {}

    def register(
        self,
        name: str,
        entry: T | str,
        *,
        plugin: str | None = None,
        tiny: Mapping[str, Any] | None = None,
        declared: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """Add ``entry`` as ``name``; the same entry twice under one name is harmless.

        ``entry`` may be ``"module:attribute"`` (lazy) when the registry lists declared
        fields (:data:`DECLARED`): ``declared`` then gives them (missing optional ones take
        their defaults).
        """
        if not isinstance(name, str) or not name:
            raise MTLSearchError(f"a {self.what} needs a non-empty string name, got {name!r}")
        if tiny is not None and not isinstance(tiny, Mapping):
            raise MTLSearchError(
                f"{self.what} {name!r}: tiny= must be a mapping of keyword arguments, got "
                f"{type(tiny).__name__}"
            )
        declared = self._declared(name, entry, declared)
        old = self._items.get(name)
        if old is not None and not _same(old.source, entry):
            raise MTLSearchError(
                f"{self.what} {name!r} is registered twice ({old.source!r} from plugin "
                f"{old.plugin!r} and {entry!r} from plugin {plugin!r}); rename one or disable a "
                "plugin with MTLSEARCH_DISABLE_PLUGINS"
            )
        self._items[name] = Registration(name, entry, plugin, None if tiny is None else dict(tiny),
                                         dict(options), declared, self.what)

    def _declared(self, name: str, entry: Any,
                  declared: Mapping[str, Any] | None) -> dict[str, Any] | None:
        fields = DECLARED.get(self.what)
        if not isinstance(entry, str):
            if declared:
                raise MTLSearchError(
                    f"{self.what} {name!r}: {', '.join(sorted(declared))} describe a lazy "
                    "'module:attribute' registration; a registered object carries its own")
            return None
        if fields is None:
            raise MTLSearchError(f"a {self.what} cannot be registered lazily ({entry!r}); "
                                 "register the object itself")
        if not _TARGET.match(entry):
            raise MTLSearchError(f"{self.what} {name!r}: {entry!r} is not 'module:attribute' "
                                 "(e.g. 'my_package.strategy:MyStrategy')")
        given = {k: v for k, v in (declared or {}).items() if v is not None}
        unknown = sorted(set(given) - set(fields) - {"module"})
        if unknown:
            raise MTLSearchError(f"{self.what} {name!r}: unknown field(s) {unknown}; a lazy "
                                 f"{self.what} declares {sorted(fields)} (and module)")
        missing = sorted(k for k, v in fields.items() if v is ... and k not in given)
        if missing:
            raise MTLSearchError(
                f"{self.what} {name!r} registered lazily as {entry!r} must say "
                f"{', '.join(f'{k}=' for k in missing)} (what the listings show without "
                "importing it)")
        out = {k: _plain(given.get(k, default)) for k, default in fields.items()}
        if "module" in given:
            out["module"] = given["module"]
        return out

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name lists the known ones."""
        return self.registration(name).entry

    def registration(self, name: str) -> Registration[T]:
        """The entry ``name`` with its plugin, tiny size and options."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.what, name, self._items) from None

    def registrations(self) -> list[Registration[T]]:
        """Every registration, by name."""
        return [self._items[n] for n in self.names()]

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted, optionally filtered by a glob ``pattern``."""
        names = sorted(self._items)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._items


def _same(old: Any, new: Any) -> bool:
    return old == new if isinstance(old, str) and isinstance(new, str) else old is new


def _keep_exports(clashes: set[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if (name in clashes and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"):
            value = getattr(value, name)
        types.ModuleType.__setattr__(self, name, value)

    return __setattr__


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of a package that re-exports ``names`` lazily.

    ``names`` maps each public name to the submodule that defines it (relative, e.g.
    ``".strategy"``), so a plugin's ``__init__`` stays light to import (the listings import
    it) and ``from plugin import Name`` still works::

        __getattr__ = lazy_exports(__name__, {"MyStrategy": ".strategy"})

    No ``__dir__`` lists them: pluggy reads every attribute ``dir()`` names when it registers
    a plugin, which would import them all.
    """
    module = importlib.import_module(package)
    # A name that is also its submodule's (``mlp`` in ``.mlp``): importing the submodule sets
    # the package attribute to the module; the function must win, as with ``from .mlp import mlp``.
    clashes = {n for n, where in names.items() if where == f".{n}"}
    if clashes:
        module.__class__ = type("LazyPackage", (types.ModuleType,), {
            "__setattr__": _keep_exports(clashes), "__module__": __name__})

    def __getattr__(name: str) -> Any:
        where = names.get(name)
        if where is None:
            # `plugin.submodule` without importing it first, as when __init__ imported it
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}"):
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where, package), name)
        setattr(module, name, value)  # next time a plain attribute
        return value

    return __getattr__


@dataclass(frozen=True)
class Command:
    """A plugin's ``mtlsearch`` subcommand (see :class:`~mtlsearch.hookspecs.CommandRegistrar`)."""

    name: str
    run: Callable[[Sequence[str]], int]
    help: str
    parser: Callable[[], argparse.ArgumentParser] | None = None


# ---------------------------------------------------------------- one registrar per hook
def _strategy_registrar(registry: Registry[type]) -> Callable[[str], StrategyRegistrar]:
    def for_plugin(plugin: str) -> StrategyRegistrar:
        def register(cls: type | str, name: str | None = None, *, default: bool = False,
                     baseline: int | None = None,
                     tiny: Mapping[str, Any] | None = None, description: str | None = None,
                     dynamic: bool | None = None, quick_settings: Mapping[str, Any] | None = None,
                     module: str | None = None) -> None:
            if isinstance(cls, str):
                if not name:
                    raise MTLSearchError(f"plugin {plugin!r}: a strategy registered lazily as "
                                         f"{cls!r} needs name=")
            elif not isinstance(cls, type):
                raise MTLSearchError(f"plugin {plugin!r}: register() takes a Strategy class "
                                     f"or 'module:Class', got {cls!r}")
            if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, int)):
                raise MTLSearchError(f"plugin {plugin!r}: baseline= must be an int rank, "
                                     f"got {baseline!r}")
            declared = {"description": description, "dynamic": dynamic,
                        "quick_settings": quick_settings, "module": module}
            registry.register(name or getattr(cls, "name", ""), cls, plugin=plugin, tiny=tiny,
                              declared={k: v for k, v in declared.items() if v is not None},
                              default=bool(default), baseline=baseline)

        return register

    return for_plugin


def _callable(plugin: str, what: str, name: str, entry: Any) -> None:
    if not callable(entry) and not isinstance(entry, str):
        raise MTLSearchError(f"plugin {plugin!r}: {what} {name!r} needs a callable (or "
                             f"'module:attribute'), got {entry!r}")


def _space_registrar(registry: Registry[Any]) -> Callable[[str], SpaceRegistrar]:
    def for_plugin(plugin: str) -> SpaceRegistrar:
        def register(name: str, factory: Callable[..., Any] | str, *,
                     tiny: Mapping[str, Any] | None = None, description: str | None = None,
                     module: str | None = None) -> None:
            _callable(plugin, registry.what, name, factory)
            registry.register(name, factory, plugin=plugin, tiny=tiny,
                              declared=_given(description=description, module=module))

        return register

    return for_plugin


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _dataset_registrar(registry: Registry[Any]) -> Callable[[str], DatasetRegistrar]:
    def for_plugin(plugin: str) -> DatasetRegistrar:
        def register(name: str, loader: Callable[..., Any] | str, *,
                     tiny: Mapping[str, Any] | None = None, description: str | None = None,
                     module: str | None = None) -> None:
            _callable(plugin, registry.what, name, loader)
            registry.register(name, loader, plugin=plugin, tiny=tiny,
                              declared=_given(description=description, module=module))

        return register

    return for_plugin


def _kind_registrar(registry: Registry[Any]) -> Callable[[str], TaskKindRegistrar]:
    def for_plugin(plugin: str) -> TaskKindRegistrar:
        def register(kind: Any, *, tiny: Mapping[str, Any] | None = None) -> None:
            if isinstance(kind, type):
                raise MTLSearchError(f"plugin {plugin!r}: register() takes a TaskKind instance, "
                                     f"got the class {kind.__name__}; call it: {kind.__name__}()")
            registry.register(getattr(kind, "name", ""), kind, plugin=plugin, tiny=tiny)

        return register

    return for_plugin


def _weighting_registrar(registry: Registry[Any]) -> Callable[[str], WeightingRegistrar]:
    def for_plugin(plugin: str) -> WeightingRegistrar:
        def register(name: str, factory: Callable[..., Any] | str, *,
                     tiny: Mapping[str, Any] | None = None, description: str | None = None,
                     gradient: bool | None = None, all_tasks: bool | None = None,
                     distributed: bool | None = None, requires: Sequence[str] | None = None,
                     module: str | None = None) -> None:
            _callable(plugin, registry.what, name, factory)
            registry.register(name, factory, plugin=plugin, tiny=tiny, declared=_given(
                description=description, gradient=gradient, all_tasks=all_tasks,
                distributed=distributed, requires=requires, module=module))

        return register

    return for_plugin


def _command_registrar(registry: Registry[Command]) -> Callable[[str], CommandRegistrar]:
    def for_plugin(plugin: str) -> CommandRegistrar:
        def register(name: str, run: Callable[[Sequence[str]], int], *, help: str,
                     parser: Callable[[], argparse.ArgumentParser] | None = None) -> None:
            if name in BUILTIN_COMMANDS:
                raise MTLSearchError(f"plugin {plugin!r} registers the command {name!r}, which "
                                     "is built in; choose another name")
            registry.register(name, Command(name, run, help, parser), plugin=plugin)

        return register

    return for_plugin


def _built(what: str, fill: Callable[[Hooks, Registry[Any]], None]) -> Callable[[Hooks], Any]:
    def build(hooks: Hooks) -> Registry[Any]:
        registry: Registry[Any] = Registry(what)
        fill(hooks, registry)
        return registry

    return build


def strategies() -> Registry[type]:
    """The strategy registry (classes)."""
    return cached_registry("strategies", _built(
        "strategy", lambda h, r: h.register_strategies(_strategy_registrar(r))))


def spaces() -> Registry[Callable[..., Any]]:
    """The search-space registry (factories)."""
    return cached_registry("spaces", _built(
        "search space", lambda h, r: h.register_search_spaces(_space_registrar(r))))


def datasets() -> Registry[Callable[..., Any]]:
    """The dataset registry (loaders)."""
    return cached_registry("datasets", _built(
        "dataset", lambda h, r: h.register_datasets(_dataset_registrar(r))))


def task_kinds() -> Registry[Any]:
    """The task-kind registry (TaskKind instances)."""
    return cached_registry("task_kinds", _built(
        "task kind", lambda h, r: h.register_task_kinds(_kind_registrar(r))))


def weightings() -> Registry[Callable[..., Any]]:
    """The weighting registry (factories, usually Weighting subclasses)."""
    return cached_registry("weightings", _built(
        "weighting", lambda h, r: h.register_weightings(_weighting_registrar(r))))


def commands() -> Registry[Command]:
    """The plugins' ``mtlsearch`` subcommands."""
    return cached_registry("commands", _built(
        "command", lambda h, r: h.register_commands(_command_registrar(r))))


_REGISTRIES: dict[str, Callable[[], Registry[Any]]] = {
    "strategy": strategies,
    "search space": spaces,
    "dataset": datasets,
    "task kind": task_kinds,
    "weighting": weightings,
}


def tiny_settings(what: str, name: str) -> dict[str, Any] | None:
    """The tiny size registered with ``name`` (``what``: ``"strategy"``, ``"search space"``,
    ``"dataset"``, ``"task kind"`` or ``"weighting"``); ``{}`` when none was given, ``None``
    for a dataset registered without one (it needs files)."""
    if what not in _REGISTRIES:
        raise MTLSearchError(f"tiny_settings: what={what!r}; use one of {sorted(_REGISTRIES)}")
    tiny = _REGISTRIES[what]().registration(name).tiny
    if tiny is None:
        return None if what == "dataset" else {}
    return dict(tiny)


# ------------------------------------------------------------------------------ strategies
def list_strategies(pattern: str | None = None) -> list[str]:
    """Names of registered strategies, optionally filtered by a glob ``pattern``."""
    return strategies().names(pattern)


def get_strategy_class(name: str) -> type:
    """The Strategy class registered as ``name``."""
    return strategies().get(name)


def create_strategy(name: str, **kwargs: Any) -> Any:
    """A new instance of the strategy ``name`` (keyword arguments go to its constructor)."""
    return get_strategy_class(name)(**kwargs)


def default_strategy() -> str:
    """The strategy registered with ``default=True``: what a search runs when none is named.

    Raises:
        MTLSearchError: When no registered strategy, or more than one, says it is the default.
    """
    found = [r for r in strategies().registrations() if r.options.get("default")]
    if len(found) == 1:
        return found[0].name
    if not found:
        raise MTLSearchError(
            "no registered strategy is the default (a plugin registers it with "
            "register(cls, default=True)); name one, e.g. --strategy "
            f"{(list_strategies() or ['NAME'])[0]}"
        )
    who = ", ".join(f"{r.name!r} (plugin {r.plugin!r})" for r in found)
    raise MTLSearchError(f"several strategies say they are the default: {who}; name one, or "
                         "disable a plugin with MTLSEARCH_DISABLE_PLUGINS")


def paired_baseline(names: Sequence[str]) -> str | None:
    """Of ``names``, the strategy registered with the lowest ``baseline`` rank (``None``: none).

    ``compare`` pairs every strategy with it seed by seed. Equal ranks: the first in ``names``.
    """
    reg = strategies()
    ranked = [(reg.registration(n).options.get("baseline"), i, n) for i, n in enumerate(names)
              if n in reg]
    ranked = [r for r in ranked if r[0] is not None]
    return min(ranked)[2] if ranked else None


# ------------------------------------------------------------------------- spaces, datasets
def list_spaces(pattern: str | None = None) -> list[str]:
    """Names of registered search spaces, optionally filtered by a glob ``pattern``."""
    return spaces().names(pattern)


def _split_source(name: str) -> tuple[str, tuple[str, ...]]:
    """``"npz:data/train.npz"`` -> ``("npz", ("data/train.npz",))``; a plain name -> no argument.

    A ``NAME:ARG`` name picks the registered entry ``NAME`` and hands it ``ARG`` as its first
    argument (a file for ``npz:``/``csv:``/``folder:``, a model for ``timm:``), so one option
    (``--dataset``, ``--space``) names both the kind of source and which one.
    """
    prefix, colon, argument = name.partition(":")
    if colon and prefix and argument:
        return prefix, (argument,)
    return name, ()


def create_space(name: str, **kwargs: Any) -> Any:
    """Build the search space ``name``; ``kwargs`` go to its factory (e.g. ``input_shape``).

    ``NAME:ARG`` builds the space ``NAME`` with ``ARG`` as its first argument
    (``"timm:resnet18"``).
    """
    registered, args = _split_source(name)
    factory = spaces().get(registered)
    try:
        return factory(*args, **kwargs)
    except TypeError as exc:
        raise MTLSearchError(f"search space {name!r} cannot take these arguments: {exc}") from None


def list_datasets(pattern: str | None = None) -> list[str]:
    """Names of registered datasets, optionally filtered by a glob ``pattern``."""
    return datasets().names(pattern)


def load_dataset(name: str, **kwargs: Any) -> Any:
    """Load the dataset ``name`` as :class:`~mtlsearch.data.dataset.DatasetSplits`.

    ``NAME:ARG`` loads the dataset ``NAME`` with ``ARG`` as its first argument
    (``"npz:data/train.npz"``, ``"folder:images/"``).
    """
    registered, args = _split_source(name)
    loader = datasets().get(registered)
    try:
        return loader(*args, **kwargs)
    except TypeError as exc:
        raise MTLSearchError(f"dataset {name!r} cannot take these arguments: {exc}") from None


# ------------------------------------------------------------------------------ weightings
def list_weightings(pattern: str | None = None) -> list[str]:
    """Names of registered loss weightings and gradient aggregators (optional glob filter).

    Example:
        >>> {"equal", "uw", "upgrad"} <= set(list_weightings())
        True
    """
    return weightings().names(pattern)


def get_weighting_class(name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` (the Weighting subclass for the built-ins)."""
    return weightings().get(name)


def create_weighting(name: str, **kwargs: Any) -> Any:
    """A new weighting ``name``; ``kwargs`` are its hyper-parameters (``weighting_kwargs``)."""
    factory = get_weighting_class(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise MTLSearchError(f"weighting {name!r} cannot take these arguments {kwargs}: "
                             f"{exc}") from None
