"""torchvision backbones from local weights files: key mapping onto blocks, every branch
starting from the weights, freezing, built-in input normalisation, refusals that name the
keys, and conformance / export / load / ONNX with pretrained blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models.vgg import cfgs, make_layers
from torchvision.ops.misc import FrozenBatchNorm2d

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
from mtlsearch.engine.train import TrainConfig, build_and_train
from mtlsearch.errors import SpaceError
from mtlsearch.export import export_model, load, predict
from mtlsearch.search_spaces.pretrained import IMAGENET_MEAN, IMAGENET_STD, NormalizedBlock
from mtlsearch.testing import check_space, tiny_dataset

TASKS = [TaskSpec("a"), TaskSpec("b", kind="multiclass", num_classes=3)]
TINY = {"input_shape": (3, 16, 16), "width": 4, "small_input": False}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _normalized(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def _chain(space, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        for i in range(space.num_blocks):
            x = space.make_block(i).eval()(x)
    return x


def _resnet_like_state(name: str, width: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """A random state dict named and laid out as torchvision saves a ResNet (conv1, bn1,
    layerS.J.*, fc), at a small width (torchvision's own class is fixed at 64)."""
    layers = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}[name]
    gen = torch.Generator().manual_seed(seed)
    fresh = create_space(name, input_shape=(3, 16, 16), width=width)
    state: dict[str, torch.Tensor] = {}
    index = 0
    for stage, count in enumerate([1, *layers]):
        for j in range(count):
            block = fresh.make_block(index)
            for key, value in block.state_dict().items():
                if stage == 0:
                    file_key = key
                else:
                    file_key = f"layer{stage}.{j}.{key.removeprefix('block.')}"
                if value.is_floating_point() and value.ndim == 1:  # batch-norm vectors
                    low, high = (0.5, 1.5) if key.endswith(("weight", "running_var")) else (-0.1, 0.1)
                    value = torch.rand(value.shape, generator=gen) * (high - low) + low
                elif value.is_floating_point():  # convolutions: kaiming-like scale
                    fan = value[0].numel()
                    value = torch.randn(value.shape, generator=gen) * (2 / fan) ** 0.5
                state[file_key] = value.clone()
            index += 1
    state["fc.weight"] = torch.randn(1000, 8 * width, generator=gen)
    state["fc.bias"] = torch.zeros(1000)
    return state


def _thin_vgg_state(omega: int) -> dict[str, torch.Tensor]:
    """torchvision's own VGG feature layers (make_layers) at thin widths, random weights."""
    cfg = [v if v == "M" else min(omega, v) for v in cfgs["D"]]
    features = make_layers(cfg, batch_norm=True)
    gen = torch.Generator().manual_seed(2)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
    return state


# ------------------------------------------------------------------------ torchvision files
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_resnet18_file_maps_onto_the_blocks(tmp_path, suffix):
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():  # non-trivial statistics, so a dropped buffer shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"resnet18-f37072fd{suffix}"
    if suffix == ".pth":
        torch.save(model.state_dict(), path)  # as torchvision's hub file is saved
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    space = create_space("resnet18", input_shape=(3, 32, 32), weights=str(path))
    assert space.keeps_weights
    assert space.input_normalization == (IMAGENET_MEAN, IMAGENET_STD)
    assert space.kwargs["weights"] == str(path.resolve())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        m = model
        expected = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(
            _normalized(x)))))))))
    assert torch.allclose(_chain(space, x), expected, atol=1e-5)


def test_dilated_resnet_takes_the_same_file(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_resnet_like_state("resnet18", 4), path)
    space = create_space("dilated_resnet18", input_shape=(3, 16, 16), width=4, weights=str(path))
    state = torch.load(path, weights_only=True)
    block = space.make_block(3)  # layer2.0: dilated blocks hold their layers directly
    assert torch.equal(block.conv1.weight, state["layer2.0.conv1.weight"])
    assert torch.equal(block.downsample[1].running_var, state["layer2.0.downsample.1.running_var"])


def test_vgg16_bn_convolutions_from_torchvision_layers(tmp_path):
    state = _thin_vgg_state(8)
    path = tmp_path / "vgg16_bn.safetensors"
    save_file(state, str(path))
    space = create_space("vgg16_bn", input_shape=(3, 32, 32), omega=8, fc=False, weights=str(path))
    features = make_layers([v if v == "M" else min(8, v) for v in cfgs["D"]], batch_norm=True)
    features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = features.eval()(_normalized(x))
    assert torch.allclose(_chain(space, x), expected, atol=1e-5)
    with pytest.raises(SpaceError, match="classifier.0.weight|fc=False"):
        state["classifier.0.weight"] = torch.zeros(4096, 25088)
        state["classifier.0.bias"] = torch.zeros(4096)
        save_file(state, str(path))
        create_space("vgg16_bn", input_shape=(3, 32, 32), omega=8, weights=str(path))


