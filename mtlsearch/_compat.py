"""The module paths of mtlsearch 0.1's flat layout, kept importable for one release.

``import mtlsearch.train`` still works and gives the very module ``mtlsearch.engine.train``
(so ``monkeypatch.setattr("mtlsearch.train.X", ...)`` patches the real one), with a
:class:`DeprecationWarning` naming the new path. Old names that are now subpackages
(``mtlsearch.graph``, ``mtlsearch.study``, ...) re-export their public names instead and need
no alias. The table is CHANGELOG.md's; this finder goes in the release after next.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old flat module -> where it lives now (only names that are not packages now).
MOVED = {
    "mtlsearch.dense_tasks": "mtlsearch.tasks.dense.kinds",
    "mtlsearch.dense_heads": "mtlsearch.tasks.dense.heads",
    "mtlsearch.datasets": "mtlsearch.data.builtin",
    "mtlsearch.spaces": "mtlsearch.graph.space",
    "mtlsearch.plan": "mtlsearch.graph.plan",
    "mtlsearch.summary": "mtlsearch.graph.summary",
    "mtlsearch.grouping": "mtlsearch.graph.grouping",
    "mtlsearch.model": "mtlsearch.engine.model",
    "mtlsearch.train": "mtlsearch.engine.train",
    "mtlsearch.scoring": "mtlsearch.engine.scoring",
    "mtlsearch.acceleration": "mtlsearch.engine.acceleration",
    "mtlsearch.compute": "mtlsearch.engine.compute",
    "mtlsearch.distributed": "mtlsearch.engine.distributed",
    "mtlsearch.context": "mtlsearch.strategy.context",
    "mtlsearch.pipeline": "mtlsearch.strategy.pipeline",
    "mtlsearch.trials": "mtlsearch.study.trials",
    "mtlsearch.storage": "mtlsearch.study.storage",
    "mtlsearch.comparison": "mtlsearch.study.comparison",
    "mtlsearch.progress": "mtlsearch.study.progress",
    "mtlsearch.viz_dense": "mtlsearch.viz.dense",
}


def new_name(old: str) -> str | None:
    """Where the old module ``old`` (or a submodule of an old package) lives now."""
    for prefix, target in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix):]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}; import it from there (the old path goes in "
            "the release after next, see CHANGELOG.md)", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(self.target)
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the target module is already imported."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None):
        new = new_name(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the finder on :data:`sys.meta_path` once (the package root calls it)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())  # first: the old package's __path__ would load copies
