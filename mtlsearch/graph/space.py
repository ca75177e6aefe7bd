"""Search spaces: the ordered blocks a sharing graph is built from, and the task heads.

A block is split in two so task routing can mask channels between them:
``forward(x, mask) = activation(pre_activation(x) * mask)``; ``pre_activation`` runs up to and
including the block's normalisation (and residual sum), ``activation`` is what follows.
``shortcut`` is what skipping the block means (identity, or a projection when shapes change).

Example (your own blocks in a few lines):
    >>> from torch import nn
    >>> space = from_modules(
    ...     [nn.Sequential(nn.Linear(8, 16), nn.ReLU()), nn.Sequential(nn.Linear(16, 16), nn.ReLU())],
    ...     input_shape=(8,),
    ... )
    >>> [b.channels for b in space.blocks]
    [16, 16]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mtlsearch.errors import SpaceError
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind

__all__ = [
    "Block",
    "ModuleBlock",
    "BlockSpec",
    "Cost",
    "SearchSpace",
    "from_modules",
    "count_macs",
]

SkipKind = Literal["identity", "projection", "none"]
HeadFactory = Callable[[TaskSpec, Sequence[int]], nn.Module]


class Block(nn.Module):
    """A search-space block: ``activation(pre_activation(x) * mask)``.

    Subclasses implement :meth:`pre_activation`; :meth:`activation` defaults to ReLU-free
    identity, and :meth:`shortcut` to the identity. Set :attr:`skip` to ``"projection"``
    when :meth:`shortcut` is a learned projection, or ``"none"`` when the block cannot be
    skipped.
    """

    skip: SkipKind = "identity"

    def pre_activation(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def activation(self, z: Tensor) -> Tensor:
        return z

    def shortcut(self, x: Tensor) -> Tensor:
        if self.skip == "none":
            raise SpaceError(f"{type(self).__name__} cannot be skipped")
        return x

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        z = self.pre_activation(x)
        if mask is not None:
            z = z * _broadcast_mask(mask, z)
        return self.activation(z)


def _broadcast_mask(mask: Tensor, z: Tensor) -> Tensor:
    """Shape a (C,) or (B, C) channel mask to multiply a (B, C, ...) activation."""
    mask = mask.to(z.dtype)
    extra = z.ndim - mask.ndim - (1 if mask.ndim == 1 else 0)
    return mask.reshape(*mask.shape, *([1] * extra))


class ModuleBlock(Block):
    """Wraps any ``nn.Module`` as a block; a mask, if any, multiplies its output."""

    def __init__(self, module: nn.Module, skip: SkipKind = "identity"):
        super().__init__()
        self.module = module
        self.skip = skip

    def pre_activation(self, x: Tensor) -> Tensor:
        return self.module(x)


@dataclass(frozen=True)
class BlockSpec:
    """Shape facts of block ``index``: per-sample input and output shapes, channel count,
    down-sampling steps above it, and what skipping it means."""

    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    downsamples: int
    skip: SkipKind

    @property
    def channels(self) -> int:
        return int(self.out_shape[0])


@dataclass(frozen=True)
class Cost:
    """Parameters and multiply-accumulates per sample of one module."""

    params: int
    macs: int


def count_macs(module: nn.Module, run: Callable[[], Any]) -> int:
    """Multiply-accumulates per sample of convolutions and linear layers while ``run()`` runs
    ``module`` on a batch of one."""
    total = 0

    def hook(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.modules.conv._ConvNd):
            kernel = math.prod(mod.kernel_size) * (mod.in_channels // mod.groups)
            total += output.numel() * kernel
        elif isinstance(mod, nn.Linear):
            total += output.numel() * mod.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class SearchSpace:
    """An ordered list of blocks (fresh weights per instantiation) plus head factories.

    Args:
        name: Registry name (exported with every architecture).
        input_shape: Shape of one input sample, e.g. ``(1, 12, 24)``.
        block_factories: One callable per block returning a fresh :class:`Block`.
        kwargs: The keyword arguments that rebuild this space from its registered factory.
        head_factories: ``{task kind: factory(spec, feature_shape)}`` overriding the kind's
            default head.
        description: One line for listings.
        keeps_weights: ``make_block`` returns a copy of the same initial weights every time
            (pretrained weights, or ``from_modules(..., keep_weights=True)``) instead of fresh
            ones: every branch of a graph starts from those weights.
        input_normalization: ``(mean, std)`` per input channel that the first block applies
            to its input (pretrained backbones), or None; recorded for exports.
    """

    def __init__(
        self,
        *,
        name: str,
        input_shape: Sequence[int],
        block_factories: Sequence[Callable[[], Block]],
        kwargs: dict[str, Any] | None = None,
        head_factories: dict[str, HeadFactory] | None = None,
        description: str = "",
        keeps_weights: bool = False,
        input_normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    ):
        if not block_factories:
            raise SpaceError(f"search space {name!r} has no blocks")
        self.name = name
        self.input_shape = tuple(int(s) for s in input_shape)
        self.kwargs = dict(kwargs or {})
        self.description = description
        self._block_factories = list(block_factories)
        self._head_factories = dict(head_factories or {})
        self.keeps_weights = bool(keeps_weights)
        self.input_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        if input_normalization is not None:
            mean, std = input_normalization
            self.input_normalization = (tuple(map(float, mean)), tuple(map(float, std)))

    @property
    def num_blocks(self) -> int:
        return len(self._block_factories)

    def spec(self) -> dict[str, Any]:
        """``{"name": ..., "kwargs": ...}``: what rebuilds this space from the registry."""
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    def make_block(self, index: int) -> Block:
        """A new instance of block ``index``: fresh weights, or with :attr:`keeps_weights` a
        copy of the space's initial (e.g. pretrained) weights."""
        if not 0 <= index < self.num_blocks:
            raise SpaceError(
                f"search space {self.name!r} has blocks 0..{self.num_blocks - 1}, not {index}"
            )
        return _as_block(self._block_factories[index]())

    def make_head(self, spec: TaskSpec) -> nn.Module:
        """A new head for ``spec`` on top of the last block's features."""
        factory = self._head_factories.get(spec.kind)
        feature_shape = self.blocks[-1].out_shape
        if factory is not None:
            return factory(spec, feature_shape)
        return get_task_kind(spec.kind).make_head(spec, feature_shape)

    @cached_property
    def blocks(self) -> list[BlockSpec]:
        """Shape facts of every block, found by running a zero input through fresh blocks."""
        specs, shape, downsamples = [], self.input_shape, 0
        # Probing draws fresh weights; fork the RNG so it never shifts the user's seeded run.
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            x = torch.zeros(2, *shape)
            for i in range(self.num_blocks):
                block = self.make_block(i).eval()
                try:
                    y = block(x)
                except Exception as exc:  # a user's blocks that do not chain
                    raise SpaceError(
                        f"block {i} of search space {self.name!r} fails on input of shape "
                        f"{tuple(x.shape[1:])}: {exc}"
                    ) from None
                out_shape = tuple(y.shape[1:])
                skip = block.skip
                if skip == "identity" and out_shape != tuple(x.shape[1:]):
                    skip = "none"
                specs.append(BlockSpec(i, tuple(x.shape[1:]), out_shape, downsamples, skip))
                if len(out_shape) > 1 and len(x.shape) > 2 and out_shape[1] < x.shape[2]:
                    downsamples += max(1, round(math.log2(x.shape[2] / out_shape[1])))
                x = y
        return specs

    def check_input(self, input_shape: Sequence[int]) -> None:
        """Raise :class:`SpaceError` when data of ``input_shape`` does not fit this space."""
        if tuple(input_shape) != self.input_shape:
            raise SpaceError(
                f"the dataset's inputs have shape {tuple(input_shape)} but search space "
                f"{self.name!r} was built for {self.input_shape}; create the space with "
                f"input_shape={tuple(input_shape)}"
            )

    def block_cost(self, index: int) -> Cost:
        """Parameters and MACs per sample of block ``index`` run normally."""
        return self._costs[index][0]

    def skip_cost(self, index: int) -> Cost:
        """Parameters and MACs per sample of skipping block ``index`` (its shortcut)."""
        return self._costs[index][1]

    def head_cost(self, spec: TaskSpec) -> Cost:
        x = torch.zeros(1, *self.blocks[-1].out_shape)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            head = self.make_head(spec).eval()
            macs = count_macs(head, lambda: head(x))
        return Cost(_params(head), macs)

    @cached_property
    def _costs(self) -> list[tuple[Cost, Cost]]:
        costs = []
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for spec in self.blocks:
                block = self.make_block(spec.index).eval()
                x = torch.zeros(1, *spec.in_shape)
                run_cost = Cost(_params(block), count_macs(block, lambda b=block, x=x: b(x)))
                if spec.skip == "projection":
                    skip_macs = count_macs(block, lambda b=block, x=x: b.shortcut(x))
                    shortcut = getattr(block, "projection", None)
                    skip_params = _params(shortcut) if isinstance(shortcut, nn.Module) else 0
                    skip_cost = Cost(skip_params, skip_macs)
                else:
                    skip_cost = Cost(0, 0)
                costs.append((run_cost, skip_cost))
        return costs

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, blocks={self.num_blocks}, input_shape={self.input_shape})"


