"""Data: the inputs and per-task targets a search trains and scores on.

``dataset`` holds :class:`MultiTaskDataset` (inputs and ``{task: targets}`` in memory),
:class:`DatasetSplits` (train / val / test with their task specs), seeded splits and the
array and ``.npz`` sources; ``sources`` your own data (``npz``, ``csv``/``parquet`` tables, image
``folder`` + label table, DataFrames, torch datasets); ``streaming`` datasets read a batch
at a time (``uint8`` images, DataLoader workers); ``preprocess`` how raw inputs become the
network's; ``builtin`` the registered datasets (``synthetic``, ``digits``,
``multi_digits``, ``dense_shapes``, and readers for real datasets' on-disk files). Datasets
are registered through the ``register_datasets`` hook. This subpackage imports only
``tasks`` and the base modules.

Example:
    >>> import numpy as np
    >>> from mtlsearch.data import from_arrays
    >>> splits = from_arrays(np.zeros((20, 4), np.float32), {"a": np.arange(20) % 2}, seed=0)
    >>> len(splits.train) + len(splits.val) + len(splits.test)
    20
"""

from __future__ import annotations

from mtlsearch.data.dataset import (
    DatasetSplits,
    MultiTaskDataset,
    from_arrays,
    from_npz,
    split_indices,
)

__all__ = [
    "DatasetSplits",
    "MultiTaskDataset",
    "StreamingDataset",
    "from_arrays",
    "from_dataframe",
    "from_npz",
    "from_torch_dataset",
    "load_folder",
    "load_table",
    "split_indices",
]

_LAZY = {  # pandas, PIL and the DataLoader machinery load only when used
    "StreamingDataset": "mtlsearch.data.streaming",
    "from_dataframe": "mtlsearch.data.sources",
    "from_torch_dataset": "mtlsearch.data.sources",
    "load_folder": "mtlsearch.data.sources",
    "load_table": "mtlsearch.data.sources",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtlsearch.data' has no attribute {name!r}")
