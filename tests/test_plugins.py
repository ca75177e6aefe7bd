"""The plugin system: entry points, allow/block lists, check_pending, registries."""

from __future__ import annotations

import types

import pytest

from mtlsearch import MTLSearchError, Strategy, UnknownNameError, hookimpl
from mtlsearch.plugin_manager import (
    get_plugin_manager,
    list_plugins,
    plugin_failures,
    register_plugin,
    reset_plugins,
    unregister_plugin,
)
from mtlsearch.registry import (
    create_space,
    create_strategy,
    list_datasets,
    list_spaces,
    list_strategies,
    load_dataset,
)

BUILTIN_ENTRY_POINTS = {"builtin_tasks", "builtin_datasets", "builtin_search_spaces", "single_task", "hard_sharing", "random_tree"}


@pytest.fixture
def fresh_plugins(monkeypatch):
    reset_plugins()
    yield monkeypatch
    monkeypatch.delenv("MTLSEARCH_PLUGINS", raising=False)
    monkeypatch.delenv("MTLSEARCH_DISABLE_PLUGINS", raising=False)
    reset_plugins()


def test_builtins_load_through_entry_points(fresh_plugins):
    names = {p.name for p in list_plugins()}
    assert BUILTIN_ENTRY_POINTS <= names
    info = next(p for p in list_plugins() if p.name == "random_tree")
    assert info.distribution == "mtlsearch" and info.version and info.hooks == ["register_strategies"]
    assert plugin_failures() == {}


def test_loading_is_idempotent(fresh_plugins):
    assert get_plugin_manager() is get_plugin_manager()
    assert list_strategies() == list_strategies()


def test_block_list_hides_a_plugin(fresh_plugins):
    fresh_plugins.setenv("MTLSEARCH_DISABLE_PLUGINS", "random_tree")
    assert "random_tree" not in list_strategies()
    assert "hard_sharing" in list_strategies()


def test_allow_list_keeps_only_named_plugins(fresh_plugins):
    fresh_plugins.setenv("MTLSEARCH_PLUGINS", "builtin_tasks,hard_sharing")
    assert list_strategies() == ["hard_sharing"]
    assert list_spaces() == []


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown strategy 'nope'; choose one of: .*hard_sharing.*random_tree"):
        create_strategy("nope")
    with pytest.raises(UnknownNameError, match="unknown search space 'tiny'.*small_cnn"):
        create_space("tiny")
    with pytest.raises(UnknownNameError, match="unknown dataset 'mnist'.*multi_digits"):
        load_dataset("mnist")


def test_wrong_arguments_to_a_factory_are_explained():
    with pytest.raises(MTLSearchError, match="search space 'mlp' cannot take these arguments"):
        create_space("mlp", depth=3)


def test_runtime_plugin_contributes_and_can_be_removed(fresh_plugins):
    class Mine(Strategy):
        name = "mine"

    plugin = types.SimpleNamespace()
    plugin.register_strategies = hookimpl(lambda register: register(Mine))
    register_plugin(plugin, name="mine-plugin")
    assert "mine" in list_strategies()
    unregister_plugin("mine-plugin")
    assert "mine" not in list_strategies()


def test_misspelt_hook_is_an_error(fresh_plugins):
    plugin = types.SimpleNamespace()
    plugin.register_strategys = hookimpl(lambda register: None)
    with pytest.raises(MTLSearchError, match="unknown hook"):
        register_plugin(plugin, name="typo")


def test_duplicate_registration_names_both(fresh_plugins):
    class Clash(Strategy):
        name = "hard_sharing"

    plugin = types.SimpleNamespace()
    plugin.register_strategies = hookimpl(lambda register: register(Clash))
    register_plugin(plugin, name="clash")
    with pytest.raises(MTLSearchError, match="strategy 'hard_sharing' is registered twice"):
        list_strategies()
    unregister_plugin("clash")


def test_broken_entry_point_is_reported_and_others_load(fresh_plugins):
    import importlib.metadata as md

    real = md.entry_points

    class Broken:
        name, group, dist = "broken", "mtlsearch", None

        def load(self):
            raise ImportError("no module named 'missing_dep'")

    fresh_plugins.setattr(md, "entry_points", lambda group: [*real(group=group), Broken()])
    assert "broken" in plugin_failures() and "missing_dep" in plugin_failures()["broken"]
    assert "hard_sharing" in list_strategies()


def test_every_builtin_dataset_is_listed():
    assert {"multi_digits", "digits", "synthetic"} <= set(list_datasets())
