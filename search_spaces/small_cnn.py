"""The ``small_cnn`` search space: a few cheap 3x3 convolution blocks for small images.

Made for the embedded image datasets (``multi_digits`` is ``(1, 12, 24)``, ``digits``
``(1, 8, 8)``): a forward of a batch of 64 takes a few milliseconds on a CPU. Each block is
``Conv3x3 -> BatchNorm2d`` (pre-activation, where task masks apply) | ``ReLU`` then, for the
blocks listed in ``pool_after``, ``MaxPool2d(2)``.

Example:
    >>> from mtlsearch import create_space
    >>> space = create_space("small_cnn", input_shape=(1, 12, 24))
    >>> [b.out_shape for b in space.blocks]
    [(16, 6, 12), (32, 3, 6), (32, 3, 6), (32, 3, 6)]
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import Tensor, nn
from torch.nn import functional as F

from mtlsearch.errors import SpaceError
from mtlsearch.graph.space import Block, SearchSpace

from .mlp import check_input_shape, check_ints

__all__ = ["ConvBlock", "small_cnn"]


class ConvBlock(Block):
    """``Conv3x3 (padding 1) -> BatchNorm2d`` | ``ReLU`` (``-> MaxPool2d(2)`` if ``pool``).

    Identity skip when the output shape equals the input shape (same channels, no pooling),
    otherwise the block cannot be skipped. Convolution weights get the Kaiming-normal
    (fan-out) initialisation torchvision uses for VGG and ResNet.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        pool: Max-pool (2x2, stride 2) after the ReLU.
        bias: Give the convolution a bias (torchvision's VGG does; redundant before a BN).
    """

    def __init__(self, in_channels: int, out_channels: int, pool: bool = False, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2) if pool else nn.Identity()
        self.skip = "identity" if in_channels == out_channels and not pool else "none"
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def pre_activation(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def activation(self, z: Tensor) -> Tensor:
        return self.pool(F.relu(z))


def small_cnn(
    *,
    input_shape: Sequence[int] = (1, 12, 24),
    channels: Sequence[int] = (16, 32, 32, 32),
    pool_after: Sequence[int] = (0, 1),
) -> SearchSpace:
    """A small convolutional network: one ``Conv3x3 -> BN | ReLU (-> MaxPool)`` per block.

    With the defaults on ``(1, 12, 24)`` the blocks give ``(16, 6, 12)``, ``(32, 3, 6)``,
    ``(32, 3, 6)``, ``(32, 3, 6)``; the last two can be skipped (identity).

    Args:
        input_shape: ``(channels, height, width)`` of one sample.
        channels: Output channels of each block (one block per entry).
        pool_after: Indices of the blocks followed by a 2x2 max-pooling.

    Returns:
        The search space; ``space.kwargs`` rebuilds it with ``create_space("small_cnn", ...)``.

    Raises:
        SpaceError: An ``input_shape`` that is not ``(C, H, W)``, empty or non-positive
            ``channels``, a ``pool_after`` index that is not a block, or a pooling that would
            shrink the image below 1x1.

    Example:
        >>> space = small_cnn(input_shape=(1, 8, 8), channels=(8, 8), pool_after=(0,))
        >>> [b.skip for b in space.blocks]
        ['none', 'identity']
    """
    shape = check_input_shape(
        "small_cnn",
        input_shape,
        3,
        "(C, H, W)",
        "give grey-scale images a channel axis, e.g. (1, H, W), or use 'mlp' for vectors",
    )
    chans = check_ints("small_cnn", "channels", channels)
    pools = check_ints("small_cnn", "pool_after", pool_after, minimum=0, allow_empty=True)
    bad = sorted({p for p in pools if p >= len(chans)})
    if bad:
        raise SpaceError(
            f"search space 'small_cnn': pool_after has {bad} but the blocks are 0.."
            f"{len(chans) - 1} (one per entry of channels); remove them or add channels"
        )
    if len(set(pools)) != len(pools):
        raise SpaceError(f"search space 'small_cnn': pool_after {list(pools)} has repeats")
    height, width = shape[1], shape[2]
    for i in range(len(chans)):
        if i in pools:
            if min(height, width) < 2:
                raise SpaceError(
                    f"search space 'small_cnn': the pooling after block {i} would shrink its "
                    f"{height}x{width} output below 1x1; remove {i} from pool_after or use a "
                    "larger input"
                )
            height, width = height // 2, width // 2
    ins = (shape[0], *chans[:-1])
    factories = [
        partial(ConvBlock, i, o, pool=k in pools)
        for k, (i, o) in enumerate(zip(ins, chans, strict=True))
    ]
    return SearchSpace(
        name="small_cnn",
        input_shape=shape,
        block_factories=factories,
        kwargs={
            "input_shape": list(shape),
            "channels": list(chans),
            "pool_after": sorted(pools),
        },
        description=f"small CNN, channels {list(chans)}, max-pool after blocks {sorted(pools)}",
    )
