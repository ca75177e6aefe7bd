"""mtlsearch: search how a deep network should be shared among many prediction tasks."""

from __future__ import annotations

from mtlsearch import _compat
from mtlsearch._version import __version__
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

_compat.install()  # the 0.1 module paths, for one release (CHANGELOG.md)

# Everything that needs torch (the engine, graphs, strategies), Optuna or matplotlib (studies,
# export, reports) loads on first use, so `import mtlsearch` (and the `mtlsearch` command's
# --help and listings) import none of them.
_LAZY = {
    "DatasetSplits": "data.dataset",
    "MultiTaskDataset": "data.dataset",
    "from_arrays": "data.dataset",
    "from_npz": "data.dataset",
    "from_dataframe": "data.sources.table",
    "from_torch_dataset": "data.sources.torch_dataset",
    "load_folder": "data.sources.folder",
    "load_table": "data.sources.table",
    "StreamingDataset": "data.streaming",
    "Preprocessing": "data.preprocess",
    "MLflowTracker": "study.trackers",
    "TensorBoardTracker": "study.trackers",
    "MultiTaskModel": "engine.model",
    "materialize": "engine.model",
    "delta_mtl": "engine.scoring",
    "evaluate": "engine.scoring",
    "TrainConfig": "engine.train",
    "Trainer": "engine.train",
    "select_device": "engine.train",
    "Weighting": "engine.weighting",
    "SharingGraph": "graph.sharing",
    "Block": "graph.space",
    "SearchSpace": "graph.space",
    "from_modules": "graph.space",
    "GraphSummary": "graph.summary",
    "summarize": "graph.summary",
    "Proposal": "strategy.base",
    "Strategy": "strategy.base",
    "ResultCache": "strategy.context",
    "SearchContext": "strategy.context",
    "TrialResult": "strategy.pipeline",
    "evaluate_proposal": "strategy.pipeline",
    "run_strategy": "strategy.pipeline",
    "TaskKind": "tasks.kinds",
    "TaskSpec": "tasks.kinds",
    "list_task_kinds": "tasks.kinds",
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
    import importlib

    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # next time a plain attribute
        return value
    # `import mtlsearch` then `mtlsearch.graph.X`: subpackages load on first attribute use too
    import importlib.util

    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'mtlsearch' has no attribute {name!r}")


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
    "from_dataframe",
    "from_modules",
    "from_npz",
    "from_torch_dataset",
    "load_folder",
    "load_table",
    "StreamingDataset",
    "Preprocessing",
    "MLflowTracker",
    "TensorBoardTracker",
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