# -------------------------------------------------------------------------- every branch
def test_every_branch_starts_from_the_pretrained_block(tmp_path):
    path = tmp_path / "r18.pth"
    state = _resnet_like_state("resnet18", 4)
    torch.save(state, path)
    space = create_space("resnet18", **TINY, weights=str(path))
    graph = SharingGraph.single_task(["a", "b"], space.num_blocks)
    model = materialize(graph, space, TASKS)
    copies = [model.blocks[model._block_keys[n]] for n in graph.block_nodes(2)]  # layer1.1
    assert len(copies) == 2 and copies[0] is not copies[1]
    for copy in copies:
        assert torch.equal(copy.block.conv1.weight, state["layer1.1.conv1.weight"])
        assert torch.equal(copy.block.bn2.running_mean, state["layer1.1.bn2.running_mean"])
    assert copies[0].block.conv1.weight.data_ptr() != copies[1].block.conv1.weight.data_ptr()


def test_pretrained_spaces_pass_the_conformance_checks(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_resnet_like_state("resnet18", 4), path)
    check_space(create_space("resnet18", **TINY, weights=str(path), freeze="stem"))
    vgg = tmp_path / "vgg.safetensors"
    save_file(_thin_vgg_state(4), str(vgg))
    check_space(create_space("vgg16_bn", input_shape=(3, 8, 8), omega=4, fc=False,
                             weights=str(vgg)))


def test_loading_the_weights_leaves_the_global_rng_alone(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_resnet_like_state("resnet18", 4), path)
    torch.manual_seed(5)
    create_space("resnet18", **TINY, weights=str(path))
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after)


# ------------------------------------------------------------------------------- freezing
@pytest.mark.parametrize(("freeze", "frozen"), [("stem", 1), (3, 3), (True, 9), (False, 0)])
def test_frozen_blocks_are_not_trained(tmp_path, freeze, frozen):
    path = tmp_path / "r18.pth"
    torch.save(_resnet_like_state("resnet18", 4), path)
    space = create_space("resnet18", **TINY, weights=str(path), freeze=freeze)
    data = tiny_dataset(space.input_shape, n=48)
    graph = SharingGraph.hard_sharing([t.name for t in data.tasks], space.num_blocks)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        before = materialize(graph, space, data.tasks).state_dict()
    config = TrainConfig(epochs=1, batch_size=16, device="cpu", lr=0.05)
    model = build_and_train(graph, space, data.tasks, data.train, data.val, config).model
    after = model.state_dict()
    for node in graph.block_nodes():
        index = graph.node_index(node)
        key = f"blocks.{model._block_keys[node]}."
        changed = any(not torch.equal(after[k], before[k]) for k in after
                      if k.startswith(key) and after[k].is_floating_point())
        block = model.blocks[model._block_keys[node]]
        if index < frozen:
            assert not changed, f"frozen block {index} changed"
            assert not list(block.parameters()), "a frozen block has trainable parameters"
            assert any(isinstance(m, FrozenBatchNorm2d) for m in block.modules())
        else:
            assert changed, f"block {index} was not trained"
    heads = [k for k in after if k.startswith("heads.")]
    assert any(not torch.equal(after[k], before[k]) for k in heads)


def test_bad_freeze_is_refused():
    with pytest.raises(SpaceError, match="freeze must be True.*0..9"):
        create_space("resnet18", **TINY, freeze=10)
    with pytest.raises(SpaceError, match="freeze must be"):
        create_space("resnet18", **TINY, freeze="head")


# ---------------------------------------------------------------------------- refusals
def test_a_file_of_another_width_names_the_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_resnet_like_state("resnet18", 8), path)
    with pytest.raises(SpaceError, match=r"mis-shaped: conv1.weight is \(8, 3, 7, 7\) in the "
                       r"file, \(4, 3, 7, 7\).*width=64"):
        create_space("resnet18", **TINY, weights=str(path))


def test_a_file_of_another_depth_names_the_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_resnet_like_state("resnet18", 4), path)
    with pytest.raises(SpaceError, match=r"missing: block.conv1.weight \(block 3\)"):
        create_space("resnet34", **TINY, weights=str(path))
    torch.save(_resnet_like_state("resnet34", 4), path)
    with pytest.raises(SpaceError, match=r"unexpected: layer1.2.conv1.weight"):
        create_space("resnet18", **TINY, weights=str(path))


