"""Image datasets read from files you already have: CelebA, CIFAR-10, Fashion-MNIST, Omniglot.

Nothing is downloaded. Each loader takes ``root``, the folder that torchvision's
``download=True`` would fill (or the unpacked official archives), and reads the same layout.
Images become float tensors in [0, 1] of shape ``(C, image_size, image_size)``, resized with
antialiasing. ``max_samples`` keeps a seeded random subset of each split for quick runs.

The whole dataset is held in memory as float32: CelebA at 64x64 is about 10 GB, so pass
``max_samples`` or a smaller ``image_size`` on small machines.

Example:
    >>> from mtlsearch.data.builtin.torchvision_files import load_cifar10
    >>> splits = load_cifar10(root="~/data", max_samples=2000)  # doctest: +SKIP
    >>> splits.task_names[:2]  # doctest: +SKIP
    ['is_airplane', 'is_automobile']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.kinds import TaskSpec

from ._common import (
    cap_indices,
    carve_val,
    check_fraction,
    check_fractions,
    check_int,
    check_seed,
    select_tasks,
    slug,
)
from ._file_formats import (
    find_folder,
    find_idx,
    list_omniglot,
    load_images,
    read_celeba_annotations,
    read_cifar_batches,
    read_cifar_classes,
    read_idx,
)

__all__ = ["load_celeba", "load_cifar10", "load_fashion_mnist", "load_omniglot", "HOW_TO_GET"]

HOW_TO_GET = {
    "celeba": (
        "Get the 'Align&Cropped' images (img_align_celeba.zip, unzipped) and the annotation files "
        "Anno/list_attr_celeba.txt and Eval/list_eval_partition.txt from "
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, and put all three in <root>/celeba/."
    ),
    "cifar10": (
        "Unpack cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html into "
        "<root> (or run torchvision.datasets.CIFAR10(root, download=True) once)."
    ),
    "fashion_mnist": (
        "Put the four files from https://github.com/zalandoresearch/fashion-mnist (data/fashion/, "
        ".gz or unpacked) in <root>/FashionMNIST/raw/ (or run "
        "torchvision.datasets.FashionMNIST(root, download=True) once)."
    ),
    "omniglot": (
        "Unzip images_background.zip (and images_evaluation.zip for background=False) from "
        "https://github.com/brendenlake/omniglot/tree/master/python into <root>/omniglot-py/ "
        "(or run torchvision.datasets.Omniglot(root, download=True) once)."
    ),
}

SPLITS = ("train", "val", "test")
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
OMNIGLOT_MODES = ("per_alphabet", "alphabet", "one_vs_rest")
# The official class order (as torchvision.datasets.FashionMNIST.classes).
FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


# --- shared pieces --------------------------------------------------------------------------


def _common_options(
    dataset: str, seed: Any, image_size: Any, max_samples: Any
) -> tuple[int, int, int | None]:
    seed = check_seed(dataset, seed)
    image_size = check_int(dataset, "image_size", image_size, minimum=2)
    if max_samples is not None:
        max_samples = check_int(dataset, "max_samples", max_samples)
    return seed, image_size, max_samples


def _root_str(root: Any) -> str:
    # Absolute, so the recorded kwargs reload the same files from any working directory.
    return str(Path(root).expanduser().resolve())


def _to_float(images: np.ndarray, image_size: int) -> Tensor:
    """uint8 ``(n, C, H, W)`` -> float32 in [0, 1], resized to ``image_size`` when needed."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.shape[-1] == image_size and x.shape[-2] == image_size:
        return x.float().div_(255.0)
    # Imported here: torchvision takes seconds to import, and listing datasets should not.
    from torchvision.transforms.v2 import functional as TF

    # Chunks bound the float copy made while resizing a large set.
    out = [
        TF.resize(chunk.float().div_(255.0), [image_size, image_size], antialias=True).clamp_(0, 1)
        for chunk in x.split(4096)
    ]
    return torch.cat(out)


