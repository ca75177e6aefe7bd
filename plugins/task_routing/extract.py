"""Specialised subnet extraction (the paper's conclusion): for one task, the smaller plain
network with its masked-out channels removed, whose outputs equal the routed model's.

A masked-out channel is zero after the mask, so it stays zero through the activation (ReLU,
max-pooling, dropout in eval) and contributes nothing to the next layer: dropping the
channel's output rows and the next layer's matching input columns changes no output.

Supported blocks (their convolution / linear / batch-norm weights are sliced):
``LinearBlock`` (``mlp``), ``ConvBlock`` (``small_cnn`` and the convolutions of ``vgg16_bn``),
``FCBlock`` (``vgg16_bn``'s fully connected layers, flattening included), ``ResNetStem`` and
``ResidualBlock`` (``resnet18``/``resnet34``). In a residual block only the output channels
are masked: the inner convolution keeps all its channels, ``conv2``/``bn2`` and a projection
shortcut lose the masked output rows, and an identity shortcut becomes a fixed channel
selection (a kept output channel whose input channel was masked away receives zero, exactly
as in the routed model). Heads must be the default :class:`~mtlsearch.tasks.kinds.VectorHead`.

Example:
    >>> subnet = extract_subnet(model, "left_even")  # doctest: +SKIP
    >>> torch.allclose(subnet(x), model(x, ["left_even"])["left_even"], atol=1e-5)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtlsearch.engine.model import GroupedBatchNorm
from mtlsearch.errors import MTLSearchError
from mtlsearch.tasks.kinds import VectorHead

__all__ = ["SpecialisedSubnet", "extract_subnet", "SUPPORTED_BLOCKS"]

#: Class names of the blocks :func:`extract_subnet` can slice.
SUPPORTED_BLOCKS = ("LinearBlock", "ConvBlock", "FCBlock", "ResNetStem", "ResidualBlock")

# per block class: (input layer attribute, output layer attribute, batch-norm attribute or None)
_LAYERS = {
    "LinearBlock": ("linear", "linear", "norm"),
    "ConvBlock": ("conv", "conv", "bn"),
    "FCBlock": ("linear", "linear", None),
    "ResNetStem": ("conv1", "conv1", "bn1"),
}


class SpecialisedSubnet(nn.Module):
    """One task's network: the sliced blocks in route order, then the task's head.

    Attributes:
        task: The task.
        blocks: The sliced blocks (each runs ``activation(pre_activation(x))``).
        head: The task's head (its input sliced to the last block's kept channels).
        kept: Kept channel indices of each block, in the routed model's numbering.
    """

    def __init__(self, task: str, blocks: Sequence[nn.Module], head: nn.Module, kept: list[list[int]]):
        super().__init__()
        self.task = task
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.kept = kept

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block.activation(block.pre_activation(x))
        return self.head(x)


class SlicedResidual(nn.Module):
    """A residual block of one task: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x))``
    on the task's kept input channels, producing its kept output channels."""

    def __init__(self, block: nn.Module, kept_in: list[int] | None, keep: list[int]):
        super().__init__()
        inner = block.block
        self.conv1 = _slice_layer(inner.conv1, None, kept_in)
        self.bn1 = copy.deepcopy(inner.bn1)
        self.conv2 = _slice_layer(inner.conv2, keep, None)
        self.bn2 = _slice_norm(inner.bn2, keep)
        self.projection: nn.Module | None = None
        if inner.downsample is not None:
            conv, norm = inner.downsample[0], inner.downsample[1]
            self.projection = nn.Sequential(_slice_layer(conv, keep, kept_in), _slice_norm(norm, keep))
        else:
            # Identity shortcut: output channel c takes input channel c if the task kept it.
            position = {c: i for i, c in enumerate(kept_in)} if kept_in is not None else None
            source = [position.get(c, -1) if position is not None else c for c in keep]
            self.register_buffer("source", torch.as_tensor(source, dtype=torch.long))

    def shortcut(self, x: Tensor) -> Tensor:
        if self.projection is not None:
            return self.projection(x)
        padded = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], dim=1)
        return padded.index_select(1, torch.where(self.source < 0, x.shape[1], self.source))

    def pre_activation(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + self.shortcut(x)

    def activation(self, z: Tensor) -> Tensor:
        return torch.relu(z)


def _with_group_norms(block: nn.Module, group: int | None) -> nn.Module:
    """``block``, or a copy whose per-task batch norms are plain ones holding ``group``'s
    statistics (the task's own, as the routed model uses them)."""
    if group is None:
        return block
    block = copy.deepcopy(block)
    for parent in list(block.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GroupedBatchNorm):
                setattr(parent, name, child.as_batchnorm(group))
    return block


def _index(idx: list[int], device: torch.device) -> Tensor:
    return torch.as_tensor(idx, dtype=torch.long, device=device)


def _slice_layer(layer: nn.Module, rows: list[int] | None, cols: list[int] | None) -> nn.Module:
    """A copy of a Linear/Conv layer keeping output ``rows`` and input ``cols`` (None: all)."""
    new = copy.deepcopy(layer)
    weight = layer.weight.detach()
    if rows is not None:
        weight = weight.index_select(0, _index(rows, weight.device))
    if cols is not None:
        weight = weight.index_select(1, _index(cols, weight.device))
    new.weight = nn.Parameter(weight.clone())
    if layer.bias is not None:
        bias = layer.bias.detach()
        if rows is not None:
            bias = bias.index_select(0, _index(rows, bias.device))
        new.bias = nn.Parameter(bias.clone())
    if isinstance(new, nn.Linear):
        new.out_features, new.in_features = new.weight.shape
    else:
        new.out_channels, new.in_channels = new.weight.shape[:2]
    return new


def _slice_norm(norm: nn.Module, rows: list[int]) -> nn.Module:
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
        return copy.deepcopy(norm)  # nn.Identity: nothing per channel
    new = copy.deepcopy(norm)
    idx = _index(rows, norm.running_mean.device if norm.running_mean is not None else None)
    new.num_features = len(rows)
    if norm.affine:
        new.weight = nn.Parameter(norm.weight.detach().index_select(0, idx).clone())
        new.bias = nn.Parameter(norm.bias.detach().index_select(0, idx).clone())
    if norm.running_mean is not None:
        new.running_mean = norm.running_mean.index_select(0, idx).clone()
        new.running_var = norm.running_var.index_select(0, idx).clone()
    return new


def _input_columns(block: nn.Module, kind: str, in_shape: Sequence[int], kept_in: list[int] | None) -> list[int] | None:
    if kept_in is None:
        return None
    if kind == "FCBlock" and isinstance(block.flatten, nn.Flatten):
        spatial = math.prod(in_shape[1:])  # flatten of (C, H, W): channel c owns c*HW .. c*HW+HW-1
        return [c * spatial + j for c in kept_in for j in range(spatial)]
    return kept_in


def extract_subnet(model: nn.Module, task: str) -> SpecialisedSubnet:
    """The specialised subnet of ``task`` in a routed ``model`` (a copy; the model is untouched).

    Args:
        model: A materialized :class:`~mtlsearch.engine.model.MultiTaskModel`.
        task: One of the model's tasks.

    Returns:
        A :class:`SpecialisedSubnet` in the model's train/eval mode; ``subnet(x)`` equals
        ``model(x, [task])[task]``.

    Raises:
        MTLSearchError: an unknown task, a skipped step, an unsupported block or head, or a
            layer where the task keeps no channel.

    Example:
        >>> subnet = extract_subnet(model, "t000").eval()  # doctest: +SKIP
    """
    if task not in model.tasks:
        raise MTLSearchError(f"unknown task {task!r}; the model's tasks are {model.tasks}")
    graph, space = model.graph, model.space
    blocks: list[nn.Module] = []
    kept_all: list[list[int]] = []
    kept_in: list[int] | None = None
    for step in graph.steps(task):
        block = _with_group_norms(model.blocks[model._block_keys[step.node]],
                                  model.norm_group(step.node, task))
        kind = type(block).__name__
        if step.skip:
            raise MTLSearchError(
                f"task {task!r} skips node {step.node!r}; subnet extraction supports routed "
                "(masked or plain) steps only"
            )
        if kind not in _LAYERS and kind != "ResidualBlock":
            raise MTLSearchError(
                f"cannot slice block {step.index} ({kind}) of space {space.name!r}; subnet "
                f"extraction supports {list(SUPPORTED_BLOCKS)} (spaces mlp, small_cnn, vgg16_bn, resnet)"
            )
        channels = space.blocks[step.index].channels
        keep = list(range(channels)) if step.mask is None else [int(i) for i in step.mask.nonzero()[0]]
        if not keep:
            raise MTLSearchError(
                f"task {task!r} keeps no channel of block {step.index}: its output is a constant; "
                "use a larger sigma or wider blocks"
            )
        if kind == "ResidualBlock":
            blocks.append(SlicedResidual(block, kept_in, keep).train(block.training))
            kept_all.append(keep)
            kept_in = keep
            continue
        layer_attr, _, norm_attr = _LAYERS[kind]
        new = copy.deepcopy(block)
        cols = _input_columns(block, kind, space.blocks[step.index].in_shape, kept_in)
        setattr(new, layer_attr, _slice_layer(getattr(block, layer_attr), keep, cols))
        if norm_attr is not None:
            setattr(new, norm_attr, _slice_norm(getattr(block, norm_attr), keep))
        blocks.append(new)
        kept_all.append(keep)
        kept_in = keep
    head = model.heads[model._head_keys[task]]
    if not isinstance(head, VectorHead):
        raise MTLSearchError(
            f"cannot slice the head of task {task!r} ({type(head).__name__}); subnet extraction "
            "supports the default VectorHead"
        )
    new_head = copy.deepcopy(head)
    new_head.linear = _slice_layer(head.linear, None, kept_in)
    subnet = SpecialisedSubnet(task, blocks, new_head, kept_all)
    return subnet.train(model.training)
