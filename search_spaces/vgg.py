"""The ``vgg16_bn`` search space: VGG-16-BN, thin-ω, as in Branched Multi-Task Networks.

The layer configuration is torchvision's (``torchvision.models.vgg.cfgs["D"]``): 13 blocks
``Conv3x3 -> BatchNorm2d`` | ``ReLU`` (``-> MaxPool2d(2)`` where the configuration has an
``'M'`` after the convolution), then two fully connected blocks ``Linear`` | ``ReLU ->
Dropout``. Thin-ω caps the widths: every convolution has ``min(ω, VGG width)`` channels and
each fully connected layer ``2ω`` features (Vandenhende et al., "Branched Multi-Task
Networks: Deciding What Layers To Share", BMVC 2020).

Differences from torchvision, for small inputs: a max-pooling that would shrink an image
already smaller than 2 pixels in height or width is left out (so ``(1, 12, 24)`` keeps
three of the five poolings), and there is no ``AdaptiveAvgPool2d((7, 7))``: the first fully
connected block flattens the last feature map as it is.

``weights=PATH`` starts every block from a local torchvision ``vgg16_bn`` state dict
(``features.*`` -> the 13 convolution blocks; ``classifier.0``/``classifier.3`` -> the two
fully connected blocks, ``classifier.6`` dropped): the convolutions fit with ``omega >= 512``;
the fully connected blocks fit torchvision's only with ``omega=2048`` on ``(3, 224, 224)``
inputs, so with other sizes pass ``fc=False`` (heads pool the last convolution block).
``freeze`` and ``normalize`` are as for ``resnet18``.

Example:
    >>> from mtlsearch import create_space
    >>> space = create_space("vgg16_bn", input_shape=(3, 32, 32), omega=16)
    >>> space.num_blocks, space.blocks[12].out_shape, space.blocks[-1].out_shape
    (15, (16, 1, 1), (32,))
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from numbers import Real
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.vgg import cfgs

from mtlsearch.errors import SpaceError
from mtlsearch.graph.space import Block, SearchSpace

from .mlp import check_bool, check_input_shape, check_int
from .pretrained import BlockState, backbone_options, pretrained_factories
from .small_cnn import ConvBlock

__all__ = ["FCBlock", "split_vgg_state", "vgg16_bn", "vgg_plan"]


class FCBlock(Block):
    """``[Flatten ->] Linear`` | ``ReLU -> Dropout``: one of VGG's fully connected layers.

    The task mask multiplies the linear output, before the ReLU. Identity skip when the
    input is a vector of ``out_features`` features, otherwise the block cannot be skipped.

    Args:
        in_features: Features after flattening the input.
        out_features: Output features.
        dropout: Dropout probability after the ReLU (VGG: 0.5).
        flatten: Flatten a ``(C, H, W)`` input first.
    """

    def __init__(self, in_features: int, out_features: int, dropout: float, flatten: bool):
        super().__init__()
        self.flatten = nn.Flatten() if flatten else nn.Identity()
        self.linear = nn.Linear(in_features, out_features)
        self.dropout = nn.Dropout(dropout)
        self.skip = "identity" if not flatten and in_features == out_features else "none"

    def pre_activation(self, x: Tensor) -> Tensor:
        return self.linear(self.flatten(x))

    def activation(self, z: Tensor) -> Tensor:
        return self.dropout(F.relu(z))


def vgg_plan(
    input_shape: Sequence[int], omega: int
) -> tuple[list[tuple[int, int, bool]], tuple[int, int, int]]:
    """The convolution blocks of thin-ω VGG-16 for ``input_shape``: ``(in, out, pool)``
    per block, and the ``(C, H, W)`` of the last block's output.

    A pooling is kept only when the image is at least 2x2 when it is reached.
    """
    blocks: list[tuple[int, int, bool]] = []
    channels, height, width = (int(s) for s in input_shape)
    for item in cfgs["D"]:
        if item == "M":
            if min(height, width) >= 2:
                in_c, out_c, _ = blocks[-1]
                blocks[-1] = (in_c, out_c, True)
                height, width = height // 2, width // 2
            continue
        out = min(omega, int(item))
        blocks.append((channels, out, False))
        channels = out
    return blocks, (channels, height, width)


def vgg16_bn(
    *,
    input_shape: Sequence[int] = (3, 64, 64),
    omega: int = 32,
    fc: bool = True,
    dropout: float = 0.5,
    weights: str | None = None,
    freeze: bool | str | int = False,
    normalize: Any = None,
) -> SearchSpace:
    """Thin-ω VGG-16 with batch normalisation: 13 convolution blocks and 2 FC blocks.

    Convolution block ``i`` has ``min(omega, cfgs["D"] width)`` channels (64, 64, 128, 128,
    256 x3, 512 x6 in torchvision) and max-pools where VGG does (after blocks 1, 3, 6, 9
    and 12) unless the image is already below 2x2. Blocks that keep the shape can be skipped
    (identity); the others cannot. With ``fc``, two blocks ``Linear(2*omega)`` | ``ReLU ->
    Dropout`` follow (the first flattens the feature map); the task heads play the role of
    VGG's last linear layer.

    Args:
        input_shape: ``(C, H, W)`` of one sample.
        omega: The width cap ω (the paper's thin-ω); 512 or more gives VGG-16's full
            convolution widths.
        fc: Add the two fully connected blocks; without them heads pool globally over the
            last convolution block.
        dropout: Dropout probability in the fully connected blocks.
        weights: A local torchvision ``vgg16_bn`` state dict (``.pth``/``.pt``/
            ``.safetensors``); every block starts from it (see the module's notes on sizes).
        freeze: ``True`` (every block), ``"stem"`` (block 0) or ``N`` (blocks ``0..N-1``)
            keep their weights; ``False`` fine-tunes everything.
        normalize: Input normalisation inside block 0: ``None`` (ImageNet mean/std with
            ``weights``), ``True``, ``False`` or ``{"mean": [...], "std": [...]}``.

    Returns:
        The search space; ``space.kwargs`` rebuilds it with ``create_space("vgg16_bn", ...)``.

    Raises:
        SpaceError: An ``input_shape`` that is not ``(C, H, W)``, a non-positive ``omega``,
            a non-boolean ``fc``, a ``dropout`` outside ``[0, 1)``.

    Example:
        >>> space = vgg16_bn(input_shape=(3, 32, 32), omega=8, fc=False)
        >>> space.num_blocks, [b.channels for b in space.blocks][:3]
        (13, [8, 8, 8])
    """
    shape = check_input_shape(
        "vgg16_bn",
        input_shape,
        3,
        "(C, H, W)",
        "give grey-scale images a channel axis, e.g. (1, H, W)",
    )
    omega = check_int("vgg16_bn", "omega", omega)
    fc = check_bool("vgg16_bn", "fc", fc)
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
        raise SpaceError(
            f"search space 'vgg16_bn': dropout must be a probability in [0, 1), got {dropout!r}"
        )
    dropout = float(dropout)
    plan, (channels, height, width) = vgg_plan(shape, omega)
    factories = [partial(ConvBlock, i, o, pool=p, bias=True) for i, o, p in plan]
    if fc:
        hidden = 2 * omega
        factories.append(partial(FCBlock, channels * height * width, hidden, dropout, True))
        factories.append(partial(FCBlock, hidden, hidden, dropout, False))
    pools = sum(p for _, _, p in plan)
    path, frozen, norm, extra = backbone_options(
        "vgg16_bn", weights=weights, freeze=freeze, normalize=normalize, channels=shape[0],
        num_blocks=len(factories),
    )
    factories, kept = pretrained_factories(
        factories, weights=path, frozen=frozen, normalization=norm, split=split_vgg_state,
        hint=("torchvision's vgg16_bn convolutions fit omega>=512 and 3 input channels; its "
              "classifier fits omega=2048 on (3, 224, 224) inputs, else pass fc=False"),
    )
    return SearchSpace(
        name="vgg16_bn",
        input_shape=shape,
        block_factories=factories,
        kwargs={"input_shape": list(shape), "omega": omega, "fc": fc, "dropout": dropout, **extra},
        description=(
            f"VGG-16-BN thin-{omega}: 13 conv blocks ({pools} max-poolings)"
            + (f" + 2 FC blocks of {2 * omega}" if fc else "")
            + (", pretrained" if kept else "") + (f", {frozen} frozen" if frozen else "")
        ),
        keeps_weights=kept,
        input_normalization=norm,
    )


def split_vgg_state(
    state: dict[str, Tensor], blocks: Sequence[nn.Module]
) -> tuple[list[BlockState], list[str]]:
    """Each block's share of a torchvision ``vgg16_bn`` state dict, and the keys none takes.

    ``features.{i}`` (a convolution) and ``features.{i+1}`` (its batch norm) go to conv block
    ``k`` as ``conv.*`` and ``bn.*``; ``classifier.0``/``classifier.3`` to the fully connected
    blocks (when the space has them) as ``linear.*``; ``classifier.6`` (ImageNet's 1000
    classes) is dropped.
    """
    owner: dict[str, tuple[int, str]] = {}
    index, conv = 0, 0
    for item in cfgs["D"]:
        if item == "M":
            index += 1
            continue
        owner[f"features.{index}."] = (conv, "conv.")
        owner[f"features.{index + 1}."] = (conv, "bn.")
        index += 3
        conv += 1
    if len(blocks) > conv:
        owner["classifier.0."] = (conv, "linear.")
        owner["classifier.3."] = (conv + 1, "linear.")
    shares: list[BlockState] = [{} for _ in blocks]
    unused: list[str] = []
    for key, value in state.items():
        prefix = key[: key.rindex(".") + 1] if "." in key else key
        if prefix in owner:
            block, local = owner[prefix]
            shares[block][local + key[len(prefix) :]] = (key, value)
        elif not key.startswith("classifier."):  # the classifier: heads replace it
            unused.append(key)
    return shares, unused
