"""Task affinity scores (section 3.3 of the paper) and the tensor that holds them.

For a task ``t``, the tournament matrix ``W_t`` over encoders has ``w_ab``: the fraction of
held-out samples for which encoder ``a`` gives task ``t`` a lower loss than encoder ``b`` (ties
count one half). Its principal eigenvector, scaled so that its largest entry is 1, is ``t``'s
performance vector; stacking them gives ``P`` (row: task, column: encoder) and the affinity at
one depth is ``A = (P + P^T) / 2``. Over all depths: an ``N x N x L`` tensor, stored here as
``(L, N, N)``.

Example:
    >>> import numpy as np
    >>> losses = np.array([[0.1, 0.2, 0.3], [0.5, 0.1, 0.9]])  # 2 encoders x 3 samples
    >>> tournament_matrix(losses).tolist()
    [[0.5, 0.6666666666666666], [0.3333333333333333, 0.5]]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtlsearch.errors import MTLSearchError
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind

__all__ = [
    "AffinityTensor",
    "tournament_matrix",
    "performance_vector",
    "affinity_matrix",
    "affinity_from_losses",
    "per_sample_losses",
]

_FORMAT = "mtlsearch.affinity_tensor"


def tournament_matrix(losses: Any) -> np.ndarray:
    """``W[a, b]``: fraction of samples where encoder ``a``'s loss is below ``b``'s (ties 1/2).

    Args:
        losses: ``(encoders, samples)`` held-out losses of one task.
    """
    arr = np.asarray(losses, dtype=float)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise MTLSearchError(f"losses must have shape (encoders, samples > 0), got {arr.shape}")
    lower = (arr[:, None, :] < arr[None, :, :]).mean(axis=2)
    ties = (arr[:, None, :] == arr[None, :, :]).mean(axis=2)
    return lower + 0.5 * ties


def performance_vector(tournament: Any) -> np.ndarray:
    """The principal eigenvector of a tournament matrix, positive, scaled to a maximum of 1."""
    w = np.asarray(tournament, dtype=float)
    values, vectors = np.linalg.eig(w)
    v = np.real(vectors[:, int(np.argmax(np.real(values)))])
    v = v * np.sign(v.sum()) if v.sum() != 0 else np.abs(v)
    v = np.clip(v, 0.0, None)  # Perron vector of a non-negative matrix: round-off only
    top = v.max()
    if top <= 0:
        raise MTLSearchError("the tournament matrix has no positive principal eigenvector")
    return v / top


def affinity_matrix(performance: Any) -> np.ndarray:
    """``A = (P + P^T) / 2`` from the stacked performance vectors ``P[task, encoder]``."""
    p = np.asarray(performance, dtype=float)
    return (p + p.T) / 2.0


def affinity_from_losses(losses: Any) -> np.ndarray:
    """The ``(depths, N, N)`` affinity from ``(depths, task, encoder, samples)`` losses.

    Samples whose loss is missing (NaN, an unlabelled sample) for some encoder are left out
    of that task's tournament.
    """
    arr = np.asarray(losses, dtype=float)
    if arr.ndim != 4 or arr.shape[1] != arr.shape[2]:
        raise MTLSearchError(
            f"losses must have shape (depths, tasks, encoders = tasks, samples), got {arr.shape}"
        )
    out = np.empty(arr.shape[:3])
    for d in range(arr.shape[0]):
        perf = np.empty(arr.shape[1:3])
        for t in range(arr.shape[1]):
            task_losses = arr[d, t]
            keep = np.isfinite(task_losses).all(axis=0)
            if not keep.any():
                raise MTLSearchError(f"task {t} has no held-out sample with a loss at depth {d}")
            perf[t] = performance_vector(tournament_matrix(task_losses[:, keep]))
        out[d] = affinity_matrix(perf)
    return out


def per_sample_losses(spec: TaskSpec, output: Tensor, target: Tensor) -> Tensor:
    """One loss per sample (NaN where the label is missing), as the task kind defines it."""
    output, n = output.float(), output.shape[0]
    if spec.kind == "binary":
        out = output.reshape(n)
        valid = ~torch.isnan(target)
        loss = F.binary_cross_entropy_with_logits(out, torch.nan_to_num(target), reduction="none")
        return torch.where(valid, loss, torch.full_like(loss, float("nan")))
    if spec.kind == "multiclass":
        loss = F.cross_entropy(output, target.clamp_min(0), reduction="none")
        return torch.where(target >= 0, loss, torch.full_like(loss, float("nan")))
    if spec.kind == "regression":
        err = (output.reshape(n, -1) - target.reshape(n, -1).float()).pow(2).mean(dim=1)
        return err  # a missing (NaN) label gives NaN already
    kind = get_task_kind(spec.kind)  # any other kind: its own loss, one sample at a time
    return torch.stack([kind.loss(spec, output[i : i + 1], target[i : i + 1]) for i in range(n)])


@dataclass
class AffinityTensor:
    """Task affinities per depth: ``values[l, i, j]`` after block ``depths[l]``.

    Attributes:
        tasks: Task names (rows and columns).
        values: ``(L, N, N)`` symmetric affinities; higher means more related.
        estimator: How it was measured (``full``, ``subset``, ``rsa``, or your own label).
        depths: Block index after which each slice was measured.
        meta: JSON-ready facts (wall time per stage, epochs, sample counts).
        losses: Optional ``(L, N, N, samples)`` held-out losses it came from.

    Example:
        >>> t = AffinityTensor(["a", "b"], np.ones((1, 2, 2)), "full")
        >>> AffinityTensor.from_dict(t.to_dict()).values.shape
        (1, 2, 2)
    """

    tasks: list[str]
    values: np.ndarray
    estimator: str
    depths: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    losses: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=float)
        if self.values.ndim != 3 or self.values.shape[1:] != (len(self.tasks), len(self.tasks)):
            raise MTLSearchError(
                f"affinity values must have shape (depths, {len(self.tasks)}, {len(self.tasks)}) "
                f"for tasks {self.tasks}, got {self.values.shape}"
            )
        if not self.depths:
            self.depths = list(range(self.values.shape[0]))
        if len(self.depths) != self.values.shape[0]:
            raise MTLSearchError(f"{len(self.depths)} depths for {self.values.shape[0]} slices")
        if self.losses is not None:
            self.losses = np.asarray(self.losses, dtype=float)

    @property
    def num_depths(self) -> int:
        return int(self.values.shape[0])

    def check_fits(self, tasks: Sequence[str], num_blocks: int) -> None:
        """Raise a clear error when this tensor was measured for other tasks or blocks."""
        if list(tasks) != self.tasks:
            raise MTLSearchError(
                f"the affinity tensor is for tasks {self.tasks}, the context has {list(tasks)}; "
                "recompute it for this dataset"
            )
        if self.num_depths != num_blocks:
            raise MTLSearchError(
                f"the affinity tensor has {self.num_depths} depths but the space has "
                f"{num_blocks} blocks; measure one depth per block"
            )

    def to_dict(self, *, with_losses: bool = True) -> dict[str, Any]:
        """JSON-ready dictionary (lists of floats; missing losses as ``None``)."""
        data = {
            "format": _FORMAT,
            "tasks": list(self.tasks),
            "estimator": self.estimator,
            "depths": list(self.depths),
            "values": self.values.tolist(),
            "meta": dict(self.meta),
        }
        if with_losses and self.losses is not None:
            finite = np.isfinite(self.losses)
            data["losses"] = np.where(finite, self.losses.astype(object), None).tolist()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> AffinityTensor:
        """Rebuild from :meth:`to_dict`'s output, checking the format."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise MTLSearchError(f"not an affinity tensor: expected an object with format {_FORMAT!r}")
        losses = data.get("losses")
        if losses is not None:
            losses = np.array(losses, dtype=float)  # None -> NaN
        return cls(
            tasks=list(data["tasks"]),
            values=np.array(data["values"], dtype=float),
            estimator=str(data.get("estimator", "unknown")),
            depths=list(data.get("depths") or []),
            meta=dict(data.get("meta") or {}),
            losses=losses,
        )

    def save(self, path: str | Path) -> Path:
        """Write ``.json`` or ``.npz`` (chosen by the suffix)."""
        path = Path(path)
        if path.suffix == ".json":
            path.write_text(json.dumps(self.to_dict()))
        elif path.suffix == ".npz":
            arrays: dict[str, Any] = {"values": self.values}
            if self.losses is not None:
                arrays["losses"] = self.losses
            header = {k: v for k, v in self.to_dict(with_losses=False).items() if k != "values"}
            np.savez(path, header=np.array(json.dumps(header)), **arrays)
        else:
            raise MTLSearchError(f"cannot save an affinity tensor as {path.name!r}; use .json or .npz")
        return path

    @classmethod
    def load(cls, path: str | Path) -> AffinityTensor:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise MTLSearchError(f"no affinity tensor file at {path}")
        if path.suffix == ".json":
            try:
                return cls.from_dict(json.loads(path.read_text()))
            except json.JSONDecodeError as exc:
                raise MTLSearchError(f"{path} is not valid JSON: {exc}") from None
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(str(npz["header"]))
                header["values"] = npz["values"]
                losses = npz["losses"] if "losses" in npz.files else None
            tensor = cls.from_dict({**header, "values": header["values"].tolist()})
            tensor.losses = losses
            return tensor
        raise MTLSearchError(f"cannot read an affinity tensor from {path.name!r}; use .json or .npz")

    def draw(self, path: str | Path | None = None, *, title: str | None = None) -> Any:
        """Heat map per depth (see :func:`~.plots.draw_affinity`)."""
        from .plots import draw_affinity

        return draw_affinity(self, path, title=title)
