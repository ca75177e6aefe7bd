"""Loaders for dense scene-understanding data on disk: NYU v2 and Cityscapes.

Nothing is downloaded; point ``root`` at your copy. Images are resized to ``size``
(bilinear), labels and depth with nearest neighbour, so a search on a CPU can use small
inputs.

NYU v2, two layouts (found automatically):

- the common preprocessed layout (MTAN, LibMTL): ``root/{train,val}/{image,label,depth,normal}/
  <i>.npy`` with ``image (H, W, 3)``, ``label (H, W)`` (13 classes, -1 unlabelled),
  ``depth (H, W, 1)``, ``normal (H, W, 3)``; ``val`` is the test split, and the validation
  split is carved out of ``train``;
- the labelled ``.mat`` file (``nyu_depth_v2_labeled.mat``): ``images``, ``labels`` (0 is
  unlabelled, so class ``k`` becomes ``k - 1``) and ``depths``; no normals. MATLAB v7.3 files
  (the official one) need ``h5py``; v5 files are read with scipy. Splits are random.

Cityscapes, the official layout: ``root/leftImg8bit/{train,val}/<city>/<id>_leftImg8bit.png``
with ``root/gtFine/{split}/<city>/<id>_gtFine_labelIds.png`` (mapped to the 19 training
classes, others 255) and, if present, ``root/disparity/{split}/<city>/<id>_disparity.png``
(task ``depth`` holds the disparity ``(p - 1) / 256``, as in AdaShare and MTAN; 0 is
invalid). ``val`` is the test split.

Example:
    >>> splits = load_nyuv2(root="data/nyuv2", size=[64, 64])  # doctest: +SKIP
    >>> [t.kind for t in splits.tasks]  # doctest: +SKIP
    ['segmentation', 'depth', 'normals']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset, split_indices
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.kinds import TaskSpec

from ._common import check_fraction, check_int, check_seed

__all__ = ["load_nyuv2", "load_cityscapes", "CITYSCAPES_TRAIN_IDS", "NYU_CLASSES"]

NYU_CLASSES = 13
IGNORE = 255
# Cityscapes labelIds -> trainIds (cityscapesScripts' labels.py); every other id is ignored.
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def _size(name: str, size: Any) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise DatasetError(f"{name}: size={size!r} must be [height, width], e.g. size=[64, 128]")
    return check_int(name, "size[0]", size[0], minimum=8), check_int(name, "size[1]", size[1], minimum=8)


def _resize(a: np.ndarray, size: tuple[int, int], *, nearest: bool) -> np.ndarray:
    """``(N, C, H, W)`` resized to ``size``."""
    if tuple(a.shape[-2:]) == size:
        return a
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    mode = "nearest" if nearest else "bilinear"
    kwargs = {} if nearest else {"align_corners": False}
    return F.interpolate(t, size=size, mode=mode, **kwargs).numpy()


def _specs(tasks: Sequence[str], num_classes: int, size: tuple[int, int], head: str) -> list[TaskSpec]:
    options = {"size": list(size), "head": head}
    make = {
        "segment": lambda: TaskSpec("segment", kind="segmentation", num_classes=num_classes,
                                    options={**options, "ignore_index": IGNORE}),
        "depth": lambda: TaskSpec("depth", kind="depth", options=dict(options)),
        "normals": lambda: TaskSpec("normals", kind="normals", options=dict(options)),
    }
    return [make[t]() for t in tasks]


def _check_tasks(name: str, tasks: Any, available: Sequence[str]) -> list[str]:
    tasks = list(available) if tasks is None else list(tasks)
    bad = [t for t in tasks if t not in available]
    if bad or not tasks:
        raise DatasetError(f"{name}: tasks={tasks!r}; this copy has {list(available)}")
    return tasks


def _splits(
    name: str,
    arrays: dict[str, np.ndarray],
    test: dict[str, np.ndarray] | None,
    specs: list[TaskSpec],
    *,
    seed: int,
    val_fraction: float,
    info: dict[str, Any],
    kwargs: dict[str, Any],
) -> DatasetSplits:
    tasks = [s.name for s in specs]
    n = len(arrays["image"])
    if test is None:  # no official test split: a random one of the same size as validation
        train, val, test_rows = split_indices(n, val_fraction=val_fraction, test_fraction=val_fraction, seed=seed)
        test = {k: v[test_rows] for k, v in arrays.items()}
    else:
        order = np.random.default_rng(seed).permutation(n)
        n_val = max(1, int(round(n * val_fraction)))
        train, val = order[n_val:], order[:n_val]

    def part(src: dict[str, np.ndarray], rows: Any = slice(None)) -> MultiTaskDataset:
        return MultiTaskDataset(src["image"][rows], {t: src[t][rows] for t in tasks}, specs)

    return DatasetSplits(name=name, train=part(arrays, train), val=part(arrays, val), test=part(test),
                         tasks=specs, info=info, kwargs=kwargs)


# ------------------------------------------------------------------------------------ NYU v2
def _nyu_npy(folder: Path, size: tuple[int, int], limit: int | None) -> dict[str, np.ndarray]:
    names = sorted((folder / "image").glob("*.npy"), key=lambda p: (len(p.stem), p.stem))[:limit]
    if not names:
        raise DatasetError(f"nyuv2: no image/*.npy files in {folder}")
    out: dict[str, list[np.ndarray]] = {"image": [], "segment": [], "depth": [], "normals": []}
    for p in names:
        out["image"].append(np.moveaxis(np.load(p, allow_pickle=False), -1, 0))
        out["segment"].append(np.load(folder / "label" / p.name, allow_pickle=False)[None])
        out["depth"].append(np.moveaxis(np.atleast_3d(np.load(folder / "depth" / p.name, allow_pickle=False)), -1, 0))
        out["normals"].append(np.moveaxis(np.load(folder / "normal" / p.name, allow_pickle=False), -1, 0))
    arrays = {k: np.stack(v).astype(np.float32) for k, v in out.items()}
    seg = _resize(arrays["segment"], size, nearest=True)[:, 0]
    return {
        "image": _resize(arrays["image"], size, nearest=False),
        "segment": np.where(seg < 0, IGNORE, seg).astype(np.int64),
        "depth": _resize(arrays["depth"], size, nearest=True),
        "normals": _resize(arrays["normals"], size, nearest=True),
    }


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file: the signature sits at byte 0 or, after a user block
    (MATLAB v7.3 writes a 512-byte one holding its text header), at 512, 1024, 2048, ..."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            f.seek(offset)
            head = f.read(len(HDF5_SIGNATURE))
            if head == HDF5_SIGNATURE:
                return True
            if len(head) < len(HDF5_SIGNATURE):
                return False
            offset = 512 if offset == 0 else offset * 2


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    """``images (H, W, 3, N)``, ``labels (H, W, N)``, ``depths (H, W, N)`` as MATLAB sees them."""
    names = ("images", "labels", "depths")
    if not _is_hdf5(path):
        import scipy.io

        try:
            mat = scipy.io.loadmat(path, variable_names=list(names))
        except (ValueError, NotImplementedError) as exc:
            raise DatasetError(f"nyuv2: {path} cannot be read as a MATLAB file: {exc}") from None
        missing = [k for k in names if k not in mat]
        if missing:
            raise DatasetError(f"nyuv2: {path} has no variable {missing[0]!r}; pass the labelled NYU v2 .mat")
        return {k: np.asarray(mat[k]) for k in names}
    try:
        import h5py
    except ImportError:
        raise DatasetError(
            f"nyuv2: {path} is a MATLAB v7.3 (HDF5) file; install h5py (pip install h5py, or "
            "pip install 'mtlsearch[nyu]') or use the preprocessed .npy layout"
        ) from None
    with h5py.File(path, "r") as f:
        missing = [k for k in names if k not in f]
        if missing:
            raise DatasetError(f"nyuv2: {path} has no variable {missing[0]!r}; pass the labelled NYU v2 .mat")
        # MATLAB writes column-major arrays, so h5py sees every axis reversed: images
        # (N, 3, W, H), labels/depths (N, W, H). Reversing them gives MATLAB's view back.
        return {k: np.asarray(f[k]).transpose(*reversed(range(f[k].ndim))) for k in names}


def _nyu_mat(path: Path, size: tuple[int, int], limit: int | None) -> dict[str, np.ndarray]:
    mat = _read_mat(path)
    images = np.moveaxis(mat["images"], -1, 0)[:limit]  # (H, W, 3, N) -> (N, H, W, 3)
    labels = np.moveaxis(mat["labels"], -1, 0)[:limit].astype(np.int64)
    depths = np.moveaxis(mat["depths"], -1, 0)[:limit].astype(np.float32)
    image = np.moveaxis(images, -1, 1).astype(np.float32)
    if images.dtype == np.uint8:
        image = image / 255.0
    seg = _resize(labels[:, None].astype(np.float32), size, nearest=True)[:, 0].astype(np.int64)
    return {
        "image": _resize(image, size, nearest=False),
        "segment": np.where(seg == 0, IGNORE, seg - 1),
        "depth": _resize(depths[:, None], size, nearest=True),
    }


def load_nyuv2(
    *,
    root: str | Path,
    seed: int = 0,
    size: Sequence[int] | int = (64, 64),
    tasks: list[str] | None = None,
    head: str = "aspp",
    max_samples: int | None = None,
    val_fraction: float = 0.1,
) -> DatasetSplits:
    """NYU v2 from the preprocessed ``.npy`` folders or the labelled ``.mat`` file.

    Args:
        root: The folder holding ``train/`` and ``val/`` (``.npy`` layout), or the ``.mat``
            file (or a folder holding ``nyu_depth_v2_labeled.mat``).
        seed: Seeds the validation (and, for ``.mat``, test) split.
        size: ``[height, width]`` the maps are resized to.
        tasks: Subset of ``segment``, ``depth``, ``normals`` (``.mat``: no normals).
        head: Dense head of every task (``"aspp"`` or ``"ppm"``).
        max_samples: Read at most this many samples per split folder (quick runs).
        val_fraction: Share of the training samples held out for validation.

    Raises:
        DatasetError: No data found, a ``.mat`` file without the labelled variables, bad options.
    """
    name = "nyuv2"
    seed, hw = check_seed(name, seed), _size(name, size)
    limit = None if max_samples is None else check_int(name, "max_samples", max_samples)
    val_fraction = check_fraction(name, "val_fraction", val_fraction)
    root = Path(root)
    mat = root if root.suffix == ".mat" else root / "nyu_depth_v2_labeled.mat"
    if (root / "train" / "image").is_dir():
        train = _nyu_npy(root / "train", hw, limit)
        test = _nyu_npy(root / "val", hw, limit) if (root / "val" / "image").is_dir() else None
        num_classes, layout = NYU_CLASSES, "npy"
    elif mat.is_file():
        train, test, layout = _nyu_mat(mat, hw, limit), None, "mat"
        present = train["segment"][train["segment"] != IGNORE]
        num_classes = max(2, int(present.max()) + 1 if present.size else 2)
    else:
        raise DatasetError(
            f"nyuv2: found neither {root}/train/image/*.npy nor {mat}; pass root= the "
            "preprocessed NYU v2 folder or the labelled .mat file"
        )
    available = [t for t in ("segment", "depth", "normals") if t in train]
    chosen = _check_tasks(name, tasks, available)
    specs = _specs(chosen, num_classes, hw, head)
    return _splits(name, train, test, specs, seed=seed, val_fraction=val_fraction,
                   info={"layout": layout, "num_classes": num_classes},
                   kwargs={"root": str(root), "seed": seed, "size": list(hw), "tasks": chosen,
                           "head": head, "max_samples": limit, "val_fraction": val_fraction})


# -------------------------------------------------------------------------------- Cityscapes
def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _cityscapes_split(root: Path, split: str, size: tuple[int, int], limit: int | None,
                      with_depth: bool) -> dict[str, np.ndarray]:
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))[:limit]
    if not images:
        raise DatasetError(f"cityscapes: no leftImg8bit/{split}/<city>/*_leftImg8bit.png under {root}")
    lut = np.full(256, IGNORE, dtype=np.int64)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        lut[label_id] = train_id
    image, seg, depth = [], [], []
    for p in images:
        stem, city = p.name[: -len("_leftImg8bit.png")], p.parent.name
        gt = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        if not gt.is_file():
            raise DatasetError(f"cityscapes: {p.name} has no label file {gt}")
        image.append(np.moveaxis(_read_png(p)[..., :3], -1, 0).astype(np.float32) / 255.0)
        seg.append(lut[_read_png(gt).astype(np.int64)][None].astype(np.float32))
        if with_depth:
            disp = _read_png(root / "disparity" / split / city / f"{stem}_disparity.png").astype(np.float32)
            depth.append(np.where(disp > 0, (disp - 1.0) / 256.0, 0.0)[None].astype(np.float32))
    out = {
        "image": _resize(np.stack(image), size, nearest=False),
        "segment": _resize(np.stack(seg), size, nearest=True)[:, 0].astype(np.int64),
    }
    if with_depth:
        out["depth"] = _resize(np.stack(depth), size, nearest=True)
    return out


def load_cityscapes(
    *,
    root: str | Path,
    seed: int = 0,
    size: Sequence[int] | int = (64, 128),
    tasks: list[str] | None = None,
    head: str = "aspp",
    max_samples: int | None = None,
    val_fraction: float = 0.1,
) -> DatasetSplits:
    """Cityscapes (official folders): 19-class segmentation and, with ``disparity/``, depth.

    Args:
        root: The folder holding ``leftImg8bit/``, ``gtFine/`` and optionally ``disparity/``.
        seed: Seeds the validation split (carved out of ``train``; ``val`` is the test split).
        size: ``[height, width]`` the maps are resized to.
        tasks: Subset of ``segment`` and ``depth``.
        head: Dense head of every task (``"aspp"`` or ``"ppm"``).
        max_samples: Read at most this many images per split.
        val_fraction: Share of the training images held out for validation.

    Raises:
        DatasetError: Missing folders or label files, bad options.
    """
    name = "cityscapes"
    seed, hw = check_seed(name, seed), _size(name, size)
    limit = None if max_samples is None else check_int(name, "max_samples", max_samples)
    val_fraction = check_fraction(name, "val_fraction", val_fraction)
    root = Path(root)
    if not (root / "leftImg8bit").is_dir():
        raise DatasetError(f"cityscapes: {root} has no leftImg8bit/ folder; pass root= the Cityscapes folder")
    available = ["segment"] + (["depth"] if (root / "disparity").is_dir() else [])
    chosen = _check_tasks(name, tasks, available)
    with_depth = "depth" in chosen
    train = _cityscapes_split(root, "train", hw, limit, with_depth)
    test = _cityscapes_split(root, "val", hw, limit, with_depth)
    specs = _specs(chosen, len(set(CITYSCAPES_TRAIN_IDS.values())), hw, head)
    return _splits(name, train, test, specs, seed=seed, val_fraction=val_fraction,
                   info={"num_classes": 19},
                   kwargs={"root": str(root), "seed": seed, "size": list(hw), "tasks": chosen,
                           "head": head, "max_samples": limit, "val_fraction": val_fraction})
