"""Preprocessing: resize, scale, normalise and train-only augmentation, checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from mtlsearch.data.preprocess import Augmentation, Preprocessing, list_images
from mtlsearch.errors import DatasetError

torch.set_num_threads(1)

MEAN, STD = (0.5, 0.25, 0.125), (0.5, 0.25, 2.0)


def _images(n=6, c=3, h=5, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)


def test_eval_scales_and_normalises_like_a_hand_computation():
    x = _images()
    prep = Preprocessing(channels=3, mean=MEAN, std=STD)
    got = prep.eval_transform()(x)
    want = (x.numpy() / 255.0 - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    # one image (C, H, W) gives the same as its row of the batch
    torch.testing.assert_close(prep.eval_transform()(x[2]), got[2])


def test_without_scale_uint8_is_only_converted_and_floats_are_never_rescaled():
    x = _images()
    assert torch.equal(Preprocessing(scale=False).eval_transform()(x), x.float())
    floats = torch.rand(3, 3, 4, 4)
    assert torch.equal(Preprocessing(channels=3).eval_transform()(floats), floats)


def test_resize_is_torchvisions_antialiased_resize():
    x = _images(h=12, w=10)
    prep = Preprocessing(image_size=(6, 4), channels=3)
    got = prep.eval_transform()(x)
    want = F.resize(x, [6, 4], antialias=True).float() / 255
    assert got.shape == (6, 3, 6, 4)
    torch.testing.assert_close(got, want)


def test_a_file_and_the_same_pixels_as_an_array_become_the_same_tensor(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (3, 11, 9, 3), dtype=np.uint8)  # (N, H, W, C)
    paths = []
    for i, p in enumerate(pixels):
        paths.append(tmp_path / f"{i}.png")  # PNG is lossless: the decoded pixels are these
        Image.fromarray(p).save(paths[-1])
    prep = Preprocessing(image_size=8, channels=3, mean=MEAN, std=STD)
    from_files = prep.prepare_files(paths)
    from_array = prep.prepare_array(pixels)  # channel-last, told apart by channels=3
    assert from_files.shape == (3, 3, 8, 8)
    torch.testing.assert_close(from_files, from_array)
    torch.testing.assert_close(from_array, prep.prepare_array(pixels.transpose(0, 3, 1, 2)))


def test_grey_files_and_arrays_are_converted_to_the_recorded_channels(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    rgb = Preprocessing(channels=3).prepare_files([tmp_path / "g.png"])
    assert rgb.shape == (1, 3, 4, 5)
    for c in range(3):
        np.testing.assert_allclose(rgb[0, c].numpy(), grey / 255, rtol=1e-6)
    # (N, H, W) arrays are grey images; grey is repeated to RGB, RGB is never guessed to grey
    assert Preprocessing(channels=3).prepare_array(grey[None]).shape == (1, 3, 4, 5)
    assert Preprocessing(channels=1).prepare_array(grey[None]).shape == (1, 1, 4, 5)
    with pytest.raises(DatasetError, match="3 channels but the model takes 1"):
        Preprocessing(channels=1).prepare_array(_images())


def test_flip_flips_each_sample_or_leaves_it_and_repeats_with_its_seed():
    x = _images(n=64)
    prep = Preprocessing(channels=3, augment=Augmentation(flip=True))
    out = prep.train_transform(torch.Generator().manual_seed(3))(x)
    plain, flipped = x.float() / 255, torch.flip(x, dims=[-1]).float() / 255
    same = [torch.allclose(out[i], plain[i]) for i in range(64)]
    mirrored = [torch.allclose(out[i], flipped[i]) for i in range(64)]
    assert all(a or b for a, b in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54  # about half, per sample (not one draw for the batch)
    again = prep.train_transform(torch.Generator().manual_seed(3))(x)
    other = prep.train_transform(torch.Generator().manual_seed(4))(x)
    assert torch.equal(out, again) and not torch.equal(out, other)
    # the evaluation transform never augments
    torch.testing.assert_close(prep.eval_transform()(x), plain)


def test_crop_takes_a_window_of_the_zero_padded_image():
    x = _images(n=20, h=4, w=5)
    pad = 2
    prep = Preprocessing(channels=3, scale=False, augment=Augmentation(crop=pad))
    out = prep.train_transform(torch.Generator().manual_seed(0))(x)
    assert out.shape == x.shape
    padded = np.zeros((20, 3, 4 + 2 * pad, 5 + 2 * pad))
    padded[:, :, pad:-pad, pad:-pad] = x.numpy()
    offsets = set()
    for i in range(20):
        found = [(t, j) for t in range(2 * pad + 1) for j in range(2 * pad + 1)
                 if np.array_equal(padded[i, :, t : t + 4, j : j + 5], out[i].numpy())]
        assert found, f"sample {i} is no window of its padded image"
        offsets.add(found[0])
    assert len(offsets) > 3  # the offsets are drawn per sample


def test_the_global_seed_repeats_augmentation_without_a_generator():
    x = _images(n=16)
    prep = Preprocessing(channels=3, augment=Augmentation(flip=True, crop=1))
    torch.manual_seed(5)
    a = prep.train_transform()(x)
    torch.manual_seed(5)
    b = prep.train_transform()(x)
    assert torch.equal(a, b)


def test_the_torchvision_pipeline_gives_the_same_as_the_batch_transform():
    x = _images(h=12, w=10)
    prep = Preprocessing(image_size=(6, 8), channels=3, mean=MEAN, std=STD,
                         augment=Augmentation(flip=True, crop=2))
    pipeline = prep.torchvision_transform()
    batch = prep.eval_transform()(x)
    for i in range(len(x)):
        torch.testing.assert_close(pipeline(x[i]), batch[i])
    train = prep.torchvision_transform(train=True)
    names = [type(t).__name__ for t in train.transforms]
    assert names == ["ToImage", "Resize", "RandomCrop", "RandomHorizontalFlip", "ToDtype",
                     "Normalize"]
    assert train(x[0]).shape == (3, 6, 8)


def test_list_of_pil_images_of_different_sizes_is_resized_then_stacked():
    imgs = [Image.new("RGB", (9, 7), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))]
    out = Preprocessing(image_size=(3, 3), channels=3).eval_transform()(imgs)
    assert out.shape == (2, 3, 3, 3)
    assert torch.allclose(out[0, 0], torch.ones(3, 3)) and torch.allclose(out[1, 2],
                                                                          torch.ones(3, 3))
    with pytest.raises(DatasetError, match="differ in size.*set image_size"):
        Preprocessing(channels=3).eval_transform()(imgs)


def test_tables_take_the_recorded_columns_in_order_and_normalise_per_column():
    table = {"z": [9.0, 9.0], "b": [1.0, 3.0], "a": [2.0, 6.0]}
    prep = Preprocessing(input_columns=("a", "b"), mean=(2.0, 1.0), std=(2.0, 0.5))
    got = prep.prepare_table(table)
    np.testing.assert_allclose(got.numpy(), [[0.0, 0.0], [2.0, 4.0]])
    with pytest.raises(DatasetError, match=r"no column\(s\) \['a'\].*columns are: z, b"):
        prep.prepare_table({"z": [1], "b": [2]})
    with pytest.raises(DatasetError, match="column 'a' of the table is not numbers"):
        prep.prepare_table({"a": ["x", "y"], "b": [1, 2]})
    with pytest.raises(DatasetError, match="records no input_columns"):
        Preprocessing().prepare_table(table)


def test_json_round_trip_and_unknown_keys():
    prep = Preprocessing(image_size=(16, 12), channels=3, mean=MEAN, std=STD,
                         augment=Augmentation(flip=True, crop=4), interpolation="bicubic")
    data = json.loads(json.dumps(prep.to_dict()))
    assert Preprocessing.from_dict(data) == prep
    assert data["augment"] == {"flip": True, "crop": 4} and data["image_size"] == [16, 12]
    assert Preprocessing.from_dict({"augment": {"flip": True}}).augment == Augmentation(True)
    with pytest.raises(DatasetError, match=r"unknown keys \['size'\]; the known keys are "
                                           r"\['image_size'"):
        Preprocessing.from_dict({"size": 3})
    with pytest.raises(DatasetError, match=r"augment has unknown keys \['rotate'\]"):
        Preprocessing.from_dict({"augment": {"rotate": 10}})
    assert prep.without_augmentation().augment == Augmentation()


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 0}, "image_size must be an integer from 1"),
    ({"image_size": (3, 4, 5)}, "image_size must be"),
    ({"channels": 2}, "channels must be 1 .grey. or 3"),
    ({"channels": True}, "channels must be"),
    ({"mean": (0.5,)}, "give both mean and std"),
    ({"mean": (0.5, 0.5), "std": (1.0,)}, "mean has 2 values but std has 1"),
    ({"mean": (0.5,), "std": (0.0,)}, "std must be positive"),
    ({"mean": (float("nan"),), "std": (1.0,)}, "finite numbers"),
    ({"channels": 3, "mean": (0.1, 0.2), "std": (1.0, 1.0)}, "2 values for 3 channels"),
    ({"interpolation": "lanczos"}, r"choose one of \['bilinear'"),
    ({"augment": {"crop": -1}}, "augment crop"),
    ({"augment": {"flip": "yes"}}, "flip must be true or false"),
    ({"input_columns": ("a", "a")}, "names a column twice"),
    ({"scale": 1}, "scale must be true or false"),
])
def test_bad_values_are_refused_clearly(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        Preprocessing(**kwargs)


def test_unreadable_and_missing_files_are_named(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    prep = Preprocessing(channels=3)
    with pytest.raises(DatasetError, match=r"cannot read the image .*bad\.jpg.*replace or remove"):
        prep.load_image(tmp_path / "bad.jpg")
    with pytest.raises(DatasetError, match=r"no image file .*gone\.png"):
        prep.prepare_files([tmp_path / "gone.png"])
    with pytest.raises(DatasetError, match="no image files to prepare"):
        prep.prepare_files([])


def test_list_images_sorts_image_files_and_says_when_there_are_none(tmp_path):
    for name in ("b.JPG", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no image files"):
        list_images(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no folder"):
        list_images(tmp_path / "nope")
