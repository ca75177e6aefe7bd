"""The plugin manager: lazy, idempotent loading of every ``mtlsearch`` entry point.

Built-ins and third-party packages load the same way, from the ``mtlsearch`` entry-point
group. ``MTLSEARCH_PLUGINS`` (comma-separated entry-point names) is an allow-list and
``MTLSEARCH_DISABLE_PLUGINS`` a block-list. A plugin that fails to import is reported by name
(:func:`plugin_failures`) and the others still load. Hook implementations with a misspelt name
are an error (``check_pending``).
"""

from __future__ import annotations

import importlib.metadata
import os
import types
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mtlsearch import hookspecs
from mtlsearch.errors import MTLSearchError

__all__ = [
    "PluginInfo",
    "get_plugin_manager",
    "register_plugin",
    "list_plugins",
    "plugin_failures",
    "reset_plugins",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "mtlsearch"


@dataclass
class PluginInfo:
    """One loaded plugin: its entry-point name, distribution, version and hooks."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)


class _Host:
    """Holds the one plugin manager and what was loaded into it."""

    def __init__(self) -> None:
        self.pm: pluggy.PluginManager | None = None
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
            f"{', '.join(sorted(n for n in dir(pm.hook) if not n.startswith('_')))}"
        ) from None
    _host.pm = pm
    return pm


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
    return [ _host.infos[k] for k in sorted(_host.infos) ]


def plugin_failures() -> dict[str, str]:
    """Entry points that failed to load, with the reason."""
    get_plugin_manager()
    return dict(_host.failures)


def reset_plugins() -> None:
    """Forget everything loaded; the next use loads entry points again (honours the env)."""
    _host.pm = None
    _host.infos.clear()
    _host.failures.clear()
    _host.registries.clear()


def cached_registry(key: str, build: Any) -> Any:
    """The registry ``key``, built with ``build(pm)`` once per plugin set."""
    if key not in _host.registries:
        _host.registries[key] = build(get_plugin_manager())
    return _host.registries[key]
