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

BUILTIN_ENTRY_POINTS = {"builtin_tasks", "builtin_datasets", "builtin_search_spaces", "builtin_weightings", "single_task", "hard_sharing", "random_tree"}


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


def test_an_empty_registry_asks_whether_the_package_is_installed():
    # What a checkout run without `pip install -e .` (or moved after it) sees: no entry points.
    error = UnknownNameError("search space", "small_cnn", [])
    assert "no search space is registered, not even the built-in ones" in str(error)
    assert "pip install -e ." in str(error)


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


# ------------------------------------------------------------------- the facade and its types
def _spec_functions() -> dict[str, object]:
    from mtlsearch import hookspecs

    return {n: f for n, f in vars(hookspecs).items()
            if callable(f) and hasattr(f, "mtlsearch_spec")}


def test_the_facade_has_one_method_per_hook_with_its_arguments():
    import inspect

    from mtlsearch import hookspecs
    from mtlsearch.plugin_manager import Hooks

    specs = _spec_functions()
    assert sorted(specs) == Hooks.names()
    assert set(hookspecs.CONTRIBUTION_HOOKS) | set(hookspecs.OBSERVER_HOOKS) == set(specs)
    for name, spec in specs.items():
        method = getattr(Hooks, name)
        params = list(inspect.signature(method).parameters)[1:]
        want = ["registrar"] if name in hookspecs.CONTRIBUTION_HOOKS else \
            list(inspect.signature(spec).parameters)
        assert params == want, f"Hooks.{name}{params} does not match the hookspec"


def test_each_register_callback_has_the_signature_of_its_protocol():
    import inspect

    from mtlsearch import hookspecs, registry

    made = {
        "register_strategies": registry._strategy_registrar(registry.Registry("strategy")),
        "register_search_spaces": registry._space_registrar(registry.Registry("search space")),
        "register_datasets": registry._dataset_registrar(registry.Registry("dataset")),
        "register_task_kinds": registry._kind_registrar(registry.Registry("task kind")),
        "register_weightings": registry._weighting_registrar(registry.Registry("weighting")),
        "register_commands": registry._command_registrar(registry.Registry("command")),
    }
    assert set(made) == set(hookspecs.CONTRIBUTION_HOOKS)
    for hook, registrar in made.items():
        protocol_name = inspect.signature(getattr(hookspecs, hook)).parameters["register"].annotation
        protocol = getattr(hookspecs, protocol_name)  # the spec is annotated with its Protocol
        want = list(inspect.signature(protocol.__call__).parameters.values())[1:]
        got = list(inspect.signature(registrar("p")).parameters.values())
        assert [(p.name, p.kind, p.default) for p in got] == \
            [(p.name, p.kind, p.default) for p in want], hook


def _observer(calls: list[str], fail: bool):
    class Observer:
        @hookimpl
        def on_trial_start(self, trial, strategy, params):
            calls.append("start")
            if fail:
                raise RuntimeError("logger down")

        @hookimpl
        def on_epoch_end(self, epoch):  # names only what it needs, as pluggy allows
            calls.append(f"epoch{epoch}")
            if fail:
                raise ValueError("disk full")

        @hookimpl
        def on_trial_end(self, trial, strategy, result):
            calls.append(result["state"])
            if fail:
                raise KeyError("gone")

    return Observer()


def test_one_observer_policy_a_failing_observer_loses_no_trial(fresh_plugins, caplog):
    from mtlsearch import TrainConfig
    from mtlsearch.study import search

    good: list[str] = []
    bad: list[str] = []
    register_plugin(_observer(good, fail=False), name="good-observer")
    register_plugin(_observer(bad, fail=True), name="bad-observer")
    with caplog.at_level("WARNING", logger="mtlsearch.plugin_manager"):
        result = search(strategy="hard_sharing", dataset="synthetic", space="mlp", trials=1,
                        dataset_kwargs={"n_tasks": 3, "n_samples": 120},
                        space_kwargs={"widths": [8]}, budget=TrainConfig(epochs=2),
                        progress=False, pruner="none")
    assert [t.state.name for t in result.study.trials] == ["COMPLETE"]
    assert good == bad == ["start", "epoch0", "epoch1", "COMPLETE"]  # every hook reached both
    failed = [r for r in caplog.records if r.name == "mtlsearch.plugin_manager"]
    assert [(r.levelname, r.args[0], r.args[1]) for r in failed] == [
        ("WARNING", "bad-observer", "on_trial_start"), ("WARNING", "bad-observer", "on_epoch_end"),
        ("WARNING", "bad-observer", "on_epoch_end"), ("WARNING", "bad-observer", "on_trial_end")]
    assert "plugin 'bad-observer' failed in on_trial_start (the search goes on): RuntimeError: " \
        "logger down" == failed[0].getMessage()


