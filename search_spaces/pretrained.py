"""Pretrained weights, freezing and input normalisation for the backbone search spaces.

Shared by ``resnet18``/``resnet34``, ``vgg16_bn``, ``dilated_resnet*`` and ``timm:<model>``:

- :func:`read_weights` reads a local weights file, never a download: ``.safetensors``, or
  ``.pth``/``.pt``/``.bin`` through ``torch.load(weights_only=True)`` (nothing is unpickled);
- :func:`check_block_weights` / :func:`load_block_weights` check and copy each block's share
  of a state dict, and a file that does not fit names the first few missing, unexpected and
  mis-shaped keys;
- :func:`freeze_block` turns a block's weights into buffers and its batch norms into
  :class:`~torchvision.ops.FrozenBatchNorm2d`: not trained, not in any optimizer, statistics
  fixed, so no strategy can switch them back on;
- :class:`NormalizedBlock` applies the backbone's input normalisation (ImageNet mean/std for
  torchvision weights) inside the first block, with the mean and std as buffers, so
  training, ``load()``, ``predict()`` and ONNX all see the same preprocessing.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from mtlsearch.graph.space import ModuleBlock
    >>> block = NormalizedBlock(ModuleBlock(nn.Identity()), (0.5,), (0.25,))
    >>> block(torch.ones(1, 1, 2, 2)).flatten().tolist()
    [2.0, 2.0, 2.0, 2.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.ops.misc import FrozenBatchNorm2d

from mtlsearch.errors import SpaceError
from mtlsearch.graph.space import Block

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WEIGHT_SUFFIXES",
    "BlockState",
    "NormalizedBlock",
    "InputNormalization",
    "backbone_options",
    "check_block_weights",
    "freeze_block",
    "frozen_count",
    "load_block_weights",
    "pretrained_factories",
    "read_weights",
    "resolve_normalization",
]

#: torchvision's ImageNet statistics (inputs in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")

#: One block's share of a weights file: ``{key in the block: (key in the file, tensor)}``.
BlockState = dict[str, tuple[str, Tensor]]


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a local weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``).

    ``.pth``/``.pt``/``.bin`` files are read with ``torch.load(weights_only=True)``; a
    checkpoint holding its weights under ``"state_dict"`` or ``"model"`` is unwrapped, and a
    ``"module."`` prefix (DataParallel) is stripped.

    Raises:
        SpaceError: A missing file, another suffix, a file that is not a state dict.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise SpaceError(
            f"weights file {str(file)!r} does not exist; pass the path of a local file "
            f"({', '.join(WEIGHT_SUFFIXES)}): nothing is downloaded"
        )
    suffix = file.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise SpaceError(
            f"weights file {str(file)!r} has suffix {suffix or '(none)'!r}; use one of "
            f"{list(WEIGHT_SUFFIXES)} (save a state dict with safetensors.torch.save_file or "
            "torch.save)"
        )
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(file), device="cpu")
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file, or one that needs unpickling of code
        raise SpaceError(f"weights file {str(file)!r} cannot be read as a state dict: {exc}") from None
    if isinstance(state, Mapping):
        for wrapper in ("state_dict", "model"):
            inner = state.get(wrapper)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                state = inner
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise SpaceError(
            f"weights file {str(file)!r} does not hold a state dict (names -> tensors); save "
            "model.state_dict(), not the model"
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def load_block_weights(
    blocks: Sequence[nn.Module], shares: Sequence[BlockState], *, source: str, hint: str,
    unused: Sequence[str] = (), expected: Sequence[Mapping[str, Tensor]] | None = None,
) -> None:
    """Copy ``shares[i]`` into ``blocks[i]`` after :func:`check_block_weights`."""
    check_block_weights(blocks, shares, source=source, hint=hint, unused=unused,
                        expected=expected)
    with torch.no_grad():
        for block, share in zip(blocks, shares, strict=True):
            block.load_state_dict({k: v for k, (_, v) in share.items()}, strict=expected is None)


def check_block_weights(
    blocks: Sequence[nn.Module], shares: Sequence[BlockState], *, source: str, hint: str,
    unused: Sequence[str] = (), expected: Sequence[Mapping[str, Tensor]] | None = None,
) -> None:
    """Refuse a file whose ``shares`` do not fit ``blocks``, naming a few keys of each kind.

    Args:
        blocks: The blocks, in order.
        shares: Each block's ``{block key: (file key, tensor)}``.
        source: The weights file (for messages).
        hint: How to build a space that fits the file (ends the message).
        unused: File keys no block takes (other than a classifier the heads replace).
        expected: The keys each block must receive, if not its whole state dict (a model
            whose classifier is dropped); the rest of the block keeps its weights.
    """
    missing: list[str] = []
    shapes: list[str] = []
    unexpected = list(unused)
    owns = expected if expected is not None else [b.state_dict() for b in blocks]
    where = (lambda i: f" (block {i})") if len(blocks) > 1 else (lambda i: "")
    for i, (own, share) in enumerate(zip(owns, shares, strict=True)):
        for key, tensor in own.items():
            if key not in share:
                missing.append(f"{key}{where(i)}")
            elif tuple(share[key][1].shape) != tuple(tensor.shape):
                file_key, value = share[key]
                shapes.append(
                    f"{file_key} is {tuple(value.shape)} in the file, {tuple(tensor.shape)} in "
                    f"the space{where(i)}"
                )
        unexpected += [file_key for key, (file_key, _) in share.items() if key not in own]
    if missing or shapes or unexpected:
        parts = []
        for label, items in (("missing", missing), ("mis-shaped", shapes), ("unexpected", unexpected)):
            if items:
                more = f" and {len(items) - 4} more" if len(items) > 4 else ""
                parts.append(f"{len(items)} {label}: {'; '.join(items[:4])}{more}")
        raise SpaceError(f"weights file {source!r} does not fit the space ({', '.join(parts)}); {hint}")


def _frozen_norm(norm: _BatchNorm) -> nn.Module:
    if not isinstance(norm, nn.BatchNorm2d) or not norm.affine or not norm.track_running_stats:
        return norm  # parameters become buffers below; eval-mode statistics via _pin_eval
    frozen = FrozenBatchNorm2d(norm.num_features, eps=norm.eps)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, name).copy_(getattr(norm, name))
    return frozen


def freeze_block(block: nn.Module) -> nn.Module:
    """Freeze ``block`` in place: batch norms become ``FrozenBatchNorm2d`` (fixed statistics),
    every other parameter a buffer of the same name, so nothing in it is trained.

    Buffers (not ``requires_grad=False``) so no optimizer, strategy or ``requires_grad_()`` call
    can train them again; they stay in the state dict, move with ``.to()`` and export as
    constants. The block is marked ``frozen = True``.
    """
    for parent in list(block.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(parent, name, _frozen_norm(child))
    for module in block.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                del module._parameters[name]
                module.register_buffer(name, param.detach().clone())
    block.frozen = True
    return block


def frozen_count(space: str, freeze: Any, num_blocks: int) -> int:
    """How many leading blocks ``freeze`` freezes: ``True`` all, ``"stem"`` the first,
    ``N`` the first N, ``False``/0 none."""
    if freeze is True:
        return num_blocks
    if freeze is False or freeze is None:
        return 0
    if freeze == "stem":
        return 1
    if isinstance(freeze, Integral) and not isinstance(freeze, bool) and 0 <= int(freeze) <= num_blocks:
        return int(freeze)
    raise SpaceError(
        f"search space {space!r}: freeze must be True (every block), 'stem' (block 0), a number "
        f"of leading blocks 0..{num_blocks}, or False, got {freeze!r}"
    )


class InputNormalization(nn.Module):
    """``(x - mean) / std`` per channel, with ``mean`` and ``std`` as (persistent) buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], ndim: int = 3):
        super().__init__()
        view = (-1,) + (1,) * (ndim - 1)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).reshape(view))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).reshape(view))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class NormalizedBlock(Block):
    """A block that normalises its input first (the backbone's preprocessing, built in).

    ``pre_activation(x) = block.pre_activation((x - mean) / std)``; the activation is the
    block's. It cannot be skipped: skipping would drop the normalisation.
    """

    skip = "none"

    def __init__(self, block: Block, mean: Sequence[float], std: Sequence[float], ndim: int = 3):
        super().__init__()
        self.normalize = InputNormalization(mean, std, ndim)
        self.block = block

    def pre_activation(self, x: Tensor) -> Tensor:
        return self.block.pre_activation(self.normalize(x))

    def activation(self, z: Tensor) -> Tensor:
        return self.block.activation(z)


