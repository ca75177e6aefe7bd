"""Readers for the on-disk formats of CelebA, CIFAR-10, Fashion-MNIST and Omniglot.

The layouts are exactly those that torchvision's ``download=True`` produces (and the official
archives unpack to). torchvision's own dataset classes are not used to read them because they
verify MD5 checksums of files this package does not need or that users rarely keep (CelebA's
identity, box and landmark files; Omniglot's original zip archive), and torchvision's
Fashion-MNIST reader wants the ``.gz`` files unpacked. Reading the formats directly accepts any
complete copy.

Every reader raises :class:`~mtlsearch.errors.DatasetError` naming the missing or malformed
file.
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mtlsearch.errors import DatasetError

__all__ = [
    "find_folder",
    "read_celeba_annotations",
    "read_cifar_batches",
    "read_idx",
    "find_idx",
    "list_omniglot",
    "load_images",
]


def find_folder(
    dataset: str, root: Any, candidates: Sequence[str], required: Sequence[str], how_to_get: str
) -> Path:
    """The first of ``root/<candidate>`` holding every ``required`` entry (glob patterns).

    Args:
        dataset: Dataset name for messages.
        root: The user's ``root`` option.
        candidates: Sub-folders to try, relative to ``root`` (``""`` is ``root`` itself).
        required: Names that must exist in the folder; ``a|b`` accepts either name.
        how_to_get: Sentence telling the user where the files come from.
    """
    shown = [" or ".join(name.split("|")) for name in required]
    if root is None:
        holding = f" holding {', '.join(shown)}" if required else ""
        raise DatasetError(
            f"{dataset} needs root=<folder with the files>: it expects the folder "
            f"<root>/{candidates[0]}{holding}. {how_to_get}"
        )
    if not isinstance(root, (str, os.PathLike)):
        raise DatasetError(f"{dataset}: root={root!r} must be a folder path (str or Path)")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"{dataset}: root folder {str(base)!r} does not exist. {how_to_get}")
    for sub in candidates:
        folder = base / sub if sub else base
        if folder.is_dir() and all(_exists(folder, name) for name in required):
            return folder
    first = base / candidates[0]
    if not required:
        raise DatasetError(f"{dataset}: folder {str(first)!r} not found. {how_to_get}")
    missing = [s for name, s in zip(required, shown, strict=True) if not _exists(first, name)]
    gap = (
        "none of them is there" if len(missing) == len(shown) else f"missing: {', '.join(missing)}"
    )
    raise DatasetError(
        f"{dataset}: files not found under {str(base)!r}. Expected {str(first)!r} to hold "
        f"{', '.join(shown)}; {gap}. {how_to_get}"
    )


def _exists(folder: Path, name: str) -> bool:
    return any((folder / option).exists() for option in name.split("|"))


# --- CelebA -------------------------------------------------------------------------------


def read_celeba_annotations(folder: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Parse ``list_attr_celeba.txt`` and ``list_eval_partition.txt``.

    Returns:
        ``(attribute names, image file names, attributes (n, 40) in {0, 1}, partition (n,))``
        where the partition is 0 train, 1 validation, 2 test.
    """
    attr_path = folder / "list_attr_celeba.txt"
    lines = attr_path.read_text().splitlines()
    if len(lines) < 3:
        raise DatasetError(f"celeba: {attr_path} is truncated: it needs a count, a header and rows")
    names = lines[1].split()
    files, rows = [], []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DatasetError(
                f"celeba: {attr_path} line {number} has {len(parts) - 1} values for "
                f"{len(names)} attributes; the file is malformed"
            )
        files.append(parts[0])
        rows.append(parts[1:])
    try:
        values = np.array(rows, dtype=np.int64).reshape(len(rows), len(names))
    except ValueError:
        raise DatasetError(f"celeba: {attr_path} holds non-integer attribute values") from None
    if not np.isin(values, (-1, 1)).all():
        raise DatasetError(f"celeba: attributes in {attr_path} must be -1 or 1")

    part_path = folder / "list_eval_partition.txt"
    partition_of: dict[str, int] = {}
    for line in part_path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            partition_of[parts[0]] = int(parts[1])
    missing = [f for f in files if f not in partition_of]
    if missing:
        raise DatasetError(
            f"celeba: {len(missing)} images of list_attr_celeba.txt (e.g. {missing[0]}) have no "
            f"line in {part_path}; use the two files from the same CelebA release"
        )
    partition = np.array([partition_of[f] for f in files], dtype=np.int64)
    return names, files, ((values + 1) // 2).astype(np.float32), partition


# --- CIFAR-10 ------------------------------------------------------------------------------

# Everything a CIFAR batch (a dict of numpy arrays, lists and strings) needs to unpickle.
_CIFAR_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and builtins only, so a tampered file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):  # pickles from numpy < 2 (the official files)
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            # latin1 reads the official Python 2 pickles' byte strings (as torchvision does).
            entry = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(f"cifar10: cannot read {path}: {exc}; the file is corrupt") from None
    if not isinstance(entry, dict):
        raise DatasetError(f"cifar10: {path} does not hold a CIFAR batch dictionary")
    return entry


