"""Your own data as datasets: ``.npz`` arrays, tables, image folders and torch datasets.

Each source is a function returning :class:`~mtlsearch.data.dataset.DatasetSplits`, usable
from Python and, registered by the built-in ``builtin_datasets`` entry point
(:mod:`mtlsearch.builtins.datasets`), from every command that takes ``--dataset``:

=================================  ===========================================================
``npz:PATH``                       :func:`load_npz`: input array ``X``, a label array per task
``csv:PATH`` / ``parquet:PATH``    :func:`load_table`: ``targets=`` columns, inputs the others
``folder:DIR``                     :func:`load_folder`: images + a label table (``labels=``)
Python only                        :func:`from_dataframe`, :func:`from_torch_dataset`
=================================  ===========================================================

Task kinds are inferred from the labels (:mod:`~mtlsearch.data.sources.infer`) with a
``kinds=`` override; missing labels stay missing; ``metric=`` and ``pos_weight=`` set binary
tasks' primary metric and loss weighting.

Example:
    >>> import numpy as np, tempfile, os
    >>> from mtlsearch.data.sources import load_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, X=np.random.rand(40, 3), digit=np.arange(40) % 4)
    >>> load_npz(path).tasks[0].kind
    'multiclass'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlsearch.data.sources.arrays import load_npz
    from mtlsearch.data.sources.folder import load_folder
    from mtlsearch.data.sources.infer import infer_task, infer_tasks
    from mtlsearch.data.sources.table import from_dataframe, load_table
    from mtlsearch.data.sources.torch_dataset import from_torch_dataset

# Loaded on first use: importing this package imports none of the sources.
_LAZY = {
    "load_npz": "arrays", "load_folder": "folder", "infer_task": "infer",
    "infer_tasks": "infer", "from_dataframe": "table", "load_table": "table",
    "from_torch_dataset": "torch_dataset",
}

__all__ = [
    "from_dataframe",
    "from_torch_dataset",
    "infer_task",
    "infer_tasks",
    "load_folder",
    "load_npz",
    "load_table",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"mtlsearch.data.sources.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'mtlsearch.data.sources' has no attribute {name!r}")
