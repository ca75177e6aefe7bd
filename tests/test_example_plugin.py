"""The example third-party plugin, installed for real with pip and found by its entry point.

``examples/mtlsearch-example-plugin`` is built and installed (``pip install --no-deps
--no-build-isolation --target``) into a temporary folder once per session (about 10 s); each
test puts that folder on ``sys.path`` and reloads the plugins, exactly as a Python that has the
package installed would find it.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtlsearch import (
    SearchContext,
    SharingGraph,
    TrainConfig,
    create_space,
    load_dataset,
    run_strategy,
)
from mtlsearch.plugin_manager import list_plugins, reset_plugins
from mtlsearch.registry import create_strategy, list_strategies, list_weightings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mtlsearch-example-plugin"
MODULE = "mtlsearch_example_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin pip-installed into a temporary target folder (built from a copy,
    so the build leaves nothing in the repository)."""
    root = tmp_path_factory.mktemp("example_plugin")
    source, target = root / "src", root / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "--disable-pip-version-check", "--target", str(target), str(source),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"pip install of the example plugin failed:\n{proc.stdout}\n{proc.stderr}")
    assert any(target.glob("mtlsearch_example_plugin-*.dist-info")), sorted(target.iterdir())
    return target


@pytest.fixture
def plugin_path(installed: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``sys.path`` with the installed plugin, and plugins reloaded before and after."""
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.delenv("MTLSEARCH_PLUGINS", raising=False)
    monkeypatch.delenv("MTLSEARCH_DISABLE_PLUGINS", raising=False)
    reset_plugins()
    yield installed
    reset_plugins()
    for name in [m for m in sys.modules if m == MODULE or m.startswith(MODULE + ".")]:
        del sys.modules[name]


def test_discovered_through_its_entry_point(plugin_path: Path) -> None:
    assert "split_last" in list_strategies()
    assert {"hard_sharing", "single_task"} <= set(list_strategies())  # built-ins still there
    info = {p.name: p for p in list_plugins()}["example"]
    assert info.distribution == "mtlsearch-example-plugin"
    assert info.version == "0.1.0"
    assert info.hooks == ["register_strategies", "register_weightings"]
    strategy = create_strategy("split_last", max_split=1)
    assert type(strategy).__module__ == MODULE
    assert Path(sys.modules[MODULE].__file__).is_relative_to(plugin_path)


def test_registration_carries_its_tiny_size(plugin_path: Path) -> None:
    from mtlsearch.registry import strategies, tiny_settings
    from mtlsearch.testing import check_strategy

    assert tiny_settings("strategy", "split_last") == {"max_split": 1}
    assert strategies().registration("split_last").plugin == "example"
    check_strategy("split_last")  # built from those settings


def test_runs_one_trial(plugin_path: Path) -> None:
    data = load_dataset("synthetic", n_tasks=3, n_samples=200)
    space = create_space("mlp", input_shape=data.input_shape, widths=(8, 8))
    ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1))
    result = run_strategy(create_strategy("split_last"), ctx)
    assert result.info == {"split": 1, "shared_blocks": 1}
    assert result.epochs_run == 1
    assert SharingGraph.from_dict(result.graph).branches_per_depth() == [1, 3]


def test_disable_plugins_hides_it(plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLSEARCH_DISABLE_PLUGINS", "example")
    reset_plugins()
    assert "split_last" not in list_strategies()
    assert "inverse_initial_loss" not in list_weightings() and "uw" in list_weightings()
    assert "hard_sharing" in list_strategies()
    assert "example" not in {p.name for p in list_plugins()}


def test_allow_list(plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLSEARCH_PLUGINS", "example")
    reset_plugins()
    assert list_strategies() == ["split_last"]
    assert list_weightings() == ["inverse_initial_loss"]
    assert [p.name for p in list_plugins()] == ["example"]
    monkeypatch.setenv("MTLSEARCH_PLUGINS", "hard_sharing, builtin_tasks")
    reset_plugins()
    assert list_strategies() == ["hard_sharing"]


def test_its_weighting_is_discovered_and_trains(plugin_path: Path) -> None:
    from mtlsearch.registry import get_weighting_class, tiny_settings, weightings
    from mtlsearch.testing import check_weighting

    assert "inverse_initial_loss" in list_weightings()
    assert {"equal", "uw", "upgrad"} <= set(list_weightings())  # built-ins still there
    assert weightings().registration("inverse_initial_loss").plugin == "example"
    assert get_weighting_class("inverse_initial_loss").__module__ == MODULE
    assert tiny_settings("weighting", "inverse_initial_loss") == {"floor": 0.01}
    check_weighting("inverse_initial_loss")  # built from those settings


def test_its_weighting_weighs_a_search_trial(plugin_path: Path) -> None:
    data = load_dataset("synthetic", n_tasks=3, n_samples=200)
    space = create_space("mlp", input_shape=data.input_shape, widths=(8, 8))
    budget = TrainConfig(epochs=1, weighting="inverse_initial_loss")
    ctx = SearchContext(data=data, space=space, budget=budget)
    result = run_strategy(create_strategy("split_last"), ctx)
    assert result.epochs_run == 1 and result.model.train_info["weighting"] == \
        "inverse_initial_loss"


def test_not_found_without_the_install() -> None:
    try:
        importlib.metadata.distribution("mtlsearch-example-plugin")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        pytest.skip("the example plugin is installed in this environment")
    reset_plugins()
    try:
        assert "split_last" not in list_strategies()
        assert "inverse_initial_loss" not in list_weightings()
    finally:
        reset_plugins()
