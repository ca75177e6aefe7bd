"""Built-in search spaces, registered through the ``mtlsearch`` entry-point group.

====================  =========================================================================
``mlp``               Linear -> BatchNorm1d | ReLU blocks, for feature vectors.
``small_cnn``         Conv3x3 -> BatchNorm2d | ReLU (-> MaxPool) blocks, for small images.
``resnet18``          torchvision's ResNet-18: stem + 8 residual BasicBlocks.
``resnet34``          torchvision's ResNet-34: stem + 16 residual BasicBlocks.
``vgg16_bn``          VGG-16-BN, thin-ω (Branched Multi-Task Networks): 13 conv + 2 FC blocks.
``dilated_resnet18``  DeepLab-ResNet-18 (output stride 8) for dense tasks: stem + 8 blocks.
``dilated_resnet34``  DeepLab-ResNet-34 (output stride 8) for dense tasks: stem + 16 blocks.
====================  =========================================================================

Example:
    >>> from mtlsearch import create_space
    >>> create_space("small_cnn", input_shape=(1, 8, 8)).num_blocks
    4
"""

from __future__ import annotations

from collections.abc import Callable

from mtlsearch.hookspecs import SpaceRegistrar, hookimpl

from .dilated_resnet import dilated_resnet18, dilated_resnet34
from .mlp import mlp
from .resnet import load_torchvision_resnet, resnet18, resnet34
from .small_cnn import small_cnn
from .vgg import vgg16_bn

__all__ = [
    "SPACE_FACTORIES",
    "dilated_resnet18",
    "dilated_resnet34",
    "load_torchvision_resnet",
    "mlp",
    "resnet18",
    "resnet34",
    "small_cnn",
    "vgg16_bn",
]

SPACE_FACTORIES: dict[str, Callable[..., object]] = {
    "mlp": mlp,
    "small_cnn": small_cnn,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "vgg16_bn": vgg16_bn,
    "dilated_resnet18": dilated_resnet18,
    "dilated_resnet34": dilated_resnet34,
}


@hookimpl
def register_search_spaces(register: SpaceRegistrar) -> None:
    """Contribute the built-in spaces, each with the tiny size its conformance test builds."""
    tiny: dict[str, dict[str, object]] = {
        "mlp": {"input_shape": (6,), "widths": (8, 8)},
        "small_cnn": {"input_shape": (1, 8, 8), "channels": (4, 8, 8), "pool_after": (0,)},
        "resnet18": {"input_shape": (3, 16, 16), "width": 4, "small_input": True},
        "resnet34": {"input_shape": (3, 16, 16), "width": 4, "small_input": True},
        "vgg16_bn": {"input_shape": (3, 8, 8), "omega": 4},
        "dilated_resnet18": {"input_shape": (3, 16, 16), "width": 4},
        "dilated_resnet34": {"input_shape": (3, 16, 16), "width": 4},
    }
    for name, factory in SPACE_FACTORIES.items():
        register(name, factory, tiny=tiny[name])
