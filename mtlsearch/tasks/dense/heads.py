"""Heads for dense prediction: ASPP (DeepLab, as AdaShare uses it) and pyramid pooling (PSPNet).

Both take the last block's feature map ``(C, h, w)`` and return ``(out_channels, H, W)``
maps, bilinearly upsampled to ``size`` (the input image's ``(H, W)``) when one is given.
Which head a dense task gets is the task spec's ``options["head"]`` (``"aspp"``, the default,
or ``"ppm"``); see :func:`make_dense_head`.

Example:
    >>> import torch
    >>> head = ASPPHead(in_channels=32, out_channels=5, size=(64, 64))
    >>> head(torch.zeros(2, 32, 8, 8)).shape
    torch.Size([2, 5, 64, 64])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlsearch.errors import TaskError

__all__ = ["AtrousConv", "ASPPHead", "PyramidPoolingHead", "make_dense_head", "HEADS", "upsample_to"]

HEADS = ("aspp", "ppm")
ASPP_DILATIONS = (6, 12, 18, 24)  # DeepLab-v2's ASPP-L, AdaShare's NYU v2 / Cityscapes heads
PPM_BINS = (1, 2, 3, 6)  # PSPNet


def upsample_to(x: Tensor, size: Sequence[int] | None) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size`` (no-op when ``size`` is None or equal)."""
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)


