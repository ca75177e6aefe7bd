"""Tests of the built-in search spaces (mlp, small_cnn, resnet18/34, vgg16_bn)."""

from __future__ import annotations

import json
import math
import pickle
import time

import pytest
import torch
import torchvision
from torch import nn

from mtlsearch import SpaceError, TaskSpec, create_space, from_modules, search_spaces
from mtlsearch.errors import MTLSearchError
from mtlsearch.registry import list_spaces, tiny_settings

# Tiny settings per space, as each registration carries them, so every check runs in milliseconds.
SMALL: dict[str, dict] = {n: tiny_settings("search space", n) for n in list_spaces()}

SPACE_FACTORIES = search_spaces.SPACE_FACTORIES
load_torchvision_resnet = search_spaces.load_torchvision_resnet
vgg_plan = search_spaces.vgg.vgg_plan

SPACES = sorted(set(list_spaces()) | set(SMALL))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _space(name: str):
    return create_space(name, **SMALL.get(name, {}))


def _input(shape, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, *shape)


def test_builtins_are_registered():
    assert set(SPACE_FACTORIES) == {
        "mlp", "small_cnn", "resnet18", "resnet34", "vgg16_bn", "dilated_resnet18", "dilated_resnet34",
        "timm",
    }
    assert set(SPACE_FACTORIES) <= set(list_spaces())


@pytest.mark.parametrize("name", SPACES)
def test_blocks_chain(name):
    space = _space(name)
    specs = space.blocks
    assert len(specs) == space.num_blocks
    assert specs[0].in_shape == space.input_shape
    for prev, nxt in zip(specs, specs[1:], strict=False):
        assert prev.out_shape == nxt.in_shape
    x = _input(space.input_shape)
    with torch.no_grad():
        for spec in specs:
            block = space.make_block(spec.index).eval()
            assert block.skip == spec.skip  # the space never has to correct a block's claim
            x = block(x)
            assert tuple(x.shape[1:]) == spec.out_shape
            assert spec.channels == x.shape[1]


@pytest.mark.parametrize("name", SPACES)
def test_make_block_gives_fresh_weights(name):
    space = _space(name)
    for index in range(space.num_blocks):
        a, b = space.make_block(index), space.make_block(index)
        assert a is not b
        pa, pb = list(a.parameters()), list(b.parameters())
        assert all(p is not q for p, q in zip(pa, pb, strict=True))
        weights = [(p, q) for p, q in zip(pa, pb, strict=True) if p.dim() > 1]
        assert weights and any(not torch.equal(p, q) for p, q in weights)


@pytest.mark.parametrize("name", SPACES)
def test_masks(name):
    space = _space(name)
    for spec in space.blocks:
        block = space.make_block(spec.index).eval()
        x = _input(spec.in_shape)
        channels = spec.channels
        with torch.no_grad():
            plain = block(x)
            z = block.pre_activation(x)
            assert z.shape[1] == channels
            assert torch.allclose(block.activation(z), plain)
            assert torch.allclose(block(x, torch.ones(channels)), plain)
            assert torch.allclose(block(x, torch.ones(x.shape[0], channels)), plain)
            # a live channel (a pretrained-style block ending in ReLU may have dead ones)
            off = int(z.abs().reshape(z.shape[0], channels, -1).sum(dim=(0, 2)).argmax())
            mask = torch.ones(channels)
            mask[off] = 0
            masked = block(x, mask)
        # a zeroed channel contributes nothing (ReLU(0) = 0, pooled or not) ...
        assert torch.count_nonzero(z[:, off]) > 0
        assert torch.count_nonzero(masked[:, off]) == 0
        zeroed = z.clone()
        zeroed[:, off] = 0
        assert torch.allclose(masked, block.activation(zeroed))
        # ... and the other channels are untouched
        keep = [c for c in range(channels) if c != off]
        assert torch.allclose(masked[:, keep], plain[:, keep])


