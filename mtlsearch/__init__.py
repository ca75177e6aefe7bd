"""mtlsearch: search how a deep network should be shared among many prediction tasks."""

from __future__ import annotations

from .compare import compare
from .context import ResultCache, SearchContext
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
from .export import export_model, load, predict
from .graph import SharingGraph
from .hookspecs import hookimpl
from .model import MultiTaskModel, materialize
from .pipeline import TrialResult, evaluate_proposal, run_strategy
from .plugin_manager import list_plugins, register_plugin
from .registry import (
    create_space,
    create_strategy,
    list_datasets,
    list_spaces,
    list_strategies,
    load_dataset,
)
from .scoring import delta_mtl, evaluate
from .spaces import Block, SearchSpace, from_modules
from .storage import open_study
from .strategy import Proposal, Strategy
from .study import SearchResult, search
from .summary import GraphSummary, summarize
from .tasks import TaskKind, TaskSpec, list_task_kinds
from .train import TrainConfig, Trainer, select_device
from .trials import export_trial

__version__ = "0.1.0"

__all__ = [
    "Block",
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