def _one_vs_rest(
    dataset: str,
    classes: list[str],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    seed: int,
    image_size: int,
    max_samples: int | None,
    val_fraction: float,
    tasks: list[str] | None,
    kwargs: dict[str, Any],
) -> DatasetSplits:
    """Ten binary ``is_<class>`` tasks; validation carved from the official training set."""
    task_class = {f"is_{slug(c)}": k for k, c in enumerate(classes)}
    names = select_tasks(dataset, list(task_class), tasks)
    rng = np.random.default_rng(seed)
    train_rows, val_rows = carve_val(len(train[1]), val_fraction, rng)
    chosen = {
        "train": (train, train_rows),
        "val": (train, val_rows),
        "test": (test, np.arange(len(test[1]))),
    }
    specs = [TaskSpec(t, kind="binary") for t in names]
    parts = {}
    for split, ((images, labels), rows) in chosen.items():
        rows = rows[cap_indices(len(rows), max_samples, rng)]
        y = labels[rows]
        targets = {t: (y == task_class[t]).astype(np.float32) for t in names}
        parts[split] = MultiTaskDataset(_to_float(images[rows], image_size), targets, specs)
    return DatasetSplits(
        name=dataset,
        **parts,
        tasks=specs,
        info={"classes": classes, "task_classes": {t: classes[task_class[t]] for t in names}},
        kwargs={**kwargs, "tasks": None if tasks is None else names},
    )


# --- CelebA ---------------------------------------------------------------------------------


def load_celeba(
    *,
    root: str | Path | None = None,
    seed: int = 0,
    image_size: int = 64,
    max_samples: int | None = None,
    center_crop: bool = True,
    tasks: list[str] | None = None,
) -> DatasetSplits:
    """CelebA's 40 binary face attributes with the official train/validation/test partition.

    Expects ``root/celeba/`` (or ``root`` itself) to hold ``list_attr_celeba.txt``,
    ``list_eval_partition.txt`` and ``img_align_celeba/*.jpg``. Task names are the
    attribute names of the file's header (``5_o_Clock_Shadow``, ``Arched_Eyebrows``, ...);
    labels -1/1 become 0/1.

    Args:
        root: Folder holding the files (required).
        seed: Picks the ``max_samples`` subsets; the partition itself is fixed.
        image_size: Side of the square output images.
        max_samples: Keep at most this many images per split (seeded random choice).
        center_crop: Crop the 178x218 images to a central square before resizing, so faces
            keep their proportions; ``False`` squeezes the whole image.
        tasks: Keep only these attributes, in this order.

    Returns:
        Splits with inputs ``(3, image_size, image_size)``; ``info["files"]`` lists each
        split's image file names.

    Example:
        >>> s = load_celeba(root="~/data", max_samples=5000, tasks=["Smiling", "Male"])  # doctest: +SKIP
        >>> s.input_shape  # doctest: +SKIP
        (3, 64, 64)
    """
    name = "celeba"
    seed, image_size, max_samples = _common_options(name, seed, image_size, max_samples)
    if not isinstance(center_crop, bool):
        raise DatasetError(f"{name}: center_crop={center_crop!r} must be True or False")
    folder = find_folder(
        name,
        root,
        ("celeba", ""),
        ("list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba"),
        HOW_TO_GET[name],
    )
    attr_names, files, attrs, partition = read_celeba_annotations(folder)
    names = select_tasks(name, attr_names, tasks)
    columns = [attr_names.index(t) for t in names]
    specs = [TaskSpec(t, kind="binary") for t in names]

    def convert(img: Image.Image) -> np.ndarray:
        img = img.convert("RGB")
        if center_crop:
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side))
        img = img.resize((image_size, image_size), Image.BILINEAR)  # PIL antialiases downscaling
        return np.asarray(img).transpose(2, 0, 1)

    rng = np.random.default_rng(seed)
    parts, split_files = {}, {}
    for code, split in enumerate(SPLITS):
        rows = np.flatnonzero(partition == code)
        if len(rows) == 0:
            raise DatasetError(
                f"{name}: list_eval_partition.txt puts no image in the {split} split (code "
                f"{code}); use the official partition file"
            )
        rows = rows[cap_indices(len(rows), max_samples, rng)]
        images = load_images([folder / "img_align_celeba" / files[i] for i in rows], convert)
        targets = {t: attrs[rows, c] for t, c in zip(names, columns, strict=True)}
        parts[split] = MultiTaskDataset(
            torch.from_numpy(images).float().div_(255.0), targets, specs
        )
        split_files[split] = [files[i] for i in rows]
    return DatasetSplits(
        name=name,
        **parts,
        tasks=specs,
        info={"files": split_files},
        kwargs={
            "root": _root_str(root),
            "seed": seed,
            "image_size": image_size,
            "max_samples": max_samples,
            "center_crop": center_crop,
            "tasks": None if tasks is None else names,
        },
    )


