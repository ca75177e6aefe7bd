"""The ``mlp`` search space (feature vectors), and the argument checks all built-ins share.

Each block is ``Linear -> BatchNorm1d`` (the pre-activation, where task masks apply), then
``ReLU``. A block whose width equals its input width can be skipped (identity).

Example:
    >>> from mtlsearch import create_space
    >>> space = create_space("mlp", input_shape=(8,), widths=(16, 16))
    >>> [(b.out_shape, b.skip) for b in space.blocks]
    [((16,), 'none'), ((16,), 'identity')]
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from numbers import Integral
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from mtlsearch.errors import SpaceError
from mtlsearch.graph.space import Block, SearchSpace

__all__ = ["LinearBlock", "mlp"]


# --- argument checks shared by the built-in spaces -------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_int(space: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum``, else a :class:`SpaceError`."""
    if not _is_int(value) or int(value) < minimum:
        raise SpaceError(
            f"search space {space!r}: {name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def check_bool(space: str, name: str, value: Any) -> bool:
    """``value`` if it is a ``bool``, else a :class:`SpaceError`."""
    if not isinstance(value, bool):
        raise SpaceError(f"search space {space!r}: {name} must be True or False, got {value!r}")
    return value


def check_ints(
    space: str, name: str, value: Any, *, minimum: int = 1, allow_empty: bool = False
) -> tuple[int, ...]:
    """``value`` as a tuple of ints (each >= ``minimum``), else a :class:`SpaceError`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise SpaceError(
            f"search space {space!r}: {name} must be a list of integers, got {value!r}"
        )
    if not value and not allow_empty:
        raise SpaceError(f"search space {space!r}: {name} must not be empty")
    bad = [v for v in value if not _is_int(v) or int(v) < minimum]
    if bad:
        raise SpaceError(
            f"search space {space!r}: every entry of {name} must be an integer >= {minimum}, "
            f"got {list(value)!r}"
        )
    return tuple(int(v) for v in value)


def check_input_shape(
    space: str, input_shape: Any, ndim: int, hint: str, advice: str = ""
) -> tuple[int, ...]:
    """``input_shape`` as a tuple of ``ndim`` positive ints, else a :class:`SpaceError`.

    ``hint`` is the expected layout, e.g. ``"(C, H, W)"``; ``advice`` (optional) ends the
    message of a wrong number of dimensions with the fix.
    """
    if _is_int(input_shape):
        fix = f"; pass input_shape=({int(input_shape)},)" if ndim == 1 else ""
        raise SpaceError(
            f"search space {space!r}: input_shape must be a tuple {hint}, got the integer "
            f"{input_shape!r}{fix}"
        )
    try:
        shape = check_ints(space, "input_shape", input_shape)
    except SpaceError:
        raise SpaceError(
            f"search space {space!r}: input_shape must be a tuple of positive integers "
            f"{hint} (the shape of one sample, without the batch), got {input_shape!r}"
        ) from None
    if len(shape) != ndim:
        raise SpaceError(
            f"search space {space!r} takes inputs of shape {hint} ({ndim}-D per sample), got "
            f"input_shape={shape} ({len(shape)}-D)" + (f"; {advice}" if advice else "")
        )
    return shape


# --- the space ---------------------------------------------------------------------------------


class LinearBlock(Block):
    """``Linear -> BatchNorm1d`` (optional) | ``ReLU``; identity skip when widths match."""

    def __init__(self, in_features: int, out_features: int, norm: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.BatchNorm1d(out_features) if norm else nn.Identity()
        self.skip = "identity" if in_features == out_features else "none"

    def pre_activation(self, x: Tensor) -> Tensor:
        return self.norm(self.linear(x))

    def activation(self, z: Tensor) -> Tensor:
        return F.relu(z)


def mlp(
    *,
    input_shape: Sequence[int] = (32,),
    widths: Sequence[int] = (64, 64, 64),
    norm: bool = True,
) -> SearchSpace:
    """A multi-layer perceptron for feature vectors: one block per hidden layer.

    Block ``i`` is ``Linear(widths[i-1] -> widths[i]) -> BatchNorm1d`` | ``ReLU`` (the first
    takes the input features). Blocks whose width equals their input width can be skipped.

    Args:
        input_shape: ``(features,)`` of one sample.
        widths: Output width of each block (one block per entry).
        norm: Put a ``BatchNorm1d`` after each linear layer.

    Returns:
        The search space; ``space.kwargs`` rebuilds it with ``create_space("mlp", ...)``.

    Raises:
        SpaceError: A non 1-D ``input_shape``, an empty or non-positive ``widths``, a
            non-boolean ``norm``.

    Example:
        >>> space = mlp(input_shape=(10,), widths=(32, 32))
        >>> space.num_blocks
        2
    """
    shape = check_input_shape(
        "mlp",
        input_shape,
        1,
        "(features,)",
        "flatten each sample to a vector, or use a convolutional space such as 'small_cnn'",
    )
    widths_t = check_ints("mlp", "widths", widths)
    norm = check_bool("mlp", "norm", norm)
    ins = (shape[0], *widths_t[:-1])
    factories = [partial(LinearBlock, i, o, norm) for i, o in zip(ins, widths_t, strict=True)]
    return SearchSpace(
        name="mlp",
        input_shape=shape,
        block_factories=factories,
        kwargs={"input_shape": list(shape), "widths": list(widths_t), "norm": norm},
        description=f"MLP on {shape[0]} features, widths {list(widths_t)}"
        + (" with BatchNorm" if norm else ""),
    )
