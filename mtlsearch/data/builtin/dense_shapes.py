"""``dense_shapes``: generated scenes for dense tasks (segmentation, depth, normals, edges).

Nothing is downloaded. Each image is a layered scene: a textured, tilted background plane
(depth 4 to 7) and one to ``max_shapes`` objects in front of it (depth 1 to 3.5), drawn with a
z-buffer so nearer surfaces occlude farther ones. Objects are spheres, tilted boxes and
triangles, each with a random colour, stripes and Lambertian shading, so shape is visible from
appearance. The labels come from the geometry:

- ``segment``: the class of the front surface (0 background, 1 sphere, 2 box, 3 triangle);
  with ``ignore_boundary`` a one-pixel band around objects carries the ignore label 255, as
  in PASCAL VOC;
- ``depth``: the z-buffer; a ``missing_depth`` share of pixels, in rectangular holes like a
  depth sensor's, is 0 (invalid);
- ``normals``: unit surface normals (sphere: radial; plane and boxes: from their tilt);
- ``edges``: 1 on occlusion and class boundaries, 0 elsewhere (about 12 % of the pixels at
  32x32, 6 % at 64x64); trained with the class-balanced L1 loss (``options["balance"] = "hed"``) unless
  ``edge_balance="none"``, since plain L1 is minimised by predicting no edges at all.

Example:
    >>> from mtlsearch.data.builtin.dense_shapes import load_dense_shapes
    >>> s = load_dense_shapes(n_samples=40, size=16)
    >>> s.input_shape, [t.kind for t in s.tasks]
    ((3, 16, 16), ['segmentation', 'depth', 'normals', 'edges'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtlsearch.data.dataset import DatasetSplits, MultiTaskDataset, split_indices
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.dense.kinds import EDGE_BALANCES
from mtlsearch.tasks.kinds import TaskSpec

from ._common import check_fractions, check_int, check_seed

__all__ = ["load_dense_shapes", "render_scene", "CLASSES", "TASKS"]

CLASSES = ("background", "sphere", "box", "triangle")
TASKS = ("segment", "depth", "normals", "edges")
IGNORE = 255


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=0, keepdims=True)


def _texture(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Two random gratings in [0, 1]."""
    out = np.zeros_like(xx)
    for _ in range(2):
        angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(4, 14), rng.uniform(0, 2 * np.pi)
        out += 0.5 + 0.5 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) * np.pi + phase)
    return out / 2