def test_a_wrapper_implementation_is_refused(fresh_plugins):
    class Wrapper:
        @hookimpl(wrapper=True)
        def on_trial_end(self, trial, strategy, result):
            return (yield)

    with pytest.raises(MTLSearchError, match="on_trial_end as a wrapper"):
        register_plugin(Wrapper(), name="wrapper")
    assert "wrapper" not in {p.name for p in list_plugins()}


def test_a_failing_contribution_names_its_plugin(fresh_plugins):
    plugin = types.SimpleNamespace()
    plugin.register_datasets = hookimpl(lambda register: 1 / 0)
    register_plugin(plugin, name="broken-datasets")
    with pytest.raises(MTLSearchError, match="plugin 'broken-datasets' failed in register_datasets: "
                                             "ZeroDivisionError"):
        list_datasets()


def test_registrations_remember_their_plugin_and_tiny_size(fresh_plugins):
    from mtlsearch.registry import spaces, tiny_settings
    from mtlsearch.testing import check_space

    built: list[dict] = []

    def factory(**kwargs):
        built.append(kwargs)
        return create_space("mlp", **kwargs)

    plugin = types.SimpleNamespace()
    plugin.register_search_spaces = hookimpl(
        lambda register: register("my_mlp", factory, tiny={"input_shape": (3,), "widths": (4,)}))
    register_plugin(plugin, name="my-spaces")
    entry = spaces().registration("my_mlp")
    assert entry.plugin == "my-spaces" and spaces().registration("mlp").plugin == "builtin_search_spaces"
    assert tiny_settings("search space", "my_mlp") == {"input_shape": (3,), "widths": (4,)}
    check_space("my_mlp")  # built at the plugin's own tiny size
    assert built == [{"input_shape": (3,), "widths": (4,)}]
    with pytest.raises(MTLSearchError, match="tiny= must be a mapping"):
        spaces().register("other", factory, tiny=3)


def test_the_default_strategy_comes_from_the_registry(fresh_plugins):
    from mtlsearch.registry import default_strategy, paired_baseline

    assert default_strategy() == "random_tree"
    assert paired_baseline(["hard_sharing", "random_tree", "single_task"]) == "random_tree"
    assert paired_baseline(["single_task", "hard_sharing"]) == "hard_sharing"
    assert paired_baseline(["single_task"]) is None

    class Mine(Strategy):
        name = "mine"

        def propose(self, trial, ctx):
            raise AssertionError("not run")

    plugin = types.SimpleNamespace()
    plugin.register_strategies = hookimpl(lambda register: register(Mine, default=True))
    register_plugin(plugin, name="mine-plugin")
    with pytest.raises(MTLSearchError, match="several strategies say they are the default: "
                                             "'mine' \\(plugin 'mine-plugin'\\), 'random_tree'"):
        default_strategy()
    unregister_plugin("mine-plugin")


def test_no_default_strategy_is_a_clear_error(fresh_plugins):
    from mtlsearch.registry import default_strategy

    fresh_plugins.setenv("MTLSEARCH_PLUGINS", "builtin_tasks,hard_sharing")
    with pytest.raises(MTLSearchError, match="no registered strategy is the default.*"
                                             "--strategy hard_sharing"):
        default_strategy()


def test_quick_settings_live_on_the_strategy():
    from mtlsearch.registry import get_strategy_class
    from mtlsearch.study import comparison

    assert comparison.quick_settings("affinity_tree") == {"estimator": "rsa"}
    assert comparison.quick_settings("gumbel_policy") == {"num_samples": 1}
    assert comparison.quick_settings("hard_sharing") == {}
    assert Strategy.quick_settings == {}
    # the old table, now read from the classes (benchmarks still import it)
    table = comparison.QUICK_STRATEGY_KWARGS
    assert table == {n: dict(get_strategy_class(n).quick_settings) for n in table}
    assert {"affinity_tree", "gumbel_policy"} <= set(table)