# --- CIFAR-10 -------------------------------------------------------------------------------


def load_cifar10(
    *,
    root: str | Path | None = None,
    seed: int = 0,
    image_size: int = 32,
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    tasks: list[str] | None = None,
) -> DatasetSplits:
    """CIFAR-10 as ten one-vs-rest binary tasks ``is_airplane`` ... ``is_truck``.

    Expects ``root/cifar-10-batches-py/`` (or ``root`` itself) to hold ``data_batch_1`` ..
    ``data_batch_5``, ``test_batch`` and ``batches.meta``: the official "python version",
    whose files are pickled dictionaries. Only numpy arrays and plain values are unpickled
    (anything else is refused), but load only copies from a source you trust.

    Args:
        root: Folder holding the files (required).
        seed: Seeds the validation split and the ``max_samples`` subsets.
        image_size: Side of the square output images (32 keeps the originals).
        max_samples: Keep at most this many images per split (seeded random choice).
        val_fraction: Share of the official 50,000 training images held out for validation;
            the official test set is the test split.
        tasks: Keep only these task names, in this order.

    Returns:
        Splits with inputs ``(3, image_size, image_size)``; ``info["classes"]`` lists the
        class names.

    Example:
        >>> load_cifar10(root="~/data", tasks=["is_cat", "is_dog"]).task_names  # doctest: +SKIP
        ['is_cat', 'is_dog']
    """
    name = "cifar10"
    seed, image_size, max_samples = _common_options(name, seed, image_size, max_samples)
    val_fraction = check_fraction(name, "val_fraction", val_fraction)
    folder = find_folder(
        name,
        root,
        ("cifar-10-batches-py", ""),
        (*CIFAR_TRAIN, "test_batch", "batches.meta"),
        HOW_TO_GET[name],
    )
    classes = read_cifar_classes(folder)
    train = read_cifar_batches(folder, CIFAR_TRAIN)
    test = read_cifar_batches(folder, ["test_batch"])
    return _one_vs_rest(
        name,
        classes,
        train,
        test,
        seed=seed,
        image_size=image_size,
        max_samples=max_samples,
        val_fraction=val_fraction,
        tasks=tasks,
        kwargs={
            "root": _root_str(root),
            "seed": seed,
            "image_size": image_size,
            "max_samples": max_samples,
            "val_fraction": val_fraction,
        },
    )


# --- Fashion-MNIST --------------------------------------------------------------------------