@pytest.mark.parametrize("name", SPACES)
def test_skip_semantics(name):
    space = _space(name)
    for spec in space.blocks:
        block = space.make_block(spec.index).eval()
        x = _input(spec.in_shape)
        with torch.no_grad():
            if spec.skip == "identity":
                assert spec.in_shape == spec.out_shape
                assert torch.equal(block.shortcut(x), x)
            elif spec.skip == "projection":
                assert isinstance(block.projection, nn.Module)
                out = block.shortcut(x)
                assert tuple(out.shape[1:]) == spec.out_shape
                assert torch.allclose(out, block.projection(x))
                cost = space.skip_cost(spec.index)
                assert cost.params == sum(p.numel() for p in block.projection.parameters())
                assert cost.macs > 0
            else:
                assert spec.skip == "none"
                with pytest.raises(SpaceError):
                    block.shortcut(x)


@pytest.mark.parametrize("name", SPACES)
def test_rebuild_from_kwargs(name):
    space = _space(name)
    assert space.name == name
    spec = json.loads(json.dumps(space.spec()))  # what an exported architecture stores
    assert spec == space.spec()
    again = create_space(spec["name"], **spec["kwargs"])
    assert again.kwargs == space.kwargs
    assert again.input_shape == space.input_shape
    assert again.blocks == space.blocks
    assert again.description == space.description


@pytest.mark.parametrize("name", SPACES)
def test_costs_and_heads(name):
    space = _space(name)
    for spec in space.blocks:
        block = space.make_block(spec.index)
        cost = space.block_cost(spec.index)
        assert cost.params == sum(p.numel() for p in block.parameters())
        assert cost.macs > 0
    head = space.make_head(TaskSpec("digit", kind="multiclass", num_classes=5))
    feats = _input(space.blocks[-1].out_shape, batch=2)
    assert head(feats).shape == (2, 5)


# --- mlp ---------------------------------------------------------------------------------------


def test_mlp_blocks_and_costs():
    space = create_space("mlp", input_shape=(6,), widths=(8, 8, 4), norm=True)
    assert [s.out_shape for s in space.blocks] == [(8,), (8,), (4,)]
    assert [s.skip for s in space.blocks] == ["none", "identity", "none"]
    assert [space.block_cost(i).macs for i in range(3)] == [6 * 8, 8 * 8, 8 * 4]
    assert space.block_cost(0).params == 6 * 8 + 8 + 2 * 8  # linear + BatchNorm1d
    plain = create_space("mlp", input_shape=(6,), widths=(8,), norm=False)
    assert plain.block_cost(0).params == 6 * 8 + 8
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.make_block(0).modules())


# --- small_cnn ---------------------------------------------------------------------------------


def test_small_cnn_shapes_macs_and_speed():
    space = create_space("small_cnn", input_shape=(1, 12, 24))
    assert [s.out_shape for s in space.blocks] == [(16, 6, 12), (32, 3, 6), (32, 3, 6), (32, 3, 6)]
    assert [s.skip for s in space.blocks] == ["none", "none", "identity", "identity"]
    assert [s.downsamples for s in space.blocks] == [0, 1, 2, 2]
    # conv MACs by hand: out_channels * H_out * W_out * (3 * 3 * in_channels), before pooling
    assert space.block_cost(0).macs == 16 * 12 * 24 * 9 * 1
    assert space.block_cost(1).macs == 32 * 6 * 12 * 9 * 16
    assert space.block_cost(2).macs == 32 * 3 * 6 * 9 * 32
    assert space.block_cost(1).params == 32 * 16 * 9 + 2 * 32  # bias-free conv + BN
    digits = create_space("small_cnn", input_shape=(1, 8, 8))
    assert digits.blocks[-1].out_shape == (32, 2, 2)

    blocks = [space.make_block(i).eval() for i in range(space.num_blocks)]
    x = torch.randn(64, 1, 12, 24)
    best = math.inf
    with torch.no_grad():
        for _ in range(5):
            t0 = time.perf_counter()
            y = x
            for b in blocks:
                y = b(y)
            best = min(best, time.perf_counter() - t0)
    assert best < 0.05  # "a few ms" on a laptop CPU; generous for loaded CI machines


def test_small_cnn_custom_pooling():
    space = create_space("small_cnn", input_shape=(3, 8, 8), channels=[4, 4, 8], pool_after=[])
    assert [s.out_shape for s in space.blocks] == [(4, 8, 8), (4, 8, 8), (8, 8, 8)]
    assert [s.skip for s in space.blocks] == ["none", "identity", "none"]