def test_strategy_is_abstract_and_keeps_its_lifecycle_in_its_docstring():
    import inspect

    class NoPropose(Strategy):
        name = "no_propose"

    with pytest.raises(TypeError, match="abstract"):
        NoPropose()
    assert inspect.isabstract(Strategy) and Strategy.__abstractmethods__ == {"propose"}
    doc = Strategy.__doc__ or ""
    for step in ("initial_params", "propose", "on_backward", "on_epoch_end", "Lifecycle"):
        assert step in doc, step
    for name in list_strategies():  # every registered strategy is a concrete Strategy
        from mtlsearch.registry import get_strategy_class

        cls = get_strategy_class(name)
        assert issubclass(cls, Strategy) and not inspect.isabstract(cls), name


# ----------------------------------------------------------------------------- weightings
def test_weightings_load_through_their_entry_point(fresh_plugins):
    from mtlsearch.registry import list_weightings, weightings

    info = next(p for p in list_plugins() if p.name == "builtin_weightings")
    assert info.hooks == ["register_weightings"] and info.distribution == "mtlsearch"
    assert list_weightings("*grad") == ["cagrad", "fairgrad", "pcgrad", "upgrad"]
    assert weightings().registration("uw").plugin == "builtin_weightings"
    fresh_plugins.setenv("MTLSEARCH_DISABLE_PLUGINS", "builtin_weightings")
    reset_plugins()
    assert list_weightings() == []


def test_a_runtime_weighting_is_listed_built_and_trained(fresh_plugins):
    from mtlsearch import TrainConfig, Weighting
    from mtlsearch.registry import create_weighting, get_weighting_class, list_weightings

    class Half(Weighting):
        name = "half"

        def __init__(self, *, factor: float = 0.5):
            self.factor = factor

        def combine(self, losses, step):
            return self.factor * sum(losses.values())

    plugin = types.SimpleNamespace(register_weightings=hookimpl(
        lambda register: register("half", Half, tiny={"factor": 0.25})))
    register_plugin(plugin, name="half-plugin")
    assert "half" in list_weightings() and get_weighting_class("half") is Half
    assert create_weighting("half", factor=2.0).factor == 2.0
    with pytest.raises(MTLSearchError, match="weighting 'half' cannot take these arguments"):
        create_weighting("half", power=2)
    assert TrainConfig(weighting="half").weighting == "half"
    unregister_plugin("half-plugin")
    with pytest.raises(UnknownNameError, match="unknown weighting 'half'.*upgrad"):
        TrainConfig(weighting="half")


def test_a_weighting_registered_twice_names_both(fresh_plugins):
    from mtlsearch.engine.weighting import EqualWeighting
    from mtlsearch.registry import list_weightings

    class Other(EqualWeighting):
        pass

    plugin = types.SimpleNamespace(register_weightings=hookimpl(
        lambda register: register("uw", Other)))
    register_plugin(plugin, name="clash")
    with pytest.raises(MTLSearchError, match="weighting 'uw' is registered twice"):
        list_weightings()
    unregister_plugin("clash")


def test_name_with_argument_hands_the_argument_to_the_registered_entry():
    """``NAME:ARG`` picks ``NAME`` and passes ``ARG`` first; a plain name passes nothing."""
    from mtlsearch.registry import _split_source

    assert _split_source("npz:data/train.npz") == ("npz", ("data/train.npz",))
    assert _split_source("folder:/abs/dir:with:colons") == ("folder", ("/abs/dir:with:colons",))
    assert _split_source("synthetic") == ("synthetic", ())
    assert _split_source("odd:") == ("odd:", ())  # nothing after the colon: a plain name


def test_unknown_source_prefix_lists_the_known_datasets():
    from mtlsearch.errors import MTLSearchError
    from mtlsearch.registry import load_dataset

    with pytest.raises(MTLSearchError, match=r"unknown dataset 'nosuch'.*synthetic"):
        load_dataset("nosuch:file.npz")
