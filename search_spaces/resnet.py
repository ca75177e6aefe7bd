"""The ``resnet18`` and ``resnet34`` search spaces: torchvision's ResNet split into blocks.

As AdaShare uses it: block 0 is the stem (``conv1 -> bn1`` | ``relu -> maxpool``, cannot be
skipped), then one block per torchvision :class:`~torchvision.models.resnet.BasicBlock`
(8 for ResNet-18, 16 for ResNet-34). A residual block's pre-activation is
``bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)`` and its activation the final ReLU, so a task
mask multiplies the residual sum. Skipping a block means its shortcut: the identity, or for
the first block of a stage its ``downsample`` projection (1x1 conv + BN).

Weights are fresh (torchvision's initialisation) unless ``weights=PATH`` names a local
torchvision state dict (``.pth``/``.pt`` read with ``weights_only=True``, or
``.safetensors``; e.g. ``resnet18-f37072fd.pth`` as torchvision saves it): then every block,
and every task-specific copy of it, starts from those weights, and the first block applies
ImageNet's input normalisation (``space.input_normalization``). ``freeze`` keeps leading
blocks fixed. Nothing is downloaded. A torchvision model already in memory can be copied into
blocks with :func:`load_torchvision_resnet`.

Example:
    >>> from mtlsearch import create_space
    >>> space = create_space("resnet18", input_shape=(3, 32, 32), width=16, small_input=True)
    >>> [b.skip for b in space.blocks][:4]
    ['none', 'identity', 'identity', 'projection']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.resnet import BasicBlock

from mtlsearch.errors import SpaceError
from mtlsearch.graph.space import Block, SearchSpace

from .mlp import check_bool, check_input_shape, check_int
from .pretrained import BlockState, backbone_options, pretrained_factories

__all__ = [
    "ResNetStem",
    "ResidualBlock",
    "resnet18",
    "resnet34",
    "load_torchvision_resnet",
    "split_resnet_state",
    "RESNET_LAYERS",
]

RESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}


def _init_like_torchvision(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNetStem(Block):
    """The ResNet stem: ``conv1 -> bn1`` | ``relu -> maxpool``; cannot be skipped.

    Args:
        in_channels: Input image channels.
        width: Output channels (torchvision: 64).
        small_input: CIFAR-style stem, a 3x3 stride-1 convolution and no max-pooling, for
            small images; otherwise torchvision's 7x7 stride-2 convolution and 3x3 stride-2
            max-pooling (the input shrinks 4x).
    """

    skip = "none"

    def __init__(self, in_channels: int, width: int, small_input: bool = False):
        super().__init__()
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        _init_like_torchvision(self)

    def pre_activation(self, x: Tensor) -> Tensor:
        return self.bn1(self.conv1(x))

    def activation(self, z: Tensor) -> Tensor:
        return self.maxpool(F.relu(z))


class ResidualBlock(Block):
    """A torchvision :class:`BasicBlock` (held as ``self.block``) with its forward split.

    ``pre_activation(x) = bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)``,
    ``activation(z) = relu(z)``: with no mask this is exactly ``BasicBlock.forward``.
    ``shortcut`` is the block's ``downsample`` (``skip == "projection"``, also reachable
    as :attr:`projection`) or the identity (``skip == "identity"``).

    Args:
        in_channels: Input channels.
        channels: Output channels.
        stride: Stride of the first convolution (and of the projection).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        downsample = None
        if stride != 1 or in_channels != channels:
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        self.block = BasicBlock(in_channels, channels, stride=stride, downsample=downsample)
        self.skip = "projection" if downsample is not None else "identity"
        _init_like_torchvision(self)

    @property
    def projection(self) -> nn.Module | None:
        """The projection shortcut (``downsample``: 1x1 conv + BN), or None for identity."""
        return self.block.downsample

    def shortcut(self, x: Tensor) -> Tensor:
        downsample = self.block.downsample
        return x if downsample is None else downsample(x)

    def pre_activation(self, x: Tensor) -> Tensor:
        b = self.block
        out = F.relu(b.bn1(b.conv1(x)))
        out = b.bn2(b.conv2(out))
        return out + self.shortcut(x)

    def activation(self, z: Tensor) -> Tensor:
        return F.relu(z)