class AtrousConv(nn.Conv2d):
    """A 3x3 convolution with dilation ``d`` (padding ``d``) that skips the zero padding when
    ``d`` reaches the map size: then only the centre tap sees the input, so a 1x1
    convolution with the centre weights gives the same output far cheaper (dilation 24 on a
    4x4 map would otherwise convolve a 52x52 padded map).

    Example:
        >>> import torch
        >>> conv = AtrousConv(4, 2, dilation=24)
        >>> conv(torch.zeros(1, 4, 4, 4)).shape
        torch.Size([1, 2, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, *, dilation: int):
        super().__init__(in_channels, out_channels, 3, padding=dilation, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        d = self.dilation[0]
        if d >= x.shape[-2] and d >= x.shape[-1]:
            return F.conv2d(x, self.weight[:, :, 1:2, 1:2], self.bias)
        return super().forward(x)


class ASPPHead(nn.Module):
    """Atrous spatial pyramid pooling as in DeepLab-v2: one branch per dilation, outputs summed.

    Each branch is ``conv3x3(dilation d) -> ReLU -> conv1x1 -> ReLU -> conv1x1(out)``, as in
    AdaShare's DeepLab-ResNet heads (with fewer hidden channels than DeepLab's 1024).

    Args:
        in_channels: Channels of the feature map.
        out_channels: Output channels (classes, 1 for depth, 3 for normals).
        size: ``(H, W)`` to upsample to; None keeps the feature resolution.
        dilations: Dilation of each branch.
        hidden: Hidden channels of each branch (default ``max(8, in_channels // 2)``).

    Example:
        >>> import torch
        >>> ASPPHead(in_channels=8, out_channels=3)(torch.zeros(1, 8, 4, 4)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        size: Sequence[int] | None = None,
        dilations: Sequence[int] = ASPP_DILATIONS,
        hidden: int | None = None,
    ):
        super().__init__()
        hidden = hidden or max(8, in_channels // 2)
        self.size = None if size is None else tuple(int(s) for s in size)
        self.branches = nn.ModuleList(
            nn.Sequential(
                AtrousConv(in_channels, hidden, dilation=int(d)),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, hidden, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, out_channels, 1),
            )
            for d in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return upsample_to(out, self.size)


class PyramidPoolingHead(nn.Module):
    """PSPNet's pyramid pooling module: pooled context at several scales, then a classifier.

    The feature map is average-pooled to ``b x b`` for each bin ``b``, reduced by a 1x1
    convolution, upsampled back and concatenated with the features; a 3x3 convolution with
    batch normalisation and a 1x1 convolution give the output. Bins larger than the feature
    map are dropped. Pooling uses fixed kernels where ``b`` divides the map (ONNX-friendly).

    Args:
        in_channels: Channels of the feature map.
        out_channels: Output channels.
        feature_size: ``(h, w)`` of the feature map.
        size: ``(H, W)`` to upsample to; None keeps the feature resolution.
        bins: Pooled grid sizes.
        hidden: Channels of the fused features (default ``max(8, in_channels // 2)``).

    Example:
        >>> import torch
        >>> head = PyramidPoolingHead(in_channels=8, out_channels=2, feature_size=(4, 4), size=(32, 32))
        >>> head(torch.zeros(2, 8, 4, 4)).shape
        torch.Size([2, 2, 32, 32])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        feature_size: Sequence[int],
        size: Sequence[int] | None = None,
        bins: Sequence[int] = PPM_BINS,
        hidden: int | None = None,
    ):
        super().__init__()
        h, w = (int(s) for s in feature_size)
        self.bins = [int(b) for b in bins if b <= min(h, w)] or [1]
        self.size = None if size is None else tuple(int(s) for s in size)
        self.feature_size = (h, w)
        reduced = max(1, in_channels // len(self.bins))
        hidden = hidden or max(8, in_channels // 2)
        # No normalisation in the pooled branches: a 1x1 bin has one value per channel.
        self.reduce = nn.ModuleList(nn.Conv2d(in_channels, reduced, 1) for _ in self.bins)
        self.fuse = nn.Sequential(
            nn.Conv2d(in_channels + reduced * len(self.bins), hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )

    def _pool(self, x: Tensor, b: int) -> Tensor:
        h, w = x.shape[-2:]
        if h % b == 0 and w % b == 0:
            return F.avg_pool2d(x, kernel_size=(h // b, w // b))
        return F.adaptive_avg_pool2d(x, b)

    def forward(self, x: Tensor) -> Tensor:
        parts = [x]
        for b, conv in zip(self.bins, self.reduce, strict=True):
            pooled = F.relu(conv(self._pool(x, b)))
            parts.append(upsample_to(pooled, x.shape[-2:]))
        return upsample_to(self.fuse(torch.cat(parts, dim=1)), self.size)


def make_dense_head(
    options: dict[str, Any], feature_shape: Sequence[int], out_channels: int, *, task: str = "?"
) -> nn.Module:
    """The head a dense task's ``options`` ask for on features of ``feature_shape``.

    Options read: ``head`` (``"aspp"`` or ``"ppm"``), ``size`` (``[H, W]`` to upsample to),
    ``dilations`` (ASPP), ``bins`` (PPM), ``head_channels`` (hidden width).

    Raises:
        TaskError: Features without spatial axes, or an unknown ``head``.

    Example:
        >>> make_dense_head({"head": "ppm", "size": [16, 16]}, (8, 4, 4), 3).__class__.__name__
        'PyramidPoolingHead'
    """
    if len(feature_shape) != 3:
        raise TaskError(
            f"dense task {task!r} needs (C, H, W) feature maps from the last block, got shape "
            f"{tuple(feature_shape)}; use a convolutional space such as dilated_resnet18"
        )
    kind = options.get("head", "aspp")
    size = options.get("size")
    hidden = options.get("head_channels")
    c, h, w = (int(s) for s in feature_shape)
    if kind == "aspp":
        return ASPPHead(
            in_channels=c,
            out_channels=out_channels,
            size=size,
            dilations=options.get("dilations", ASPP_DILATIONS),
            hidden=hidden,
        )
    if kind == "ppm":
        return PyramidPoolingHead(
            in_channels=c,
            out_channels=out_channels,
            feature_size=(h, w),
            size=size,
            bins=options.get("bins", PPM_BINS),
            hidden=hidden,
        )
    raise TaskError(f"task {task!r} asks for head {kind!r}; use one of {list(HEADS)}")
