"""Name -> loader of every built-in dataset.

Each loader is keyword-only, ``load_<name>(*, seed=0, **options) -> DatasetSplits``, and
records its options in ``DatasetSplits.kwargs`` so ``load_dataset(name, **kwargs)`` rebuilds
the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .dense_files import load_cityscapes, load_nyuv2
from .dense_shapes import load_dense_shapes
from .digits import load_digits
from .multi_digits import load_multi_digits
from .synthetic import load_synthetic
from .torchvision_files import load_celeba, load_cifar10, load_fashion_mnist, load_omniglot

LOADERS: dict[str, Callable[..., Any]] = {
    "multi_digits": load_multi_digits,
    "digits": load_digits,
    "synthetic": load_synthetic,
    "dense_shapes": load_dense_shapes,
    "nyuv2": load_nyuv2,
    "cityscapes": load_cityscapes,
    "celeba": load_celeba,
    "cifar10": load_cifar10,
    "fashion_mnist": load_fashion_mnist,
    "omniglot": load_omniglot,
}