def _resnet(
    name: str, input_shape: Sequence[int], width: int, small_input: bool, weights: Any,
    freeze: Any, normalize: Any,
) -> SearchSpace:
    shape = check_input_shape(
        name, input_shape, 3, "(C, H, W)", "give grey-scale images a channel axis, e.g. (1, H, W)"
    )
    width = check_int(name, "width", width)
    small_input = check_bool(name, "small_input", small_input)
    factories: list[Callable[[], Block]] = [partial(ResNetStem, shape[0], width, small_input)]
    in_channels = width
    for stage, count in enumerate(RESNET_LAYERS[name]):
        channels = width * 2**stage
        for j in range(count):
            stride = 2 if stage > 0 and j == 0 else 1
            factories.append(partial(ResidualBlock, in_channels, channels, stride))
            in_channels = channels
    path, frozen, norm, extra = backbone_options(
        name, weights=weights, freeze=freeze, normalize=normalize, channels=shape[0],
        num_blocks=len(factories),
    )
    factories, kept = pretrained_factories(
        factories, weights=path, frozen=frozen, normalization=norm,
        split=partial(split_resnet_state, layers=RESNET_LAYERS[name], prefix="block."),
        hint=(f"torchvision's {name} weights fit width=64, small_input=False and 3 input "
              f"channels, and {name}'s depth"),
    )
    stem = "3x3 stride-1 stem" if small_input else "7x7 stride-2 stem + max-pool"
    return SearchSpace(
        name=name,
        input_shape=shape,
        block_factories=factories,
        kwargs={"input_shape": list(shape), "width": width, "small_input": small_input, **extra},
        description=(
            f"ResNet-{name[6:]} (torchvision BasicBlocks), base width {width}, {stem}: "
            f"stem + {sum(RESNET_LAYERS[name])} residual blocks"
            + (", pretrained" if kept else "") + (f", {frozen} frozen" if frozen else "")
        ),
        keeps_weights=kept,
        input_normalization=norm,
    )


def split_resnet_state(
    state: dict[str, Tensor], blocks: Sequence[nn.Module], *, layers: Sequence[int], prefix: str
) -> tuple[list[BlockState], list[str]]:
    """Each block's share of a torchvision ResNet state dict, and the keys no block takes.

    ``conv1``/``bn1`` go to the stem (block 0), ``layer{s}.{j}.*`` to block
    ``1 + sum(layers[:s-1]) + j`` as ``prefix + *``; the classifier ``fc`` is dropped (task
    heads replace it). A file of another depth leaves keys unused or blocks missing keys.
    """
    offsets = [1]
    for count in layers:
        offsets.append(offsets[-1] + count)
    shares: list[BlockState] = [{} for _ in blocks]
    unused: list[str] = []
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        match = _LAYER_KEY.fullmatch(key)
        if match is None:
            shares[0][key] = (key, value)
            continue
        stage, index, rest = int(match[1]), int(match[2]), match[3]
        if not 1 <= stage <= len(layers) or index >= layers[stage - 1]:
            unused.append(key)
            continue
        shares[offsets[stage - 1] + index][prefix + rest] = (key, value)
    return shares, unused