def test_missing_and_unreadable_files_are_refused(tmp_path):
    with pytest.raises(SpaceError, match="does not exist.*nothing is downloaded"):
        create_space("resnet18", **TINY, weights=str(tmp_path / "nope.pth"))
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(SpaceError, match=r"suffix '.ckpt'.*\.safetensors"):
        create_space("resnet18", **TINY, weights=str(tmp_path / "w.ckpt"))
    whole = tmp_path / "model.pth"
    torch.save(torchvision.models.resnet18(weights=None), whole)  # a pickled model, not weights
    with pytest.raises(SpaceError, match="cannot be read as a state dict"):
        create_space("resnet18", **TINY, weights=str(whole))


def test_checkpoint_wrappers_are_unwrapped(tmp_path):
    state = _resnet_like_state("resnet18", 4)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    space = create_space("resnet18", **TINY, weights=str(path))
    assert torch.equal(space.make_block(0).block.conv1.weight, state["conv1.weight"])


# ----------------------------------------------------------------------- normalisation
def test_normalization_is_inside_the_first_block():
    space = create_space("resnet18", **TINY, normalize=True)
    block = space.make_block(0)
    assert isinstance(block, NormalizedBlock) and block.skip == "none"
    assert space.input_normalization == (IMAGENET_MEAN, IMAGENET_STD)
    assert not space.keeps_weights  # no file: fresh weights per block
    custom = create_space("resnet18", **TINY, normalize={"mean": [0.5] * 3, "std": [0.25] * 3})
    x = torch.rand(2, 3, 16, 16)
    inner = custom.make_block(0).eval()
    with torch.no_grad():
        assert torch.allclose(inner(x), inner.block((x - 0.5) / 0.25))
    assert create_space("resnet18", **TINY).input_normalization is None
    with pytest.raises(SpaceError, match="2 means and 2 stds for inputs of 3 channels"):
        create_space("resnet18", **TINY, normalize={"mean": [0, 0], "std": [1, 1]})
    with pytest.raises(SpaceError, match="positive stds"):
        create_space("resnet18", **TINY, normalize={"mean": [0] * 3, "std": [1, 0, 1]})


def test_export_load_predict_and_onnx_apply_the_same_preprocessing(tmp_path):
    import onnxruntime

    path = tmp_path / "r18.safetensors"
    save_file(_resnet_like_state("resnet18", 4), str(path))
    space = create_space("resnet18", **TINY, weights=str(path), freeze="stem")
    graph = SharingGraph.from_partitions(["a", "b"], [[["a", "b"]]] * 5 + [[["a"], ["b"]]] * 4)
    model = materialize(graph, space, TASKS).eval()
    folder = export_model(model, tmp_path / "run", onnx=True, picture=False)
    loaded = load(folder)
    assert loaded.space.input_normalization == (IMAGENET_MEAN, IMAGENET_STD)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    for task in ("a", "b"):
        assert torch.equal(expected[task], got[task])
        np.testing.assert_array_equal(predict(model, x)[task], predict(loaded, x)[task])
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": x.numpy()})
    for task, array in zip(["a", "b"], outputs):
        np.testing.assert_allclose(array, expected[task].numpy(), atol=1e-4, rtol=1e-4)
    # the weights file only sets initial values: without it the same network is rebuilt
    kwargs = {k: v for k, v in space.kwargs.items() if k != "weights"}
    rebuilt = materialize(graph, create_space("resnet18", **kwargs), TASKS).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x)["a"], expected["a"])


def test_from_modules_can_keep_the_modules_weights():
    from torch import nn

    from mtlsearch import from_modules

    convs = [nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
             nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())]
    kept = from_modules(convs, input_shape=(3, 8, 8), keep_weights=True)
    fresh = from_modules(convs, input_shape=(3, 8, 8))
    assert kept.keeps_weights and not fresh.keeps_weights
    assert torch.equal(kept.make_block(0).module[0].weight, convs[0][0].weight)
    assert kept.make_block(0).module[0].weight is not convs[0][0].weight
    assert not torch.equal(fresh.make_block(0).module[0].weight, convs[0][0].weight)
    check_space(kept)
    check_space(fresh)
    with pytest.raises(SpaceError, match="keep_weights must be True or False"):
        from_modules(convs, input_shape=(3, 8, 8), keep_weights="yes")
