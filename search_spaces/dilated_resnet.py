"""``dilated_resnet18`` / ``dilated_resnet34``: DeepLab-ResNet backbones for dense prediction.

As in AdaShare's NYU v2 and Cityscapes experiments (DeepLab-v2 on ResNet): torchvision's
ResNet with the last stages *dilated instead of strided*, so the feature map keeps 1/8 of
the input resolution (``output_stride=8``: stage 3 dilation 2, stage 4 dilation 4) or 1/16
(``output_stride=16``: stage 4 dilation 2). Blocks and skip semantics are those of the
``resnet18`` space: block 0 is the stem (cannot be skipped), then one block per BasicBlock,
``pre_activation = bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)``, ``activation = relu``;
skipping a block means its shortcut (identity, or the 1x1 projection where the channel
count or stride changes).

``weights=PATH`` starts every block from a local torchvision ResNet-18/34 state dict (dilation
changes no weight shape, so ImageNet weights fit with ``width=64``, ``small_input=False``);
``freeze`` and ``normalize`` are as for ``resnet18``.

Example:
    >>> from mtlsearch import create_space
    >>> space = create_space("dilated_resnet18", input_shape=(3, 64, 64), width=8)
    >>> space.blocks[-1].out_shape
    (64, 8, 8)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from mtlsearch.errors import SpaceError
from mtlsearch.graph.space import Block, SearchSpace

from .mlp import check_bool, check_input_shape, check_int
from .pretrained import backbone_options, pretrained_factories
from .resnet import RESNET_LAYERS, ResNetStem, _init_like_torchvision, split_resnet_state

__all__ = ["DilatedResidualBlock", "dilated_resnet18", "dilated_resnet34", "stage_dilations"]

OUTPUT_STRIDES = (8, 16, 32)


def stage_dilations(output_stride: int) -> tuple[list[int], list[int]]:
    """``(strides, dilations)`` of stages 1-4 for a DeepLab ``output_stride``.

    Example:
        >>> stage_dilations(8)
        ([1, 2, 1, 1], [1, 1, 2, 4])
    """
    if output_stride == 8:
        return [1, 2, 1, 1], [1, 1, 2, 4]
    if output_stride == 16:
        return [1, 2, 2, 1], [1, 1, 1, 2]
    if output_stride == 32:
        return [1, 2, 2, 2], [1, 1, 1, 1]
    raise SpaceError(f"output_stride={output_stride!r} is not supported; use one of {list(OUTPUT_STRIDES)}")


class DilatedResidualBlock(Block):
    """A ResNet BasicBlock with dilated 3x3 convolutions (torchvision's refuses dilation > 1).

    Args:
        in_channels: Input channels.
        channels: Output channels.
        stride: Stride of the first convolution (and of the projection).
        dilation: Dilation (and padding) of both 3x3 convolutions.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        self.skip = "projection" if self.downsample is not None else "identity"
        _init_like_torchvision(self)

    @property
    def projection(self) -> nn.Module | None:
        """The projection shortcut (1x1 conv + BN), or None for an identity shortcut."""
        return self.downsample

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.downsample is None else self.downsample(x)

    def pre_activation(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + self.shortcut(x)

    def activation(self, z: Tensor) -> Tensor:
        return F.relu(z)


def _dilated(
    name: str, input_shape: Sequence[int], width: int, small_input: bool, output_stride: int,
    weights: Any = None, freeze: Any = False, normalize: Any = None,
) -> SearchSpace:
    shape = check_input_shape(
        name, input_shape, 3, "(C, H, W)", "give grey-scale images a channel axis, e.g. (1, H, W)"
    )
    width = check_int(name, "width", width)
    small_input = check_bool(name, "small_input", small_input)
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        raise SpaceError(
            f"{name}: output_stride={output_stride!r} is not supported; use one of {list(OUTPUT_STRIDES)}"
        )
    strides, dilations = stage_dilations(output_stride)
    factories: list[Callable[[], Block]] = [partial(ResNetStem, shape[0], width, small_input)]
    in_channels = width
    for stage, count in enumerate(RESNET_LAYERS[name[len("dilated_") :]]):
        channels = width * 2**stage
        for j in range(count):
            stride = strides[stage] if j == 0 else 1
            # DeepLab: the first block of a dilated stage uses the previous dilation.
            dilation = dilations[stage] if j > 0 or stage == 0 else max(1, dilations[stage] // 2)
            factories.append(partial(DilatedResidualBlock, in_channels, channels, stride, dilation))
            in_channels = channels
    effective = output_stride // 4 if small_input else output_stride
    base = name[len("dilated_") :]
    path, frozen, norm, extra = backbone_options(
        name, weights=weights, freeze=freeze, normalize=normalize, channels=shape[0],
        num_blocks=len(factories),
    )
    factories, kept = pretrained_factories(
        factories, weights=path, frozen=frozen, normalization=norm,
        split=partial(split_resnet_state, layers=RESNET_LAYERS[base], prefix=""),
        hint=(f"torchvision's {base} weights fit width=64, small_input=False and 3 input "
              "channels"),
    )
    return SearchSpace(
        name=name,
        input_shape=shape,
        block_factories=factories,
        kwargs={
            "input_shape": list(shape),
            "width": width,
            "small_input": small_input,
            "output_stride": output_stride,
            **extra,
        },
        description=(
            f"DeepLab-ResNet-{name[len('dilated_resnet') :]}, base width {width}, dilated last "
            f"stages, features at 1/{effective} of the input"
            + (", pretrained" if kept else "") + (f", {frozen} frozen" if frozen else "")
        ),
        keeps_weights=kept,
        input_normalization=norm,
    )


def dilated_resnet18(
    *,
    input_shape: Sequence[int] = (3, 64, 64),
    width: int = 64,
    small_input: bool = False,
    output_stride: int = 8,
    weights: str | None = None,
    freeze: bool | str | int = False,
    normalize: Any = None,
) -> SearchSpace:
    """DeepLab-ResNet-18 as 9 blocks (stem + 8 residual blocks), for dense heads.

    Args:
        input_shape: ``(C, H, W)`` of one sample.
        width: Base width (torchvision: 64); e.g. 8 for quick CPU runs.
        small_input: A 3x3 stride-1 stem without max-pooling; the feature map is then
            ``output_stride / 4`` times smaller than the input instead of ``output_stride``.
        output_stride: 8 (DeepLab, AdaShare), 16, or 32 (plain ResNet strides).
        weights: A local torchvision ResNet-18 state dict; every block starts from it.
        freeze: ``True``, ``"stem"`` or ``N`` leading blocks keep their weights.
        normalize: Input normalisation inside block 0 (ImageNet's by default with weights).

    Raises:
        SpaceError: A bad ``input_shape``, ``width``, ``small_input`` or ``output_stride``.

    Example:
        >>> space = dilated_resnet18(input_shape=(3, 32, 32), width=8)
        >>> space.num_blocks, space.blocks[-1].out_shape
        (9, (64, 4, 4))
    """
    return _dilated(
        "dilated_resnet18", input_shape, width, small_input, output_stride, weights, freeze,
        normalize,
    )


def dilated_resnet34(
    *,
    input_shape: Sequence[int] = (3, 64, 64),
    width: int = 64,
    small_input: bool = False,
    output_stride: int = 8,
    weights: str | None = None,
    freeze: bool | str | int = False,
    normalize: Any = None,
) -> SearchSpace:
    """DeepLab-ResNet-34 as 17 blocks (AdaShare's NYU v2 backbone); options as for
    :func:`dilated_resnet18`.

    Example:
        >>> dilated_resnet34(input_shape=(3, 32, 32), width=8).num_blocks
        17
    """
    return _dilated(
        "dilated_resnet34", input_shape, width, small_input, output_stride, weights, freeze,
        normalize,
    )
