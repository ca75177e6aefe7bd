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

from mtlsearch.hookspecs import SpaceRegistrar, hookimpl
from mtlsearch.registry import lazy_exports

__all__ = [
    "SPACES",
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

#: name, ``"submodule:factory"``, the first line of the factory's docstring (what
#: ``mtlsearch spaces`` shows, checked against the factory when it is first used).
SPACES: tuple[tuple[str, str, str], ...] = (
    ("mlp", "mlp:mlp",
     "A multi-layer perceptron for feature vectors: one block per hidden layer."),
    ("small_cnn", "small_cnn:small_cnn",
     "A small convolutional network: one ``Conv3x3 -> BN | ReLU (-> MaxPool)`` per block."),
    ("resnet18", "resnet:resnet18",
     "ResNet-18 as 9 blocks: the stem, then the 8 BasicBlocks of stages ``[2, 2, 2, 2]``."),
    ("resnet34", "resnet:resnet34",
     "ResNet-34 as 17 blocks: the stem, then the 16 BasicBlocks of stages ``[3, 4, 6, 3]``."),
    ("vgg16_bn", "vgg:vgg16_bn",
     "Thin-ω VGG-16 with batch normalisation: 13 convolution blocks and 2 FC blocks."),
    ("dilated_resnet18", "dilated_resnet:dilated_resnet18",
     "DeepLab-ResNet-18 as 9 blocks (stem + 8 residual blocks), for dense heads."),
    ("dilated_resnet34", "dilated_resnet:dilated_resnet34",
     "DeepLab-ResNet-34 as 17 blocks (AdaShare's NYU v2 backbone); options as for"),
    ("timm", "timm_space:timm_space", "A timm model as a search space: one block per feature stage."),
)

#: Tiny sizes: what each space's conformance test builds.
TINY: dict[str, dict[str, object]] = {
    "mlp": {"input_shape": (6,), "widths": (8, 8)},
    "small_cnn": {"input_shape": (1, 8, 8), "channels": (4, 8, 8), "pool_after": (0,)},
    "resnet18": {"input_shape": (3, 16, 16), "width": 4, "small_input": True},
    "resnet34": {"input_shape": (3, 16, 16), "width": 4, "small_input": True},
    "vgg16_bn": {"input_shape": (3, 8, 8), "omega": 4},
    "dilated_resnet18": {"input_shape": (3, 16, 16), "width": 4},
    "dilated_resnet34": {"input_shape": (3, 16, 16), "width": 4},
    "timm": {"model": "test_resnet", "input_shape": (3, 32, 32)},  # needs the timm extra
}

# The factories import torch (and torchvision): only on first use.
_lazy = lazy_exports(__name__, {
    "mlp": ".mlp", "small_cnn": ".small_cnn", "resnet18": ".resnet", "resnet34": ".resnet",
    "load_torchvision_resnet": ".resnet", "vgg16_bn": ".vgg",
    "dilated_resnet18": ".dilated_resnet", "dilated_resnet34": ".dilated_resnet",
})


def __getattr__(name: str) -> object:
    if name == "SPACE_FACTORIES":  # {name: factory} of the built-ins (imports them all)
        from mtlsearch.registry import resolve

        value = {n: resolve(f"{__name__}.{where}") for n, where, _ in SPACES}
        globals()[name] = value
        return value
    return _lazy(name)


@hookimpl
def register_search_spaces(register: SpaceRegistrar) -> None:
    """Contribute the built-in spaces, lazily, each with the tiny size its test builds."""
    for name, where, description in SPACES:
        register(name, f"{__name__}.{where}", tiny=TINY[name], description=description)
