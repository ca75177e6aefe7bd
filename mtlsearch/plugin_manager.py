"""The plugin manager and :class:`Hooks`, the typed facade the core calls hooks through.

Built-ins and third-party packages load the same way, from the ``mtlsearch`` entry-point
group. ``MTLSEARCH_PLUGINS`` (comma-separated entry-point names) is an allow-list and
``MTLSEARCH_DISABLE_PLUGINS`` a block-list. A plugin that fails to import, or implements a hook
as a wrapper, is reported by name (:func:`plugin_failures`) and the others still load. Hook
implementations with a misspelt name are an error (``check_pending``).

The core never calls ``pm.hook.<name>(...)``: it calls the method of the same name on
:func:`get_hooks` (as tox's ``Plugin`` facade), which calls every implementation one by one,
so each result or error is tied to the plugin that produced it:

* contribution hooks (``register_*``) pass each plugin its own ``register`` callback (entries
  then record which plugin registered them); an error is raised, naming the plugin;
* observer hooks (``on_*``) share one policy: an implementation that raises is logged as a
  warning naming the plugin and the hook, and the other implementations and the search go on.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from mtlsearch import hookspecs
from mtlsearch.errors import MTLSearchError
from mtlsearch.hookspecs import (
    CommandRegistrar,
    DatasetRegistrar,
    SpaceRegistrar,
    StrategyRegistrar,
    TaskKindRegistrar,
    WeightingRegistrar,
)

__all__ = [
    "Hooks",
    "PluginInfo",
    "get_hooks",
    "get_plugin_manager",
    "register_plugin",
    "unregister_plugin",
    "list_plugins",
    "plugin_failures",
    "reset_plugins",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "mtlsearch"

log = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass
class PluginInfo:
    """One loaded plugin: its entry-point name, distribution, version and hooks."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)


class Hooks:
    """One typed method per hook: the only code that calls into the plugins' hooks.

    Contribution methods take ``registrar``, a function from a plugin's name to the
    ``register`` callback that plugin receives. Observer methods never raise an
    implementation's ``Exception``: it is logged (``WARNING``, naming plugin and hook) and the
    remaining implementations still run.

    Example:
        >>> get_hooks().on_epoch_end(epoch=0, logs={"train_loss": 1.0})
    """

    def __init__(self, pm: pluggy.PluginManager):
        self._pm = pm

    @staticmethod
    def names() -> list[str]:
        """Every hook plugins can implement (those declared in :mod:`mtlsearch.hookspecs`)."""
        return sorted((*hookspecs.CONTRIBUTION_HOOKS, *hookspecs.OBSERVER_HOOKS))

    def implementations(self, hook: str) -> list[Any]:
        """pluggy's implementations of ``hook``, in calling order (last registered first)."""
        caller = getattr(self._pm.hook, hook)
        return list(reversed(caller.get_hookimpls()))

    @staticmethod
    def _args(impl: Any, kwargs: dict[str, Any]) -> list[Any]:
        # as pluggy does: an implementation gets only the arguments it names
        return [kwargs[name] for name in impl.argnames]

    # ------------------------------------------------------------ contribution hooks
    def _contribute(self, hook: str, registrar: Callable[[str], Any]) -> None:
        for impl in self.implementations(hook):
            args = self._args(impl, {"register": registrar(impl.plugin_name)})
            try:
                impl.function(*args)
            except MTLSearchError:
                raise  # already says what is wrong (a clash, a bad name)
            except Exception as exc:
                raise MTLSearchError(
                    f"plugin {impl.plugin_name!r} failed in {hook}: {type(exc).__name__}: {exc}"
                ) from exc

    def register_strategies(self, registrar: Callable[[str], StrategyRegistrar]) -> None:
        """Collect every plugin's strategies through ``registrar(plugin_name)``."""
        self._contribute("register_strategies", registrar)

    def register_search_spaces(self, registrar: Callable[[str], SpaceRegistrar]) -> None:
        """Collect every plugin's search spaces through ``registrar(plugin_name)``."""
        self._contribute("register_search_spaces", registrar)

    def register_datasets(self, registrar: Callable[[str], DatasetRegistrar]) -> None:
        """Collect every plugin's datasets through ``registrar(plugin_name)``."""
        self._contribute("register_datasets", registrar)

    def register_task_kinds(self, registrar: Callable[[str], TaskKindRegistrar]) -> None:
        """Collect every plugin's task kinds through ``registrar(plugin_name)``."""
        self._contribute("register_task_kinds", registrar)

    def register_weightings(self, registrar: Callable[[str], WeightingRegistrar]) -> None:
        """Collect every plugin's loss weightings and aggregators through
        ``registrar(plugin_name)``."""
        self._contribute("register_weightings", registrar)

    def register_commands(self, registrar: Callable[[str], CommandRegistrar]) -> None:
        """Collect every plugin's ``mtlsearch`` subcommands through ``registrar(plugin_name)``."""
        self._contribute("register_commands", registrar)

    # ---------------------------------------------------------------- observer hooks
    def _observe(self, hook: str, **kwargs: Any) -> None:
        for impl in self.implementations(hook):
            try:
                impl.function(*self._args(impl, kwargs))
            except Exception as exc:  # a failing logger must not lose a trial
                log.warning("plugin %r failed in %s (the search goes on): %s: %s",
                            impl.plugin_name, hook, type(exc).__name__, exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))

    def on_trial_start(self, *, trial: Any, strategy: str, params: dict[str, Any]) -> None:
        """Tell observers a trial is about to train."""
        self._observe("on_trial_start", trial=trial, strategy=strategy, params=params)

    def on_trial_end(self, *, trial: Any, strategy: str, result: dict[str, Any]) -> None:
        """Tell observers a trial finished (``result``: state, values, figures or reason)."""
        self._observe("on_trial_end", trial=trial, strategy=strategy, result=result)

    def on_epoch_end(self, *, epoch: int, logs: dict[str, float]) -> None:
        """Tell observers a training epoch ended."""
        self._observe("on_epoch_end", epoch=epoch, logs=logs)


