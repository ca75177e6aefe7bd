"""Dense heads and the dilated ResNet space: shapes, output stride, reference equivalence."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.resnet import BasicBlock

from mtlsearch.errors import SpaceError, TaskError
from mtlsearch.registry import create_space
from mtlsearch.search_spaces.dilated_resnet import DilatedResidualBlock
from mtlsearch.tasks.dense.heads import ASPPHead, AtrousConv, PyramidPoolingHead, make_dense_head
from mtlsearch.tasks.kinds import TaskSpec


@pytest.mark.parametrize(
    ("kwargs", "feature"),
    [
        ({"output_stride": 8}, 8),
        ({"output_stride": 16}, 4),
        ({"output_stride": 32}, 2),
        ({"output_stride": 8, "small_input": True}, 32),
    ],
)
def test_output_stride(kwargs, feature):
    space = create_space("dilated_resnet18", input_shape=(3, 64, 64), width=4, **kwargs)
    assert space.blocks[-1].out_shape == (32, feature, feature)
    x = torch.randn(1, 3, 64, 64)
    h = x
    for i in range(space.num_blocks):
        h = space.make_block(i).eval()(h)
    assert h.shape == (1, 32, feature, feature)


def test_dilations_follow_deeplab():
    space = create_space("dilated_resnet34", input_shape=(3, 32, 32), width=4)
    assert space.num_blocks == 17
    dil = [space.make_block(i).conv1.dilation[0] for i in range(1, 17)]
    # stages [3, 4, 6, 3]: stage 3 dilation 2 (its first block 1), stage 4 dilation 4 (first 2)
    assert dil == [1] * 3 + [1] * 4 + [1] + [2] * 5 + [2] + [4] * 2
    skips = [b.skip for b in space.blocks]
    assert skips[0] == "none" and skips.count("projection") == 3


def test_undilated_block_equals_torchvision_basic_block():
    block = DilatedResidualBlock(8, 16, 2, 1).eval()
    down = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1, stride=2, bias=False), torch.nn.BatchNorm2d(16))
    ref = BasicBlock(8, 16, stride=2, downsample=down).eval()
    ref.load_state_dict(block.state_dict())
    x = torch.randn(2, 8, 10, 10)
    torch.testing.assert_close(block(x), ref(x))


def test_dilated_block_keeps_resolution_and_skips_by_identity():
    block = DilatedResidualBlock(8, 8, 1, 4).eval()
    x = torch.randn(1, 8, 6, 6)
    assert block(x).shape == x.shape and block.skip == "identity"
    torch.testing.assert_close(block.shortcut(x), x)


def test_bad_space_options():
    with pytest.raises(SpaceError, match="output_stride"):
        create_space("dilated_resnet18", input_shape=(3, 32, 32), output_stride=4)
    with pytest.raises(SpaceError):
        create_space("dilated_resnet18", input_shape=(32, 32))


def test_aspp_head_shapes_and_branches():
    head = ASPPHead(in_channels=16, out_channels=5, size=(32, 40))
    assert [b[0].dilation[0] for b in head.branches] == [6, 12, 18, 24]
    assert head(torch.randn(2, 16, 4, 5)).shape == (2, 5, 32, 40)
    assert ASPPHead(in_channels=16, out_channels=1)(torch.randn(1, 16, 4, 4)).shape == (1, 1, 4, 4)


def test_aspp_sums_its_branches():
    head = ASPPHead(in_channels=4, out_channels=2, dilations=(1, 2)).eval()
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(head(x), head.branches[0](x) + head.branches[1](x))


def test_pyramid_pooling_head_shapes_and_bins():
    head = PyramidPoolingHead(in_channels=8, out_channels=3, feature_size=(4, 4), size=(32, 32))
    assert head.bins == [1, 2, 3]  # 6 is larger than the 4x4 map
    assert head(torch.randn(2, 8, 4, 4)).shape == (2, 3, 32, 32)


def test_space_builds_dense_heads_from_task_options():
    space = create_space("dilated_resnet18", input_shape=(3, 32, 32), width=4)
    for kind, kwargs, channels in [
        ("segmentation", {"num_classes": 7}, 7),
        ("depth", {}, 1),
        ("normals", {}, 3),
        ("edges", {"out_dim": 2}, 2),
    ]:
        for head in ("aspp", "ppm"):
            spec = TaskSpec("t", kind=kind, options={"size": [32, 32], "head": head}, **kwargs)
            out = space.make_head(spec).eval()(torch.randn(2, *space.blocks[-1].out_shape))
            assert out.shape == (2, channels, 32, 32)


def test_dense_head_on_vector_features_is_refused():
    with pytest.raises(TaskError, match="feature maps"):
        make_dense_head({}, (16,), 3, task="depth")


@pytest.mark.parametrize("size", [3, 4, 7])
def test_atrous_shortcut_equals_the_padded_convolution(size):
    conv = AtrousConv(3, 2, dilation=6)
    x = torch.randn(2, 3, size, size)
    ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=6, dilation=6)
    torch.testing.assert_close(conv(x), ref)
