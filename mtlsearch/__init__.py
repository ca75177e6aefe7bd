"""mtlsearch: search how a deep network should be shared among many prediction tasks."""

from __future__ import annotations

from mtlsearch import _compat
from mtlsearch._version import __version__
from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset, from_arrays, from_npz
from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.engine.scoring import delta_mtl, evaluate
from mtlsearch.engine.train import TrainConfig, Trainer, select_device
from mtlsearch.engine.weighting import Weighting
from mtlsearch.errors import (
    DatasetError,
    DistributedAbort,
    ExportError,
    GraphError,
    MTLSearchError,
    OutOfSpaceError,
    SpaceError,
    StorageError,
    TaskError,
    TrainingError,
    UnknownNameError,
    UnsafeInputError,
)
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import Block, SearchSpace, from_modules
from mtlsearch.graph.summary import GraphSummary, summarize
from mtlsearch.hookspecs import (
    CommandRegistrar,
    DatasetRegistrar,
    SpaceRegistrar,
    StrategyRegistrar,
    TaskKindRegistrar,
    WeightingRegistrar,
    hookimpl,
)
from mtlsearch.plugin_manager import list_plugins, register_plugin
from mtlsearch.registry import (
    create_space,
    create_strategy,
    create_weighting,
    default_strategy,
    list_datasets,
    list_spaces,
    list_strategies,
    list_weightings,
    load_dataset,
    tiny_settings,
)
from mtlsearch.strategy.base import Proposal, Strategy
from mtlsearch.strategy.context import ResultCache, SearchContext
from mtlsearch.strategy.pipeline import TrialResult, evaluate_proposal, run_strategy
from mtlsearch.tasks.kinds import TaskKind, TaskSpec, list_task_kinds

_compat.install()  # the 0.1 module paths, for one release (CHANGELOG.md)

# Studies, reports and export pull in Optuna, SQLAlchemy and matplotlib: load them on first use
# so `import mtlsearch` stays light (and works where only the engine is needed).
_LAZY = {
    "compare": "study.comparison",
    "export_model": "export.write",
    "load": "export.read",
    "predict": "engine.predict",
    "SearchResult": "study.runner",
    "search": "study.runner",
    "open_study": "study.storage",
    "export_trial": "study.trials",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mtlsearch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

__all__ = [
    "__version__",
    "Block",
    "CommandRegistrar",
    "DatasetRegistrar",
    "SpaceRegistrar",
    "StrategyRegistrar",
    "TaskKindRegistrar",
    "WeightingRegistrar",
    "GraphSummary",
    "MultiTaskModel",
    "Proposal",
    "ResultCache",
    "SearchContext",
    "SearchResult",
    "SharingGraph",
    "Strategy",
    "TrainConfig",
    "Trainer",
    "TrialResult",
    "Weighting",
    "compare",
    "delta_mtl",
    "export_model",
    "export_trial",
    "load",
    "open_study",
    "predict",
    "search",
    "evaluate",
    "evaluate_proposal",
    "materialize",
    "run_strategy",
    "select_device",
    "summarize",
    "DatasetError",
    "DatasetSplits",
    "DistributedAbort",
    "ExportError",
    "GraphError",
    "MTLSearchError",
    "OutOfSpaceError",
    "StorageError",
    "MultiTaskDataset",
    "SearchSpace",
    "SpaceError",
    "TaskError",
    "TaskKind",
    "TaskSpec",
    "TrainingError",
    "UnknownNameError",
    "UnsafeInputError",
    "create_space",
    "create_strategy",
    "create_weighting",
    "default_strategy",
    "from_arrays",
    "from_modules",
    "from_npz",
    "hookimpl",
    "list_datasets",
    "list_plugins",
    "list_spaces",
    "list_strategies",
    "list_task_kinds",
    "list_weightings",
    "load_dataset",
    "tiny_settings",
    "register_plugin",
]
