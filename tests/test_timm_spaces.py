"""``timm:<model>`` search spaces: split at feature stages (channels and strides from
``feature_info``), local weights, freezing, normalisation from ``pretrained_cfg``, refusals,
conformance, and export / load / ONNX through the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")

from safetensors.torch import save_file  # noqa: E402
from timm.layers import BatchNormAct2d  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize  # noqa: E402
from mtlsearch.errors import SpaceError  # noqa: E402
from mtlsearch.export import export_model, load, predict  # noqa: E402
from mtlsearch.registry import list_spaces  # noqa: E402
from mtlsearch.search_spaces.pretrained import NormalizedBlock  # noqa: E402
from mtlsearch.search_spaces.timm_space import timm_space  # noqa: E402
from mtlsearch.testing import check_space  # noqa: E402

SHAPE = (3, 32, 32)
TASKS = [TaskSpec("a"), TaskSpec("b", kind="multiclass", num_classes=3)]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def registered():
    """``timm`` is a built-in space (search_spaces/__init__.py's table)."""
    assert "timm" in list_spaces()


def _weights(tmp_path, model: str = "test_resnet", suffix: str = ".safetensors", **kwargs):
    """A random whole-model state dict of ``model``, saved as timm models save theirs."""
    net = timm.create_model(model, pretrained=False, **kwargs).eval()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # statistics a dropped buffer would show
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    path = tmp_path / f"{model}{suffix}"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return net, path


def _chain(space, x):
    with torch.no_grad():
        outs = []
        for i in range(space.num_blocks):
            x = space.make_block(i).eval()(x)
            outs.append(x)
    return outs


@pytest.mark.parametrize("model", ["test_resnet", "test_efficientnet", "test_convnext"])
def test_blocks_are_the_feature_stages(model):
    space = timm_space(model, input_shape=SHAPE)
    info = timm.create_model(model, pretrained=False).feature_info
    assert space.num_blocks == len(info)
    for block, stage in zip(space.blocks, info):
        assert block.channels == stage["num_chs"]
        assert block.out_shape[1] == SHAPE[1] // stage["reduction"]  # the stage's stride
    assert not space.keeps_weights and space.input_normalization is None
    check_space(space)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_gives_the_models_own_features(tmp_path, suffix):
    net, path = _weights(tmp_path, suffix=suffix)
    space = timm_space("test_resnet", input_shape=SHAPE, weights=str(path))
    cfg = net.pretrained_cfg
    assert space.input_normalization == (tuple(cfg["mean"]), tuple(cfg["std"]))
    assert space.keeps_weights
    x = torch.rand(2, *SHAPE)
    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    with torch.no_grad():
        expected = net.forward_intermediates((x - mean) / std, intermediates_only=True)
    for got, want in zip(_chain(space, x), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    assert isinstance(space.make_block(0), NormalizedBlock)
    check_space(space)


def test_a_file_without_the_classifier_loads(tmp_path):
    net = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    path = tmp_path / "headless.pth"
    torch.save(net.state_dict(), path)
    space = timm_space("test_resnet", input_shape=SHAPE, weights=str(path))
    block = space.make_block(1)  # maxpool + layer1
    assert torch.equal(block.stage.layer1[0].conv1.weight, net.layer1[0].conv1.weight)


def test_a_file_of_another_model_names_the_keys(tmp_path):
    _, path = _weights(tmp_path, model="resnet10t", suffix=".pth")
    with pytest.raises(SpaceError, match=r"mis-shaped: conv1.0.weight is \(24, 3, 3, 3\) in the "
                       r"file, \(16, 3, 3, 3\).*timm.create_model\('test_resnet'\)"):
        timm_space("test_resnet", input_shape=SHAPE, weights=str(path))


def test_unknown_and_unsplittable_models_are_refused():
    with pytest.raises(SpaceError, match=r"no model 'test_resnetz'.*similar"):
        timm_space("test_resnetz", input_shape=SHAPE)
    with pytest.raises(SpaceError, match="vision transformers .* not supported"):
        timm_space("test_vit", input_shape=SHAPE)
    with pytest.raises(SpaceError, match="freeze must be"):
        timm_space("test_resnet", input_shape=SHAPE, freeze=9)


def test_freezing_and_norm_act_layers(tmp_path):
    _, path = _weights(tmp_path, model="test_efficientnet", suffix=".safetensors")
    space = timm_space("test_efficientnet", input_shape=SHAPE, weights=str(path), freeze=2)
    blocks = [space.make_block(i) for i in range(space.num_blocks)]
    # timm's BatchNormAct2d is split into BatchNorm2d + activation, so code that swaps batch
    # norms (task-specific statistics, freezing) keeps the activation
    assert not any(isinstance(m, BatchNormAct2d) for b in blocks for m in b.modules())
    assert not list(blocks[0].parameters()) and not list(blocks[1].parameters())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in blocks[1].modules())
    assert list(blocks[2].parameters())
    check_space(space)


def test_registered_space_exports_loads_and_runs_in_onnx(tmp_path, registered):
    import onnxruntime

    _, path = _weights(tmp_path)
    space = create_space("timm:test_resnet", input_shape=SHAPE, weights=str(path), freeze="stem")
    assert space.spec() == {"name": "timm", "kwargs": space.kwargs}
    assert space.kwargs["model"] == "test_resnet" and space.kwargs["freeze"] == "stem"
    graph = SharingGraph.from_partitions(["a", "b"], [[["a", "b"]]] * 3 + [[["a"], ["b"]]] * 2)
    model = materialize(graph, space, TASKS).eval()
    folder = export_model(model, tmp_path / "run", onnx=True, picture=False)
    loaded = load(folder)
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    for task in ("a", "b"):
        assert torch.equal(expected[task], got[task])
        np.testing.assert_array_equal(predict(model, x)[task], predict(loaded, x)[task])
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    for task, array in zip(["a", "b"], session.run(None, {"input": x.numpy()})):
        np.testing.assert_allclose(array, expected[task].numpy(), atol=1e-4, rtol=1e-4)


def test_registered_tiny_size_conforms(registered):
    check_space("timm")