# --- resnet ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("resnet18", {"input_shape": (3, 64, 64)}, [0, 2, 2, 2, 3, 3, 4, 4, 5]),
        (
            "resnet18",
            {"input_shape": (3, 32, 32), "small_input": True},
            [0, 0, 0, 0, 1, 1, 2, 2, 3],
        ),
        (
            "resnet34",
            {"input_shape": (3, 64, 64)},
            [0, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5, 5],
        ),
    ],
)
def test_resnet_structure(name, kwargs, expected):
    space = create_space(name, width=4, **kwargs)
    specs = space.blocks
    assert [s.downsamples for s in specs] == expected
    layers = (2, 2, 2, 2) if name == "resnet18" else (3, 4, 6, 3)
    assert space.num_blocks == 1 + sum(layers)
    firsts = {1 + sum(layers[:k]) for k in range(1, 4)}  # first block of stages 2-4
    skips = ["none"] + ["projection" if i in firsts else "identity" for i in range(1, len(specs))]
    assert [s.skip for s in specs] == skips
    assert [s.channels for s in specs][-1] == 32  # 8 x width
    stem = space.make_block(0)
    assert stem.conv1.kernel_size == ((3, 3) if kwargs.get("small_input") else (7, 7))
    block = space.make_block(1)
    assert isinstance(block.block, torchvision.models.resnet.BasicBlock)
    # projection MACs by hand: 1x1 conv with stride 2, 4 -> 8 channels
    first = min(firsts)
    h, w = specs[first].out_shape[1:]
    assert space.skip_cost(first).macs == 8 * h * w * 4


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_resnet_matches_torchvision(name):
    """Chaining the blocks with torchvision's weights reproduces torchvision's features."""
    space = create_space(name, input_shape=(3, 64, 64), width=64, small_input=False)
    blocks = [space.make_block(i) for i in range(space.num_blocks)]
    model = getattr(torchvision.models, name)(weights=None)
    # non-trivial BN statistics, so that running means/vars must be copied too
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    load_torchvision_resnet(blocks, model)
    model.eval()
    trunk = nn.Sequential(*list(model.children())[:-2])  # everything before avgpool and fc
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = trunk(x)
        y = x
        for block in blocks:
            y = block.eval()(y)
    assert y.shape == expected.shape == (2, 512, 2, 2)
    assert torch.allclose(y, expected, atol=1e-5, rtol=1e-4)
    # the residual blocks' own forward is torchvision's unchanged BasicBlock.forward
    with torch.no_grad():
        h = blocks[0](x)
        assert torch.allclose(blocks[1](h), blocks[1].block(h.clone()), atol=1e-6)


def test_load_torchvision_resnet_mismatch():
    small = create_space("resnet18", input_shape=(3, 32, 32), width=8)
    blocks = [small.make_block(i) for i in range(small.num_blocks)]
    with pytest.raises(SpaceError, match="width=64"):
        load_torchvision_resnet(blocks, torchvision.models.resnet18(weights=None))
    deeper = create_space("resnet34", input_shape=(3, 32, 32), width=8)
    blocks = [deeper.make_block(i) for i in range(deeper.num_blocks)]
    with pytest.raises(SpaceError, match="same depth"):
        load_torchvision_resnet(blocks, torchvision.models.resnet18(weights=None))


# --- vgg16_bn ----------------------------------------------------------------------------------


def test_vgg_thin_omega_caps():
    cfg = [v for v in torchvision.models.vgg.cfgs["D"] if v != "M"]
    assert len(cfg) == 13
    for omega in (4, 100):
        space = create_space("vgg16_bn", input_shape=(3, 32, 32), omega=omega)
        specs = space.blocks
        assert space.num_blocks == 15
        assert [s.channels for s in specs[:13]] == [min(omega, v) for v in cfg]
        assert [s.out_shape for s in specs[13:]] == [(2 * omega,), (2 * omega,)]
    full, _ = vgg_plan((3, 224, 224), 512)
    assert [o for _, o, _ in full] == cfg  # omega >= 512 is VGG-16 itself