def render_scene(
    rng: np.random.Generator, size: int, max_shapes: int, missing_depth: float, ignore_boundary: bool
) -> dict[str, np.ndarray]:
    """One scene: ``image (3,H,W)``, ``segment (H,W)``, ``depth (1,H,W)``, ``normals (3,H,W)``,
    ``edges (1,H,W)``.

    Example:
        >>> out = render_scene(np.random.default_rng(0), 16, 2, 0.0, False)
        >>> out["image"].shape, int(out["segment"].max()) <= 3
        ((3, 16, 16), True)
    """
    h = w = size
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    # Background plane z = d0 + gx * x + gy * y (the top of the image is farther, like a floor).
    gx, gy = rng.uniform(-0.8, 0.8), rng.uniform(-2.0, -0.5)
    depth = 5.5 + gx * (xx - 0.5) + gy * (yy - 0.5)
    normals = np.broadcast_to(_unit(np.array([-gx, -gy, 1.0]))[:, None, None], (3, h, w)).copy()
    segment = np.zeros((h, w), dtype=np.int64)
    base = rng.uniform(0.2, 0.8, size=3)
    albedo = base[:, None, None] * (0.6 + 0.4 * _texture(rng, xx, yy))[None]

    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(1, len(CLASSES)))
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.12, 0.28)
        d = rng.uniform(1.0, 3.5)
        dx, dy = xx - cx, yy - cy
        if cls == 1:  # sphere
            rho2 = (dx**2 + dy**2) / r**2
            mask = rho2 < 1
            nz = np.sqrt(np.clip(1 - rho2, 0, 1))
            z = d - r * nz
            n = np.stack([dx / r, dy / r, nz])
        else:
            tx, ty = rng.uniform(-1.5, 1.5, size=2)
            z = d + tx * dx + ty * dy
            n = np.broadcast_to(_unit(np.array([-tx, -ty, 1.0]))[:, None, None], (3, h, w))
            if cls == 2:  # box
                a, b = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.7, 1.0)
                mask = (np.abs(dx) < a) & (np.abs(dy) < b)
            else:  # triangle: three vertices around the centre
                angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
                vx, vy = cx + 1.2 * r * np.cos(angles), cy + 1.2 * r * np.sin(angles)
                sides = [
                    (vx[(i + 1) % 3] - vx[i]) * (yy - vy[i]) - (vy[(i + 1) % 3] - vy[i]) * (xx - vx[i])
                    for i in range(3)
                ]
                mask = np.all([s > 0 for s in sides], axis=0) | np.all([s < 0 for s in sides], axis=0)
        front = mask & (z < depth)
        depth = np.where(front, z, depth)
        normals = np.where(front[None], n, normals)
        segment = np.where(front, cls, segment)
        colour = rng.uniform(0.1, 1.0, size=3)
        stripes = 0.75 + 0.25 * np.sign(np.sin(rng.uniform(10, 25) * (xx + yy) * np.pi))
        albedo = np.where(front[None], colour[:, None, None] * stripes[None], albedo)

    light = _unit(np.array([-0.4, -0.5, 1.0]))
    shading = 0.35 + 0.65 * np.clip(np.tensordot(light, normals, axes=1), 0, 1)
    image = albedo * shading[None] + rng.normal(0, 0.03, size=(3, h, w))

    boundary = np.zeros((h, w), dtype=bool)
    for axis in (0, 1):
        diff = np.diff(segment, axis=axis) != 0
        diff |= np.abs(np.diff(depth, axis=axis)) > 0.3
        pad = [(0, 0), (0, 0)]
        pad[axis] = (0, 1)
        boundary |= np.pad(diff, pad)
        pad[axis] = (1, 0)
        boundary |= np.pad(diff, pad)
    edges = boundary.astype(np.float32)[None]

    label = segment.copy()
    if ignore_boundary:
        label[boundary & (segment > 0)] = IGNORE
    measured = depth.copy()
    holes = 0
    while holes < missing_depth * h * w:
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        hh, ww = rng.integers(1, max(2, h // 4)), rng.integers(1, max(2, w // 4))
        measured[y0 : y0 + hh, x0 : x0 + ww] = 0.0
        holes = int((measured == 0).sum())
    return {
        "image": image.astype(np.float32),
        "segment": label,
        "depth": measured.astype(np.float32)[None],
        "normals": normals.astype(np.float32),
        "edges": edges,
    }


def load_dense_shapes(
    *,
    seed: int = 0,
    n_samples: int = 600,
    size: int = 32,
    max_shapes: int = 3,
    tasks: list[str] | None = None,
    head: str = "aspp",
    head_channels: int | None = None,
    missing_depth: float = 0.05,
    ignore_boundary: bool = True,
    edge_balance: str = "hed",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> DatasetSplits:
    """Generated scenes with ``segment``, ``depth``, ``normals`` and ``edges`` tasks.

    Args:
        seed: Seeds the scenes and the split.
        n_samples: Number of scenes before splitting.
        size: Height and width of the square images (at least 8).
        max_shapes: Most objects per scene (each has 1 to ``max_shapes``).
        tasks: Subset of ``["segment", "depth", "normals", "edges"]`` (default all).
        head: Dense head of every task, ``"aspp"`` or ``"ppm"`` (written into the specs).
        head_channels: Hidden channels of the heads (default: half the feature channels).
        missing_depth: Share of pixels, in rectangular holes, whose depth is missing.
        ignore_boundary: Give the pixels along object boundaries the ignore label 255.
        edge_balance: Weighting of the ``edges`` loss (its spec's ``options["balance"]``):
            ``"hed"`` (class-balanced, the default) or ``"none"`` (plain L1).
        val_fraction: Share of scenes held out for validation.
        test_fraction: Share held out for testing.

    Returns:
        The splits; inputs ``(3, size, size)``; ``info["classes"]`` names the classes.

    Raises:
        DatasetError: An option out of range, an unknown task.

    Example:
        >>> s = load_dense_shapes(n_samples=30, size=16, tasks=["segment", "depth"])
        >>> s.train.targets["segment"].shape[1:], s.tasks[0].options["size"]
        (torch.Size([16, 16]), [16, 16])
    """
    name = "dense_shapes"
    seed = check_seed(name, seed)
    n_samples = check_int(name, "n_samples", n_samples, minimum=10)
    size = check_int(name, "size", size, minimum=8)
    max_shapes = check_int(name, "max_shapes", max_shapes, maximum=10)
    tasks = list(TASKS) if tasks is None else list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise DatasetError(f"{name}: tasks={tasks!r}; choose a non-empty subset of {list(TASKS)}")
    if head not in ("aspp", "ppm"):
        raise DatasetError(f"{name}: head={head!r}; use 'aspp' or 'ppm'")
    if head_channels is not None:
        head_channels = check_int(name, "head_channels", head_channels)
    if isinstance(missing_depth, bool) or not isinstance(missing_depth, (int, float)) or not 0 <= missing_depth < 0.5:
        raise DatasetError(f"{name}: missing_depth={missing_depth!r} must be a number in [0, 0.5)")
    if edge_balance not in EDGE_BALANCES:
        raise DatasetError(f"{name}: edge_balance={edge_balance!r}; use one of {list(EDGE_BALANCES)}")
    val_fraction, test_fraction = check_fractions(name, val_fraction, test_fraction)

    rng = np.random.default_rng(seed)
    scenes = [render_scene(rng, size, max_shapes, float(missing_depth), bool(ignore_boundary)) for _ in range(n_samples)]
    arrays = {k: np.stack([s[k] for s in scenes]) for k in scenes[0]}
    options: dict[str, Any] = {"size": [size, size], "head": head}
    if head_channels is not None:
        options["head_channels"] = head_channels
    kinds = {
        "segment": TaskSpec("segment", kind="segmentation", num_classes=len(CLASSES),
                            options={**options, "ignore_index": IGNORE}),
        "depth": TaskSpec("depth", kind="depth", options=dict(options)),
        "normals": TaskSpec("normals", kind="normals", options=dict(options)),
        "edges": TaskSpec("edges", kind="edges", options={**options, "balance": edge_balance}),
    }
    specs = [kinds[t] for t in tasks]
    idx = split_indices(n_samples, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    parts = {
        split: MultiTaskDataset(arrays["image"][rows], {t: arrays[t][rows] for t in tasks}, specs)
        for split, rows in zip(("train", "val", "test"), idx, strict=True)
    }
    return DatasetSplits(
        name=name,
        **parts,
        tasks=specs,
        info={"classes": list(CLASSES), "ignore_index": IGNORE},
        kwargs={
            "seed": seed,
            "n_samples": n_samples,
            "size": size,
            "max_shapes": max_shapes,
            "tasks": tasks,
            "head": head,
            "head_channels": head_channels,
            "missing_depth": float(missing_depth),
            "ignore_boundary": bool(ignore_boundary),
            "edge_balance": edge_balance,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
        },
    )