def load_fashion_mnist(
    *,
    root: str | Path | None = None,
    seed: int = 0,
    image_size: int = 28,
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    tasks: list[str] | None = None,
) -> DatasetSplits:
    """Fashion-MNIST as ten one-vs-rest binary tasks ``is_t_shirt_top`` ... ``is_ankle_boot``.

    Expects ``root/FashionMNIST/raw/`` (torchvision's layout), ``root/raw/`` or ``root`` to
    hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte``, each either unpacked or as the original ``.gz``.

    Args:
        root: Folder holding the files (required).
        seed: Seeds the validation split and the ``max_samples`` subsets.
        image_size: Side of the square output images (28 keeps the originals).
        max_samples: Keep at most this many images per split (seeded random choice).
        val_fraction: Share of the official 60,000 training images held out for validation.
        tasks: Keep only these task names, in this order.

    Returns:
        Splits with inputs ``(1, image_size, image_size)``.

    Example:
        >>> load_fashion_mnist(root="~/data", max_samples=1000).input_shape  # doctest: +SKIP
        (1, 28, 28)
    """
    name = "fashion_mnist"
    seed, image_size, max_samples = _common_options(name, seed, image_size, max_samples)
    val_fraction = check_fraction(name, "val_fraction", val_fraction)
    stems = [stem for pair in FMNIST_FILES.values() for stem in pair]
    folder = find_folder(
        name,
        root,
        ("FashionMNIST/raw", "raw", ""),
        [f"{stem}|{stem}.gz" for stem in stems],
        HOW_TO_GET[name],
    )
    loaded = {}
    for split, (image_stem, label_stem) in FMNIST_FILES.items():
        images = read_idx(find_idx(folder, image_stem))
        labels = read_idx(find_idx(folder, label_stem)).astype(np.int64)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"{name}: {image_stem} has shape {images.shape} and {label_stem} {labels.shape}; "
                "expected (n, 28, 28) images and n labels"
            )
        loaded[split] = (images[:, None], labels)
    return _one_vs_rest(
        name,
        list(FMNIST_CLASSES),
        loaded["train"],
        loaded["test"],
        seed=seed,
        image_size=image_size,
        max_samples=max_samples,
        val_fraction=val_fraction,
        tasks=tasks,
        kwargs={
            "root": _root_str(root),
            "seed": seed,
            "image_size": image_size,
            "max_samples": max_samples,
            "val_fraction": val_fraction,
        },
    )


# --- Omniglot -------------------------------------------------------------------------------


