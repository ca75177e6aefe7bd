"""Data: the inputs and per-task targets a search trains and scores on.

``dataset`` holds :class:`MultiTaskDataset` (inputs and ``{task: targets}`` in memory),
:class:`DatasetSplits` (train / val / test with their task specs), seeded splits and the
array and ``.npz`` sources; ``builtin`` the registered datasets (``synthetic``, ``digits``,
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

__all__ = ["DatasetSplits", "MultiTaskDataset", "from_arrays", "from_npz", "split_indices"]
