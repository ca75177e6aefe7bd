"""mtlsearch: search how a deep network should be shared among many prediction tasks."""

from __future__ import annotations

from .data import DatasetSplits, MultiTaskDataset, from_arrays, from_npz
from .errors import (
    DatasetError,
    ExportError,
    GraphError,
    MTLSearchError,
    SpaceError,
    TaskError,
    UnknownNameError,
)
from .hookspecs import hookimpl
from .plugin_manager import list_plugins, register_plugin
from .registry import (
    create_space,
    create_strategy,
    list_datasets,
    list_spaces,
    list_strategies,
    load_dataset,
)
from .spaces import Block, SearchSpace, from_modules
from .tasks import TaskKind, TaskSpec, list_task_kinds

__version__ = "0.1.0"

__all__ = [
    "Block",
    "DatasetError",
    "DatasetSplits",
    "ExportError",
    "GraphError",
    "MTLSearchError",
    "MultiTaskDataset",
    "SearchSpace",
    "SpaceError",
    "TaskError",
    "TaskKind",
    "TaskSpec",
    "UnknownNameError",
    "create_space",
    "create_strategy",
    "from_arrays",
    "from_modules",
    "from_npz",
    "hookimpl",
    "list_datasets",
    "list_plugins",
    "list_spaces",
    "list_strategies",
    "list_task_kinds",
    "load_dataset",
    "register_plugin",
]
