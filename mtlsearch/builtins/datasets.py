"""Entry point ``builtin_datasets``: the built-in loaders, registered lazily.

Each row names a loader in :mod:`mtlsearch.data.builtin` by ``"submodule:function"`` and the
first line of its docstring (what ``mtlsearch datasets`` shows; checked against the loader
when it is first used).
"""

from __future__ import annotations

from typing import Any

from mtlsearch.hookspecs import DatasetRegistrar, hookimpl

_PACKAGE = "mtlsearch.data.builtin"

#: name, where in :mod:`mtlsearch.data.builtin`, the loader's one line.
DATASETS: tuple[tuple[str, str, str], ...] = (
    ("multi_digits", "multi_digits:load_multi_digits",
     "Pairs of 8x8 digits on a ``(1, half_size, 2*half_size)`` canvas with six binary tasks."),
    ("digits", "digits:load_digits",
     "Ten binary tasks ``is_0`` .. ``is_9`` on the 8x8 digits, inputs ``(1, 8, 8)`` in [0, 1]."),
    ("synthetic", "synthetic:load_synthetic",
     "Tasks ``t000``, ``t001``, ... in planted groups; inputs ``(input_dim,)``."),
    ("dense_shapes", "dense_shapes:load_dense_shapes",
     "Generated scenes with ``segment``, ``depth``, ``normals`` and ``edges`` tasks."),
    ("nyuv2", "dense_files:load_nyuv2",
     "NYU v2 from the preprocessed ``.npy`` folders or the labelled ``.mat`` file."),
    ("cityscapes", "dense_files:load_cityscapes",
     "Cityscapes (official folders): 19-class segmentation and, with ``disparity/``, depth."),
    ("celeba", "torchvision_files:load_celeba",
     "CelebA's 40 binary face attributes with the official train/validation/test partition."),
    ("cifar10", "torchvision_files:load_cifar10",
     "CIFAR-10 as ten one-vs-rest binary tasks ``is_airplane`` ... ``is_truck``."),
    ("fashion_mnist", "torchvision_files:load_fashion_mnist",
     "Fashion-MNIST as ten one-vs-rest binary tasks ``is_t_shirt_top`` ... ``is_ankle_boot``."),
    ("omniglot", "torchvision_files:load_omniglot",
     "Omniglot handwritten characters, one task per alphabet."),
)

#: Tiny sizes for the conformance tests. The loaders of downloaded files (``nyuv2``,
#: ``cityscapes``, ``celeba``, ``cifar10``, ``fashion_mnist``, ``omniglot``) have none: they
#: cannot load without their files.
TINY: dict[str, dict[str, Any]] = {
    "multi_digits": {"n_train": 60, "n_val": 30, "n_test": 30},
    "digits": {},  # scikit-learn's 1,797 8x8 images: tiny already
    "synthetic": {"n_tasks": 3, "n_samples": 120, "input_dim": 8},
    "dense_shapes": {"n_samples": 24, "size": 16},
}


#: Your own data (``--dataset npz:PATH`` ...), :mod:`mtlsearch.data.sources`: registered name, loader (``"module:function"``, imported on first use) and its one line.
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("npz", "mtlsearch.data.sources.arrays:load_npz",
     "Load an ``.npz``: ``input_key`` is the input, the chosen arrays are tasks."),
    ("csv", "mtlsearch.data.sources.table:load_table",
     "``csv:PATH``: a CSV, TSV or Parquet table, ``targets`` columns as tasks."),
    ("parquet", "mtlsearch.data.sources.table:load_table",
     "``csv:PATH``: a CSV, TSV or Parquet table, ``targets`` columns as tasks."),
    ("folder", "mtlsearch.data.sources.folder:load_folder",
     "Load a folder of images and its label table as multi-task splits."),
)


@hookimpl
def register_datasets(register: DatasetRegistrar) -> None:
    """Contribute the built-in loaders, each with its tiny size, and the sources of your own
    data (no tiny size: they need files)."""
    for name, where, description in DATASETS:
        register(name, f"{_PACKAGE}.{where}", tiny=TINY.get(name), description=description)
    for name, where, description in SOURCES:
        register(name, where, tiny=None, description=description)