def resolve_normalization(
    space: str, normalize: Any, channels: int, default: tuple[Sequence[float], Sequence[float]],
    pretrained: bool,
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``normalize`` as ``(mean, std)`` or None.

    ``None``: the backbone's ``default`` with pretrained weights, none without; ``True`` /
    ``False``: ``default`` / none; ``{"mean": [...], "std": [...]}`` or ``(mean, std)``: those.
    """
    if normalize is None:
        normalize = pretrained
    if normalize is False:
        return None
    if normalize is True:
        mean, std = default
    elif isinstance(normalize, Mapping) and set(normalize) == {"mean", "std"}:
        mean, std = normalize["mean"], normalize["std"]
    elif isinstance(normalize, Sequence) and not isinstance(normalize, str) and len(normalize) == 2:
        mean, std = normalize
    else:
        raise SpaceError(
            f"search space {space!r}: normalize must be None (on with weights), True, False, "
            f"or {{'mean': [...], 'std': [...]}}, got {normalize!r}"
        )
    try:
        mean_t, std_t = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise SpaceError(f"search space {space!r}: normalize's mean and std must be numbers, "
                         f"got {normalize!r}") from None
    if len(mean_t) != channels or len(std_t) != channels:
        raise SpaceError(
            f"search space {space!r}: normalize has {len(mean_t)} means and {len(std_t)} stds "
            f"for inputs of {channels} channels; give one per channel"
        )
    if not all(math.isfinite(v) for v in mean_t) or not all(
        isinstance(v, Real) and math.isfinite(v) and v > 0 for v in std_t
    ):
        raise SpaceError(f"search space {space!r}: normalize needs finite means and positive stds, "
                         f"got {normalize!r}")
    return mean_t, std_t


def backbone_options(
    space: str, *, weights: Any, freeze: Any, normalize: Any, channels: int, num_blocks: int,
    default: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
) -> tuple[str | None, int, tuple[tuple[float, ...], tuple[float, ...]] | None, dict[str, Any]]:
    """Check ``weights``, ``freeze`` and ``normalize``; return the resolved weights path,
    frozen block count and normalisation, plus the kwargs to record (only non-defaults, with
    the normalisation spelled out so a rebuild without the weights file is the same network)."""
    path = None
    if weights is not None:
        if not isinstance(weights, (str, Path)):
            raise SpaceError(f"search space {space!r}: weights must be a file path, got {weights!r}")
        path = str(Path(weights).expanduser().resolve())
    frozen = frozen_count(space, freeze, num_blocks)
    norm = resolve_normalization(space, normalize, channels, default, path is not None)
    record: dict[str, Any] = {}
    if path is not None:
        record["weights"] = path
    if frozen:
        record["freeze"] = freeze
    if norm is not None:
        record["normalize"] = {"mean": list(norm[0]), "std": list(norm[1])}
    return path, frozen, norm, record


def pretrained_factories(
    factories: Sequence[Callable[[], Block]],
    *,
    weights: str | None,
    split: Callable[[dict[str, Tensor], list[Block]], tuple[list[BlockState], list[str]]],
    frozen: int,
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None,
    hint: str,
    ndim: int = 3,
) -> tuple[list[Callable[[], Block]], bool]:
    """Block factories with the weights file loaded, leading blocks frozen and block 0
    normalising its input; and whether they keep weights (copies of one pretrained set).

    With a weights file, the file is read and checked against the blocks once; every call then
    builds the block and copies its share in, so each branch of a graph starts from the
    pretrained block. Building happens on the current default device: under
    ``torch.device("meta")`` (how ``load()`` sizes a model before allocating it) the block is
    a shape-only skeleton and nothing is copied. Without a file each call draws fresh weights.
    """
    from functools import partial

    def finish(i: int, block: Block) -> Block:
        if i < frozen:
            freeze_block(block)
        if i == 0 and normalization is not None:
            block = NormalizedBlock(block, normalization[0], normalization[1], ndim)
        return block

    if weights is None:
        if not frozen and normalization is None:
            return list(factories), False
        return [lambda i=i, f=f: finish(i, f()) for i, f in enumerate(factories)], False
    state = read_weights(weights)
    with torch.random.fork_rng(devices=[]):
        probe = [f() for f in factories]
    shares, unused = split(state, probe)
    check_block_weights(probe, shares, source=weights, hint=hint, unused=unused)
    del probe
    loads = [{k: v for k, (_, v) in share.items()} for share in shares]

    def make(i: int) -> Block:
        with torch.random.fork_rng(devices=[]):  # the initial values are overwritten
            block = factories[i]()
        tensors = list(block.parameters()) + list(block.buffers())
        if not any(t.is_meta for t in tensors):
            with torch.no_grad():
                block.load_state_dict(loads[i], strict=True)
        return finish(i, block)

    return [partial(make, i) for i in range(len(factories))], True
