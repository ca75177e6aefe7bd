"""The 0.1 module paths still import, for one release, as the very modules they moved to."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from mtlsearch._compat import MOVED, new_name


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_with_a_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=MOVED[old].replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_a_submodule_of_an_old_package_is_not_loaded_twice():
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "from mtlsearch.datasets.digits import load_digits\n"
            "import mtlsearch.data.builtin.digits as d\n"
            "print(load_digits is d.load_digits)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "True"


def test_names_that_are_packages_now_need_no_alias():
    assert new_name("mtlsearch.graph") is None and new_name("mtlsearch.study") is None
    assert new_name("mtlsearch.datasets.digits") == "mtlsearch.data.builtin.digits"
    assert new_name("mtlsearch.trainer") is None  # a prefix of a word is not a match
    from mtlsearch.graph import SharingGraph  # noqa: F401  (0.1: mtlsearch.graph.SharingGraph)
    from mtlsearch.study import search  # noqa: F401
    from mtlsearch.tasks import TaskSpec  # noqa: F401


def test_every_moved_target_exists():
    for target in MOVED.values():
        assert importlib.import_module(target).__name__ == target