def resnet18(
    *,
    input_shape: Sequence[int] = (3, 64, 64),
    width: int = 64,
    small_input: bool = False,
    weights: str | None = None,
    freeze: bool | str | int = False,
    normalize: Any = None,
) -> SearchSpace:
    """ResNet-18 as 9 blocks: the stem, then the 8 BasicBlocks of stages ``[2, 2, 2, 2]``.

    Stages have ``width``, ``2*width``, ``4*width`` and ``8*width`` channels; the first block
    of stages 2-4 halves the resolution and has a projection shortcut.

    Args:
        input_shape: ``(C, H, W)`` of one sample.
        width: Base width (channels of the stem and stage 1); torchvision's is 64, use
            e.g. 16 for quick CPU runs.
        small_input: CIFAR-style stem (3x3 stride-1 convolution, no max-pooling) for small
            images such as ``(1, 12, 24)`` or ``(3, 32, 32)``.
        weights: A local torchvision ResNet state dict (``.pth``/``.pt``/``.safetensors``);
            every block starts from it (``fc`` is dropped). Needs ``width=64``,
            ``small_input=False`` and 3 channels; a file that does not fit names the keys.
        freeze: ``True`` (every block), ``"stem"`` (block 0) or ``N`` (blocks ``0..N-1``):
            those blocks keep their weights and batch-norm statistics; ``False`` fine-tunes
            everything.
        normalize: Input normalisation inside block 0: ``None`` (ImageNet mean/std with
            ``weights``, none without), ``True``, ``False`` or ``{"mean": [...], "std": [...]}``.
            Inputs are expected in ``[0, 1]``.

    Returns:
        The search space; ``space.kwargs`` rebuilds it with ``create_space("resnet18", ...)``.

    Raises:
        SpaceError: An ``input_shape`` that is not ``(C, H, W)``, a non-positive ``width``,
            a non-boolean ``small_input``.

    Example:
        >>> space = resnet18(input_shape=(3, 64, 64), width=16)
        >>> space.num_blocks, space.blocks[-1].out_shape
        (9, (128, 2, 2))
    """
    return _resnet("resnet18", input_shape, width, small_input, weights, freeze, normalize)


def resnet34(
    *,
    input_shape: Sequence[int] = (3, 64, 64),
    width: int = 64,
    small_input: bool = False,
    weights: str | None = None,
    freeze: bool | str | int = False,
    normalize: Any = None,
) -> SearchSpace:
    """ResNet-34 as 17 blocks: the stem, then the 16 BasicBlocks of stages ``[3, 4, 6, 3]``.

    Options as for :func:`resnet18`.

    Example:
        >>> space = resnet34(input_shape=(3, 32, 32), width=8, small_input=True)
        >>> space.num_blocks
        17
    """
    return _resnet("resnet34", input_shape, width, small_input, weights, freeze, normalize)


_LAYER_KEY = re.compile(r"layer(\d)\.(\d+)\.(.+)")


def load_torchvision_resnet(blocks: Sequence[Block], model: nn.Module) -> None:
    """Copy a torchvision ResNet-18/34's weights (and BN statistics) into a chain of blocks.

    ``blocks`` are the blocks of a ``resnet18``/``resnet34`` space (``space.make_block(i)``
    for every ``i``) of the same depth and width, without ``small_input``. The stem takes
    ``conv1``/``bn1``; block ``1 + k`` takes the ``k``-th BasicBlock of ``layer1..layer4``.
    The classifier ``fc`` is not copied (task heads replace it). Useful to start from
    weights you have on disk, e.g. ``model.load_state_dict(torch.load(path, weights_only=True))``.

    Raises:
        SpaceError: When the model's layers do not match the blocks (depth, width, stem).

    Example:
        >>> import torchvision
        >>> from mtlsearch import create_space
        >>> space = create_space("resnet18", input_shape=(3, 32, 32))
        >>> blocks = [space.make_block(i) for i in range(space.num_blocks)]
        >>> load_torchvision_resnet(blocks, torchvision.models.resnet18(weights=None))
    """
    state = model.state_dict()
    per_block: list[dict[str, Tensor]] = [{} for _ in blocks]
    offsets = [1]
    for stage in range(1, 5):
        layer = getattr(model, f"layer{stage}", None)
        if layer is None:
            raise SpaceError(
                f"{type(model).__name__} has no layer{stage}; pass a torchvision ResNet"
            )
        offsets.append(offsets[-1] + len(layer))
    if offsets[-1] != len(blocks):
        raise SpaceError(
            f"the model has {offsets[-1] - 1} residual blocks but {len(blocks) - 1} blocks "
            "(after the stem) were given; use the space of the same depth"
        )
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        match = _LAYER_KEY.fullmatch(key)
        if match:
            stage, index, rest = int(match[1]), int(match[2]), match[3]
            per_block[offsets[stage - 1] + index][f"block.{rest}"] = value
        else:
            per_block[0][key] = value
    for i, (block, sub_state) in enumerate(zip(blocks, per_block, strict=True)):
        try:
            block.load_state_dict(sub_state, strict=True)
        except RuntimeError as exc:
            raise SpaceError(
                f"block {i} does not match the torchvision model's weights (build the space "
                f"with width=64 and small_input=False for torchvision's ResNet): {exc}"
            ) from None