def test_vgg_structure():
    space = create_space("vgg16_bn", input_shape=(3, 32, 32), omega=4)
    specs = space.blocks
    pools = {1, 3, 6, 9, 12}  # the convolutions followed by 'M' in cfgs["D"]
    assert [s.downsamples for s in specs] == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5]
    assert [s.skip for s in specs] == (
        ["none"]
        + ["none" if i in pools else "identity" for i in range(1, 13)]
        + ["none", "identity"]
    )
    assert specs[12].out_shape == (4, 1, 1)
    # conv MACs by hand (block 2: 4 -> 4 channels on 16x16), FC MACs (4 -> 8 -> 8)
    assert space.block_cost(2).macs == 4 * 16 * 16 * 9 * 4
    assert space.block_cost(2).params == 4 * 4 * 9 + 4 + 2 * 4  # conv with bias + BN
    assert space.block_cost(13).macs == 4 * 8
    assert space.block_cost(14).macs == 8 * 8
    block = space.make_block(13)
    assert isinstance(block.dropout, nn.Dropout) and block.dropout.p == 0.5
    no_fc = create_space("vgg16_bn", input_shape=(3, 32, 32), omega=4, fc=False)
    assert no_fc.num_blocks == 13 and no_fc.blocks[-1].out_shape == (4, 1, 1)


def test_vgg_small_input_skips_poolings():
    space = create_space("vgg16_bn", input_shape=(1, 12, 24), omega=4)
    specs = space.blocks
    # 12x24 -> 6x12 -> 3x6 -> 1x3; the last two poolings would reach height 0, so are left out
    assert specs[6].out_shape == (4, 1, 3)
    assert all(s.out_shape == (4, 1, 3) for s in specs[7:13])
    assert specs[13].in_shape == (4, 1, 3) and specs[13].out_shape == (8,)
    assert "3 max-poolings" in space.description
    tiny = create_space("vgg16_bn", input_shape=(3, 1, 1), omega=4, fc=False)
    assert tiny.blocks[-1].out_shape == (4, 1, 1)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("mlp", {"input_shape": (1, 8, 8)}, "flatten"),
        ("mlp", {"input_shape": 8}, r"input_shape=\(8,\)"),
        ("mlp", {"widths": ()}, "widths must not be empty"),
        ("mlp", {"widths": (8, 0)}, "widths"),
        ("mlp", {"widths": (8, 2.5)}, "widths"),
        ("mlp", {"norm": "yes"}, "norm must be True or False"),
        ("small_cnn", {"input_shape": (12, 24)}, r"\(1, H, W\)"),
        ("small_cnn", {"input_shape": (1, -2, 4)}, "positive integers"),
        ("small_cnn", {"channels": [8, 8], "pool_after": [2]}, "pool_after"),
        ("small_cnn", {"pool_after": [0, 0]}, "repeats"),
        ("small_cnn", {"input_shape": (1, 2, 2), "pool_after": [0, 1]}, "below 1x1"),
        ("resnet18", {"input_shape": (64, 64)}, r"\(C, H, W\)"),
        ("resnet18", {"width": 0}, "width"),
        ("resnet34", {"small_input": 1}, "small_input"),
        ("vgg16_bn", {"omega": -1}, "omega"),
        ("vgg16_bn", {"fc": None}, "fc"),
        ("vgg16_bn", {"dropout": 1.0}, "dropout"),
        ("vgg16_bn", {"input_shape": "3x32x32"}, "input_shape"),
    ],
)
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(SpaceError, match=match):
        create_space(name, **kwargs)


def test_unknown_argument():
    with pytest.raises(MTLSearchError, match="cannot take these arguments"):
        create_space("mlp", input_shape=(4,), depth=3)


def test_from_modules_custom_space():
    space = from_modules(
        [nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()), nn.Conv2d(4, 4, 3, padding=1)],
        input_shape=(1, 8, 8),
        name="mine",
    )
    assert [s.skip for s in space.blocks] == ["none", "identity"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_spaces_pickle(name):
    """Built-in spaces (and their blocks) pickle, e.g. for worker processes."""
    space = _space(name)
    again = pickle.loads(pickle.dumps(space))
    assert again.blocks == space.blocks
    block = pickle.loads(pickle.dumps(space.make_block(space.num_blocks - 1)))
    assert isinstance(block, type(space.make_block(space.num_blocks - 1)))
