"""Built-in datasets, registered through the ``mtlsearch`` entry-point group."""

from __future__ import annotations

from typing import Any

from mtlsearch.hookspecs import DatasetRegistrar, hookimpl


@hookimpl
def register_datasets(register: DatasetRegistrar) -> None:
    """Contribute the built-in loaders, each with its tiny size for the conformance tests.

    The loaders of downloaded files (``nyuv2``, ``cityscapes``, ``celeba``, ``cifar10``,
    ``fashion_mnist``, ``omniglot``) have none: they cannot load without their files.
    """
    from . import _catalog

    tiny: dict[str, dict[str, Any]] = {
        "multi_digits": {"n_train": 60, "n_val": 30, "n_test": 30},
        "digits": {},  # scikit-learn's 1,797 8x8 images: tiny already
        "synthetic": {"n_tasks": 3, "n_samples": 120, "input_dim": 8},
        "dense_shapes": {"n_samples": 24, "size": 16},
    }
    for name, loader in _catalog.LOADERS.items():
        register(name, loader, tiny=tiny.get(name))
