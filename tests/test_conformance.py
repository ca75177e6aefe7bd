"""Every registered strategy, search space, dataset, task kind and weighting passes the shared
conformance checks, each at the tiny size its registration carries; and each check fails on a
planted bug."""

from __future__ import annotations

import pytest
import torch

from mtlsearch.data.dataset import DatasetSplits, from_arrays
from mtlsearch.registry import (
    get_weighting_class,
    list_datasets,
    list_spaces,
    list_strategies,
    list_weightings,
    task_kinds,
    tiny_settings,
)
from mtlsearch.tasks.kinds import MulticlassKind, TaskSpec, list_task_kinds
from mtlsearch.testing import (
    check_dataset,
    check_space,
    check_strategy,
    check_task_kind,
    check_weighting,
)


@pytest.mark.parametrize("name", list_spaces())
def test_space_conforms(name):
    if name == "timm":  # an optional extra (pip install mtlsearch[timm])
        pytest.importorskip("timm")
    check_space(name)


@pytest.mark.parametrize("name", list_strategies())
def test_strategy_conforms(name):
    check_strategy(name)


@pytest.mark.parametrize("name", list_datasets())
def test_dataset_conforms(name):
    if tiny_settings("dataset", name) is None:
        pytest.skip(f"{name} was registered without a tiny size: it reads downloaded files")
    data = check_dataset(name)
    assert len(data.train) <= 2000, f"{name}'s tiny size loads {len(data.train)} training rows"


@pytest.mark.parametrize("name", list_task_kinds())
def test_task_kind_conforms(name):
    check_task_kind(name)


@pytest.mark.parametrize("name", list_weightings())
def test_weighting_conforms(name):
    missing = get_weighting_class(name).missing()
    if missing:
        pytest.skip(f"{name} needs {missing} (pip install \"torchjd[full]\")")
    torch.set_num_threads(1)
    check_weighting(name)


def test_every_builtin_registration_carries_a_tiny_size():
    for name in list_spaces():
        assert tiny_settings("search space", name), f"space {name!r} has no tiny size"
    for name in list_task_kinds():
        assert "example" in tiny_settings("task kind", name), f"kind {name!r} has no example"
    runnable = [n for n in list_datasets() if tiny_settings("dataset", n) is not None]
    assert {"synthetic", "multi_digits", "digits", "dense_shapes"} <= set(runnable)


# ----------------------------------------------------------------- the checks find planted bugs
def _splits(overlap: bool) -> DatasetSplits:
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    data = from_arrays(x, {"y": (x[:, 0] > 0).float()}, seed=0, name="planted")
    if overlap:  # a test row copied into the training split
        data.train.inputs[0] = data.test.inputs[0]
    return data


def test_check_dataset_finds_shared_rows():
    check_dataset(_splits(overlap=False))
    with pytest.raises(AssertionError, match="in both the train and the test split"):
        check_dataset(_splits(overlap=True))


def test_check_dataset_finds_targets_that_do_not_fit_their_kind():
    data = _splits(overlap=False)
    data.val.targets["y"] = data.val.targets["y"] * 3  # binary labels of 0 and 3
    with pytest.raises(AssertionError, match="do not fit its kind 'binary'.*must be 0 or 1"):
        check_dataset(data)


def test_check_dataset_without_a_tiny_size_says_so():
    with pytest.raises(AssertionError, match="registered without a tiny size"):
        check_dataset("cifar10")


class _SwappedMetric(MulticlassKind):
    """Accuracy counted as wrong predictions: a metric that disagrees with the loss."""

    def compute_metrics(self, spec, output, target):
        return {"accuracy": float((output.argmax(dim=1) != target).float().mean())}


class _WideHead(MulticlassKind):
    """A head with one output more than the kind's output size."""

    def make_head(self, spec, feature_shape):
        return torch.nn.Linear(feature_shape[0], int(spec.num_classes) + 1)


def _tiny(kind: str):
    return task_kinds().registration(kind).tiny


def test_check_task_kind_finds_a_metric_against_its_loss():
    check_task_kind(MulticlassKind(), tiny=_tiny("multiclass"))
    with pytest.raises(AssertionError, match="perfect output scores accuracy=0.0"):
        check_task_kind(_SwappedMetric(), tiny=_tiny("multiclass"))


def test_check_task_kind_finds_a_wrong_head():
    with pytest.raises(AssertionError, match="the head gives"):
        check_task_kind(_WideHead(), tiny=_tiny("multiclass"))


def test_check_task_kind_needs_an_example():
    with pytest.raises(AssertionError, match="has no tiny example"):
        check_task_kind(MulticlassKind(), tiny={})


def test_task_spec_of_the_tiny_example_is_valid():
    spec = TaskSpec("t", kind="segmentation", **_tiny("segmentation")["spec"])
    assert spec.num_classes == 3 and spec.options["size"] == [8, 8]


# --------------------------------------------------------- check_weighting finds planted bugs
def _planted(fresh_plugins, cls: type, name: str) -> None:
    import types

    from mtlsearch import hookimpl
    from mtlsearch.plugin_manager import register_plugin

    plugin = types.SimpleNamespace(register_weightings=hookimpl(
        lambda register: register(name, cls)))
    register_plugin(plugin, name=f"{name}-plugin")


@pytest.fixture
def fresh_plugins():
    from mtlsearch.plugin_manager import reset_plugins

    reset_plugins()
    yield
    reset_plugins()


def test_check_weighting_finds_a_weighting_that_trains_nothing(fresh_plugins):
    from mtlsearch.engine.weighting import Weighting

    class Detached(Weighting):
        name = "detached"

        def combine(self, losses, step):
            return sum(v.detach() for v in losses.values()).requires_grad_(True)

    _planted(fresh_plugins, Detached, "detached")
    with pytest.raises(AssertionError, match="the trunk did not change"):
        check_weighting("detached")


def test_check_weighting_finds_an_unseeded_weighting(fresh_plugins):
    from mtlsearch.engine.weighting import Weighting

    class Unseeded(Weighting):
        name = "unseeded"

        def combine(self, losses, step):  # the global generator: differs from run to run
            w = torch.rand(len(losses))
            return sum(wi * v for wi, v in zip(w, losses.values()))

    _planted(fresh_plugins, Unseeded, "unseeded")
    with pytest.raises(AssertionError, match="differs between two runs with one seed"):
        check_weighting("unseeded")


def test_check_weighting_finds_a_missing_one_task_refusal(fresh_plugins):
    from mtlsearch.engine.weighting import Weighting

    class NeedsAll(Weighting):
        name = "needs_all"

        def combine(self, losses, step):
            assert len(losses) > 1, "one task: nothing to balance"
            return sum(losses.values())

    _planted(fresh_plugins, NeedsAll, "needs_all")
    with pytest.raises(AssertionError, match="nothing to balance"):
        check_weighting("needs_all")


def test_every_builtin_weighting_is_registered_by_its_entry_point():
    from mtlsearch.registry import weightings

    builtin = {"equal", "uw", "dwa", "gradnorm", "rlw", "upgrad", "mgda", "pcgrad", "cagrad",
               "nash_mtl", "imtl_g", "dualproj", "aligned_mtl"}
    assert builtin <= set(list_weightings())
    assert {weightings().registration(n).plugin for n in builtin} == {"builtin_weightings"}