def _split_per_character(
    character: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Split every character's drawings, so each character is seen in training."""
    rows: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    order = np.argsort(character, kind="stable")
    bounds = np.flatnonzero(np.diff(character[order])) + 1
    for members in np.split(order, bounds):
        members = rng.permutation(members)
        n = len(members)
        n_val = min(max(1, round(n * val_fraction)), max(n - 2, 0))
        n_test = min(max(1, round(n * test_fraction)), max(n - 1 - n_val, 0))
        rows["val"].append(members[:n_val])
        rows["test"].append(members[n_val : n_val + n_test])
        rows["train"].append(members[n_val + n_test :])
    return {s: np.sort(np.concatenate(r)) for s, r in rows.items()}


def load_omniglot(
    *,
    root: str | Path | None = None,
    seed: int = 0,
    image_size: int = 28,
    max_samples: int | None = None,
    mode: str = "per_alphabet",
    background: bool = True,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> DatasetSplits:
    """Omniglot handwritten characters, one task per alphabet.

    Expects ``root/omniglot-py/images_background/<Alphabet>/<character>/*.png`` (torchvision's
    layout; ``root/images_background/...`` also works). The background set has 30 alphabets,
    964 characters and 20 drawings of each.

    ``mode`` picks the tasks:

    * ``"per_alphabet"`` (default): one multiclass task per alphabet, named after it,
      asking which of that alphabet's characters a drawing shows. Drawings of other
      alphabets have no label (-1) for it, so every image is labelled for exactly one task:
      the alphabet-as-task setup of the multi-task architecture search literature.
    * ``"alphabet"``: a single multiclass task ``alphabet`` over all alphabets.
    * ``"one_vs_rest"``: one binary task ``is_<alphabet>`` per alphabet.

    Each character's drawings are split with ``seed`` into train, validation and test, so
    every character appears in training. Strokes are bright (1) on a dark (0) background.

    Args:
        root: Folder holding the files (required).
        seed: Seeds the split and the ``max_samples`` subsets.
        image_size: Side of the square output images (the originals are 105x105).
        max_samples: Keep at most this many drawings per split (seeded random choice).
        mode: ``"per_alphabet"``, ``"alphabet"`` or ``"one_vs_rest"``.
        background: Use the background set; ``False`` uses the 20-alphabet evaluation set.
        val_fraction: Share of each character's drawings held out for validation.
        test_fraction: Share held out for testing.

    Returns:
        Splits with inputs ``(1, image_size, image_size)``; ``info["alphabets"]`` lists the
        alphabets and ``info["characters"]`` each alphabet's characters (class order).

    Example:
        >>> s = load_omniglot(root="~/data", mode="alphabet")  # doctest: +SKIP
        >>> s.tasks[0].num_classes  # doctest: +SKIP
        30
    """
    name = "omniglot"
    seed, image_size, max_samples = _common_options(name, seed, image_size, max_samples)
    if mode not in OMNIGLOT_MODES:
        raise DatasetError(f"{name}: mode={mode!r} is not known; use one of {list(OMNIGLOT_MODES)}")
    if not isinstance(background, bool):
        raise DatasetError(f"{name}: background={background!r} must be True or False")
    val_fraction, test_fraction = check_fractions(name, val_fraction, test_fraction)
    subset = "images_background" if background else "images_evaluation"
    folder = find_folder(name, root, (f"omniglot-py/{subset}", subset), (), HOW_TO_GET[name])
    drawings = list_omniglot(folder)

    alphabets = sorted({a for a, _, _ in drawings})
    characters = {a: sorted({c for b, c, _ in drawings if b == a}) for a in alphabets}
    alphabet_of = np.array([alphabets.index(a) for a, _, _ in drawings])
    char_key = {
        (a, c): i for i, (a, c) in enumerate((a, c) for a in alphabets for c in characters[a])
    }
    character_id = np.array([char_key[(a, c)] for a, c, _ in drawings])
    within = np.array([characters[a].index(c) for a, c, _ in drawings])

    if mode == "per_alphabet":
        specs = [
            TaskSpec(a, kind="multiclass", num_classes=max(2, len(characters[a])))
            for a in alphabets
        ]
        labels = {a: np.where(alphabet_of == k, within, -1) for k, a in enumerate(alphabets)}
    elif mode == "alphabet":
        specs = [TaskSpec("alphabet", kind="multiclass", num_classes=max(2, len(alphabets)))]
        labels = {"alphabet": alphabet_of}
    else:
        specs = [TaskSpec(f"is_{slug(a)}", kind="binary") for a in alphabets]
        labels = {s.name: (alphabet_of == k).astype(np.float32) for k, s in enumerate(specs)}

    def convert(img: Image.Image) -> np.ndarray:
        img = img.convert("L").resize((image_size, image_size), Image.BILINEAR)
        return 255 - np.asarray(img)[None]  # the files draw dark strokes on white

    rng = np.random.default_rng(seed)
    rows_of = _split_per_character(character_id, val_fraction, test_fraction, rng)
    parts = {}
    for split in SPLITS:
        rows = rows_of[split]
        rows = rows[cap_indices(len(rows), max_samples, rng)]
        if len(rows) == 0:
            raise DatasetError(
                f"{name}: the {split} split is empty; each character needs at least 3 drawings"
            )
        images = load_images([drawings[i][2] for i in rows], convert)
        targets = {s.name: labels[s.name][rows] for s in specs}
        parts[split] = MultiTaskDataset(
            torch.from_numpy(images).float().div_(255.0), targets, specs
        )
    return DatasetSplits(
        name=name,
        **parts,
        tasks=specs,
        info={"alphabets": alphabets, "characters": characters, "mode": mode},
        kwargs={
            "root": _root_str(root),
            "seed": seed,
            "image_size": image_size,
            "max_samples": max_samples,
            "mode": mode,
            "background": background,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
        },
    )