def _fresh_copy(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module)
    for m in clone.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return clone


def _as_block(module: nn.Module) -> Block:
    return module if isinstance(module, Block) else ModuleBlock(module)


def from_modules(
    modules: Sequence[nn.Module | Callable[[], nn.Module]],
    *,
    input_shape: Sequence[int],
    name: str = "custom",
    head_factories: dict[str, HeadFactory] | None = None,
    keep_weights: bool = False,
) -> SearchSpace:
    """A search space from your own list of modules (or zero-argument factories).

    Modules are deep-copied with their parameters reset for every instantiation, so each block
    node of a graph gets fresh weights; with ``keep_weights=True`` they are deep-copied as they
    are, so every branch starts from the modules' weights (e.g. pretrained ones). A module
    whose output shape equals its input shape can be skipped (identity); others cannot.
    Custom spaces are not in the registry: exporting one records its name, and loading it
    needs the same modules again.

    Example:
        >>> lin = nn.Linear(4, 4)
        >>> kept = from_modules([lin], input_shape=(4,), keep_weights=True)
        >>> bool((kept.make_block(0).module.weight == lin.weight).all())
        True
    """
    if not isinstance(keep_weights, bool):
        raise SpaceError(f"keep_weights must be True or False, got {keep_weights!r}")
    copy_module = copy.deepcopy if keep_weights else _fresh_copy
    factories: list[Callable[[], Block]] = []
    for i, m in enumerate(modules):
        if isinstance(m, nn.Module):
            factories.append(lambda m=m: _as_block(copy_module(m)))
        elif callable(m):
            factories.append(lambda m=m: _as_block(m()))
        else:
            raise SpaceError(f"item {i} of modules is {type(m).__name__}, not an nn.Module")
    space = SearchSpace(
        name=name, input_shape=input_shape, block_factories=factories,
        head_factories=head_factories, keeps_weights=keep_weights,
    )
    space.blocks  # noqa: B018 - fail now, naming the block, if the modules do not chain
    return space
