"""``timm:<model>`` search spaces: a timm model split at its stages.

``create_space("timm:resnet18")`` (CLI: ``--space timm:resnet18``) builds the model with
``timm.create_model(name, pretrained=False)`` (never a download) and makes one block per
feature stage timm reports (``model.feature_info``: each stage's channels and stride): block
``k`` runs the model's modules after stage ``k-1``'s output up to stage ``k``'s, so the blocks
chain exactly as the model's own ``forward_intermediates`` does (checked when the space is
built). Task masks multiply a stage's output; a stage that keeps its input's shape can be
skipped (identity), the others cannot. The classifier and final pooling are dropped: task
heads replace them.

``weights=PATH`` loads a local state dict of the whole model (``model.state_dict()`` of a
timm model, ``.safetensors`` or ``.pth``/``.pt`` read with ``weights_only=True``; the
classifier's keys may be missing or of another class count) before the split, so every block
and every task-specific copy starts from it; the model's ``pretrained_cfg`` mean and std then
normalise the input inside block 0 (``space.input_normalization``). ``freeze`` is as for
``resnet18``. Without a weights file every block instance draws fresh weights with PyTorch's
default initialisation of each layer (``reset_parameters``), not timm's model-specific one.
Models whose features are not a chain of modules (vision transformers, which
add position embeddings between modules) are refused with the reason.

Install with ``pip install "mtlsearch[timm]"``.

Example:
    >>> space = timm_space("resnet10t", input_shape=(3, 32, 32))  # doctest: +SKIP
    >>> [(b.channels, b.out_shape[1]) for b in space.blocks]  # doctest: +SKIP
    [(64, 16), (64, 8), (128, 4), (256, 2), (512, 1)]
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtlsearch.errors import SpaceError
from mtlsearch.graph.space import Block, SearchSpace

from .mlp import check_input_shape
from .pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NormalizedBlock,
    freeze_block,
    frozen_count,
    load_block_weights,
    read_weights,
    resolve_normalization,
)

__all__ = ["TimmStage", "timm_space", "timm_stages"]


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise SpaceError(
            "timm search spaces need the timm package: pip install \"mtlsearch[timm]\" "
            "(or pip install timm)"
        ) from None
    return timm


class TimmStage(Block):
    """One stage of a timm model: its modules in order (``self.stage``), run as a chain.

    The whole chain is the pre-activation (a task mask multiplies the stage's output).
    """

    def __init__(self, modules: Sequence[tuple[str, nn.Module]], skip: str = "none"):
        super().__init__()
        self.stage = nn.Sequential(OrderedDict(modules))
        self.skip = skip  # type: ignore[assignment]

    def pre_activation(self, x: Tensor) -> Tensor:
        return self.stage(x)


def _unfuse_norm_act(module: nn.Module) -> None:
    """Replace timm's ``BatchNormAct2d`` (a BatchNorm2d subclass that also runs an activation)
    by ``Sequential(bn, drop, act)`` in place, so code that swaps batch norms (task-specific
    statistics, freezing) keeps the activation."""
    from timm.layers import BatchNormAct2d

    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BatchNormAct2d):
                bn = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum,
                                    affine=child.affine,
                                    track_running_stats=child.track_running_stats)
                bn.load_state_dict({k: v for k, v in child.state_dict().items() if "." not in k})
                setattr(parent, name, nn.Sequential(OrderedDict(bn=bn, drop=child.drop, act=child.act)))


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    names = model.pretrained_cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names)


def _load_full(model: nn.Module, name: str, path: str) -> None:
    """Load a whole-model state dict into ``model`` before it is split (the classifier's keys
    are optional: heads replace it); a file that does not fit names the keys."""
    state = read_weights(path)
    classifier = _classifier_prefixes(model)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(classifier)}
    share = {k: (k, v) for k, v in state.items() if not k.startswith(classifier)}
    load_block_weights(
        [model], [share], source=path, expected=[own],
        hint=(f"save the weights of timm.create_model({name!r}).state_dict() (same model name "
              "and model options)"),
    )


def timm_stages(
    model: nn.Module, name: str, input_shape: Sequence[int], *, check: bool = True
) -> list[list[tuple[str, nn.Module]]]:
    """The model's modules grouped by feature stage (``feature_info``); with ``check``,
    checked to reproduce ``forward_intermediates`` on a random input of ``input_shape``."""
    from timm.models._features import FeatureListNet

    info = getattr(model, "feature_info", None)
    if not info:
        raise SpaceError(f"timm model {name!r} reports no feature stages (feature_info); pick a "
                         "convolutional model such as resnet18, convnext_tiny or efficientnet_b0")
    indices = tuple(range(len(info)))
    chain = None
    for flatten in (False, True):  # ResNets name whole stages, EfficientNets blocks.N inside one
        try:
            chain = FeatureListNet(model, out_indices=indices, flatten_sequential=flatten)
            break
        except AssertionError:
            continue
    if chain is None:
        raise SpaceError(f"timm model {name!r}: its feature stages are not modules of the model, "
                         "so it cannot be split into blocks")
    stages: list[list[tuple[str, nn.Module]]] = [[]]
    for key, module in chain.items():
        stages[-1].append((key, module))
        if key in chain.return_layers:
            stages.append([])
    stages = [s for s in stages if s]
    if len(stages) != len(info) or not all(s[-1][0] in chain.return_layers for s in stages):
        raise SpaceError(f"timm model {name!r}: its feature stages do not split its modules")
    if check:
        _check_chain(model, name, stages, input_shape)
    return stages


def _check_chain(model: nn.Module, name: str, stages: list, input_shape: Sequence[int]) -> None:
    was = model.training
    model.eval()
    x = torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            expected = model.forward_intermediates(x, intermediates_only=True)
            got, y = [], x
            for stage in stages:
                for _, module in stage:
                    y = module(y)
                got.append(y)
    except Exception as exc:
        raise SpaceError(
            f"timm model {name!r} cannot run as a chain of its stage modules on inputs of shape "
            f"{tuple(input_shape)} ({type(exc).__name__}: {exc}); vision transformers and other "
            "models that add tensors between modules are not supported: pick a convolutional "
            "model, or check input_shape"
        ) from None
    finally:
        model.train(was)
    if len(expected) != len(got) or not all(
        a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(expected, got)
    ):
        raise SpaceError(f"timm model {name!r}: running its stage modules in order does not give "
                         "its own features, so it cannot be split into blocks; pick a "
                         "convolutional model such as resnet18 or convnext_tiny")


def _build(name: str, model_kwargs: dict[str, Any]) -> nn.Module:
    timm = _timm()
    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.6)
        raise SpaceError(f"timm has no model {name!r}" + (f"; similar: {close}" if close else "")
                         + "; see timm.list_models() for every name")
    try:
        return timm.create_model(name, pretrained=False, **model_kwargs)
    except TypeError as exc:
        raise SpaceError(f"timm model {name!r} does not take model_kwargs {model_kwargs}: {exc}") from None


def timm_space(
    model: str,
    *,
    input_shape: Sequence[int] = (3, 224, 224),
    weights: str | None = None,
    freeze: bool | str | int = False,
    normalize: Any = None,
    model_kwargs: dict[str, Any] | None = None,
) -> SearchSpace:
    """A timm model as a search space: one block per feature stage.

    Args:
        model: A timm model name (``timm.list_models()``), e.g. ``"resnet18"``.
        input_shape: ``(C, H, W)`` of one sample.
        weights: A local state dict of the whole model; every block starts from it.
        freeze: ``True`` (every block), ``"stem"`` (block 0) or ``N`` (blocks ``0..N-1``)
            keep their weights and batch-norm statistics; ``False`` fine-tunes everything.
        normalize: Input normalisation inside block 0: ``None`` (the model's
            ``pretrained_cfg`` mean/std with ``weights``, none without), ``True``, ``False``
            or ``{"mean": [...], "std": [...]}``. Inputs are expected in ``[0, 1]``.
        model_kwargs: Extra ``timm.create_model`` options (e.g. ``{"drop_path_rate": 0.1}``);
            ``in_chans`` follows ``input_shape``.

    Returns:
        The search space; ``space.kwargs`` rebuilds it with ``create_space("timm", ...)``.

    Raises:
        SpaceError: timm missing, an unknown model (similar names listed), a model that is not
            a chain of stages, a weights file that does not fit (keys named), bad options.
    """
    if not isinstance(model, str) or not model:
        raise SpaceError(f"search space 'timm': model must be a timm model name, got {model!r}")
    label = f"timm:{model}"
    shape = check_input_shape(label, input_shape, 3, "(C, H, W)",
                              "give grey-scale images a channel axis, e.g. (1, H, W)")
    extra = dict(model_kwargs or {})
    if shape[0] != 3:
        extra.setdefault("in_chans", shape[0])
    path = None if weights is None else str(_resolve(weights, label))
    info: dict[str, Any] = {}

    def build(check: bool = False) -> list[Block]:
        with torch.device("cpu"):  # real tensors even while load() sizes a model on "meta"
            return _stages_of(check)

    def _stages_of(check: bool) -> list[Block]:
        net = _build(model, extra)
        if path is not None:
            _load_full(net, model, path)
        stages = timm_stages(net, model, shape, check=check)
        info["channels"] = [f["num_chs"] for f in net.feature_info]
        cfg = net.pretrained_cfg
        info["mean_std"] = (tuple(cfg.get("mean") or IMAGENET_MEAN),
                            tuple(cfg.get("std") or IMAGENET_STD))
        blocks: list[Block] = []
        with torch.no_grad():
            x = torch.zeros(1, *shape)
            for modules in stages:
                block = TimmStage(modules)
                y = block.eval()(x)
                block.skip = "identity" if y.shape == x.shape else "none"
                _unfuse_norm_act(block)
                blocks.append(block.train())
                x = y
        return blocks

    with torch.random.fork_rng(devices=[]):
        probe = build(check=True)
    frozen = frozen_count(label, freeze, len(probe))
    norm = resolve_normalization(label, normalize, shape[0], info["mean_std"], path is not None)
    record: dict[str, Any] = {"model": model, "input_shape": list(shape)}
    if path is not None:
        record["weights"] = path
    if frozen:
        record["freeze"] = freeze
    if norm is not None:
        record["normalize"] = {"mean": list(norm[0]), "std": list(norm[1])}
    if model_kwargs:
        record["model_kwargs"] = dict(model_kwargs)

    # Module-level functions and partials only: a space goes to worker processes (pickled).
    factories: list[Callable[[], Block]]
    if path is not None:  # one pretrained set, copied for every branch
        templates = [_finish(i, b, frozen, norm) for i, b in enumerate(probe)]
        factories = [partial(_on_default_device, copy.deepcopy, t) for t in templates]
    else:  # fresh weights per instance: PyTorch's default initialisation of every layer
        factories = [partial(_on_default_device, _fresh_block, i, t, frozen, norm)
                     for i, t in enumerate(probe)]
    return SearchSpace(
        name="timm",
        input_shape=shape,
        block_factories=factories,
        kwargs=record,
        description=(f"timm {model}: {len(probe)} stages of {info['channels']} channels"
                     + (", pretrained" if path else "") + (f", {frozen} frozen" if frozen else "")),
        keeps_weights=path is not None,
        input_normalization=norm,
    )


def _finish(i: int, block: Block, frozen: int, norm: Any) -> Block:
    """Block ``i`` frozen when it is among the first ``frozen``; the first normalises its
    inputs when the weights are pretrained."""
    if i < frozen:
        freeze_block(block)
    if i == 0 and norm is not None:
        block = NormalizedBlock(block, norm[0], norm[1])
    return block


def _fresh_block(i: int, template: Block, frozen: int, norm: Any) -> Block:
    return _finish(i, _fresh(template), frozen, norm)


def _on_default_device(make: Callable[..., Block], *args: Any) -> Block:
    """``make(*args)`` moved to the default device, as a module built there would be (under
    ``torch.device("meta")``, how ``load()`` sizes a model, a shape-only skeleton)."""
    block = make(*args)
    device = torch.get_default_device()
    return block if device.type == "cpu" else block.to(device)


def _fresh(template: Block) -> Block:
    """A copy of ``template`` with every layer's parameters drawn anew (``reset_parameters``):
    building the whole timm model for every block instance would cost seconds per graph."""
    clone = copy.deepcopy(template)
    for module in clone.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return clone


def _resolve(weights: Any, label: str) -> Path:
    if not isinstance(weights, (str, Path)):
        raise SpaceError(f"search space {label!r}: weights must be a file path, got {weights!r}")
    return Path(weights).expanduser().resolve()