def read_cifar_batches(folder: Path, files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` from CIFAR-10 python batches."""
    images, labels = [], []
    for file in files:
        entry = _unpickle(folder / file)
        if "data" not in entry or "labels" not in entry:
            raise DatasetError(f"cifar10: {folder / file} lacks the 'data' or 'labels' entry")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(entry["labels"]):
            raise DatasetError(
                f"cifar10: {folder / file} has data of shape {data.shape} for "
                f"{len(entry['labels'])} labels; expected (n, 3072)"
            )
        images.append(data.reshape(-1, 3, 32, 32))  # rows are 1024 R, then G, then B values
        labels.append(np.asarray(entry["labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_cifar_classes(folder: Path) -> list[str]:
    """Class names from ``batches.meta``."""
    entry = _unpickle(folder / "batches.meta")
    names = entry.get("label_names")
    if not isinstance(names, list) or not names:
        raise DatasetError(f"cifar10: {folder / 'batches.meta'} lacks 'label_names'")
    return [str(n) for n in names]


# --- IDX (Fashion-MNIST) --------------------------------------------------------------------


def find_idx(folder: Path, stem: str) -> Path:
    """``folder/stem`` or, failing that, ``folder/stem.gz``."""
    plain = folder / stem
    return plain if plain.is_file() else folder / f"{stem}.gz"


def read_idx(path: Path) -> np.ndarray:
    """A uint8 array from an IDX file (``.gz`` or not), as used by (Fashion-)MNIST."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    # Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then one
    # big-endian int32 per dimension.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise DatasetError(
            f"{path} holds {len(raw) - offset} bytes of data for shape {shape}; it is truncated"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


# --- Omniglot -------------------------------------------------------------------------------


def list_omniglot(folder: Path) -> list[tuple[str, str, Path]]:
    """``(alphabet, character, png path)`` for every drawing, sorted (file systems do not)."""
    found = []
    for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
            for png in sorted(character.glob("*.png")):
                found.append((alphabet.name, character.name, png))
    if not found:
        raise DatasetError(
            f"omniglot: no drawings in {folder}; expected <Alphabet>/<character>/*.png folders"
        )
    return found


# --- Images --------------------------------------------------------------------------------


def load_images(paths: Sequence[Path], convert: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """``convert`` applied to every image, stacked; decoding runs on a few threads.

    PIL releases the GIL while decoding, so threads help without a process pool's start-up.
    """

    def one(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as img:
                return convert(img)
        except OSError as exc:
            raise DatasetError(f"cannot read image {path}: {exc}") from None

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return np.stack(list(pool.map(one, paths)))