class _Host:
    """Holds the one plugin manager and what was loaded into it."""

    def __init__(self) -> None:
        self.pm: pluggy.PluginManager | None = None
        self.hooks: Hooks | None = None
        self.infos: dict[str, PluginInfo] = {}
        self.failures: dict[str, str] = {}
        self.registries: dict[str, Any] = {}


_host = _Host()  # the only module-level mutable state in the package


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(h.name for h in pm.get_hookcallers(plugin) or [])


def _wrappers(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hooks ``plugin`` implements as a wrapper: :class:`Hooks` calls plain functions only."""
    return sorted(
        caller.name
        for caller in pm.get_hookcallers(plugin) or []
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper)
    )


def _wrapper_error(name: str, hooks: list[str]) -> str:
    return (f"plugin {name!r} implements {', '.join(hooks)} as a wrapper; mtlsearch's hooks take "
            "plain functions (drop wrapper=True / hookwrapper=True)")


def get_plugin_manager() -> pluggy.PluginManager:
    """The plugin manager, loading entry points on first call (later calls reuse it)."""
    if _host.pm is not None:
        return _host.pm
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    allow = _env_list("MTLSEARCH_PLUGINS")
    block = _env_list("MTLSEARCH_DISABLE_PLUGINS") or set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (allow is not None and ep.name not in allow) or ep.name in block:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            _host.failures[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        wrapped = _wrappers(pm, plugin)
        if wrapped:
            pm.unregister(name=ep.name)
            _host.failures[ep.name] = _wrapper_error(ep.name, wrapped)
            continue
        dist = getattr(ep, "dist", None)
        _host.infos[ep.name] = PluginInfo(
            ep.name,
            dist.metadata["Name"] if dist is not None else None,
            dist.version if dist is not None else None,
            _hook_names(pm, plugin),
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise MTLSearchError(
            f"a plugin implements a hook that does not exist: {exc}. Known hooks: "
            f"{', '.join(Hooks.names())}"
        ) from None
    _host.pm = pm
    _host.hooks = Hooks(pm)
    return pm


def get_hooks() -> Hooks:
    """The facade over the loaded plugins (see :class:`Hooks`)."""
    get_plugin_manager()
    assert _host.hooks is not None
    return _host.hooks


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module at run time (e.g. in a notebook or a test).

    Registries built before are rebuilt on next use so the plugin's contributions appear.
    """
    pm = get_plugin_manager()
    name = name or getattr(plugin, "__name__", None) or repr(plugin)
    pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name)
        raise MTLSearchError(f"plugin {name!r} implements an unknown hook: {exc}") from None
    wrapped = _wrappers(pm, plugin)
    if wrapped:
        pm.unregister(name=name)
        raise MTLSearchError(_wrapper_error(name, wrapped))
    module = plugin if isinstance(plugin, types.ModuleType) else None
    _host.infos[name] = PluginInfo(
        name, None, getattr(module, "__version__", None), _hook_names(pm, plugin)
    )
    _host.registries.clear()
    return name


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    pm = get_plugin_manager()
    pm.unregister(name=name)
    _host.infos.pop(name, None)
    _host.registries.clear()


def list_plugins() -> list[PluginInfo]:
    """Every loaded plugin with its distribution, version and hooks."""
    get_plugin_manager()
    return [_host.infos[k] for k in sorted(_host.infos)]


def plugin_failures() -> dict[str, str]:
    """Entry points that failed to load, with the reason."""
    get_plugin_manager()
    return dict(_host.failures)


def reset_plugins() -> None:
    """Forget everything loaded; the next use loads entry points again (honours the env)."""
    _host.pm = None
    _host.hooks = None
    _host.infos.clear()
    _host.failures.clear()
    _host.registries.clear()


def cached_registry(key: str, build: Callable[[Hooks], R]) -> R:
    """The registry ``key``, built with ``build(hooks)`` once per plugin set."""
    if key not in _host.registries:
        _host.registries[key] = build(get_hooks())
    return _host.registries[key]
