"""Streaming datasets: the same batches and the same training result as in memory.

An image folder read lazily (DataLoader workers or none) must give the trainer exactly what
the in-memory dataset gives: the same order, the same pixels, the same augmentation draws and
so the same losses; images stay ``uint8`` until the batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mtlsearch.data import streaming
from mtlsearch.data.dataset import MultiTaskDataset
from mtlsearch.data.sources import load_folder
from mtlsearch.data.streaming import StreamingDataset, TensorSource
from mtlsearch.engine.acceleration import resolve
from mtlsearch.engine.model import materialize
from mtlsearch.engine.scoring import evaluate
from mtlsearch.engine.train import TrainConfig, Trainer
from mtlsearch.errors import DatasetError
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.registry import create_space
from mtlsearch.tasks.kinds import TaskSpec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    rows = ["file,smiling,hair"]
    for i in range(48):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"{i}.png")
        rows.append(f"{i}.png,{i % 2},{i % 3}")
    (root / "labels.csv").write_text("\n".join(rows))
    return root


def _fit(data):
    space = create_space("small_cnn", input_shape=data.input_shape)
    torch.manual_seed(0)
    model = materialize(SharingGraph.hard_sharing(data.task_names, space.num_blocks), space,
                        data.tasks)
    result = Trainer(TrainConfig(epochs=2, batch_size=8, seed=0, device="cpu")).fit(
        model, data.train, data.val)
    return result.history, evaluate(result.model, data.test, device="cpu")


def test_streamed_batches_equal_the_in_memory_ones(folder):
    memory = load_folder(folder, streaming=False)
    lazy = load_folder(folder, streaming=True, num_workers=0)
    assert isinstance(memory.train, MultiTaskDataset)
    assert isinstance(lazy.train, StreamingDataset)
    assert lazy.input_shape == memory.input_shape == (3, 8, 8) and len(lazy.train) == 34
    a = list(memory.train.batches(8, shuffle=True, generator=torch.Generator().manual_seed(3)))
    b = list(lazy.train.batches(8, shuffle=True, generator=torch.Generator().manual_seed(3)))
    assert len(a) == len(b) == 5
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        torch.testing.assert_close(xa, xb)
        for task in ("smiling", "hair"):
            torch.testing.assert_close(ya[task], yb[task])


def test_training_is_identical_in_memory_streamed_and_with_workers(folder):
    runs = [_fit(load_folder(folder, streaming=s, num_workers=w))
            for s, w in ((False, None), (True, 0), (True, 2))]
    assert runs[0] == runs[1] == runs[2]


def test_augmentation_only_in_training_batches_and_seeded(folder):
    kw = {"augment": {"flip": True, "crop": 2}}
    memory = load_folder(folder, streaming=False, **kw)
    lazy = load_folder(folder, streaming=True, num_workers=2, **kw)
    plain = load_folder(folder, streaming=False)
    # in memory the images stay uint8 (4x smaller than float32) when they are augmented
    assert isinstance(memory.train, StreamingDataset)
    assert memory.train.source.data.dtype == torch.uint8

    def shuffled(d, seed):
        return torch.cat([x for x, _ in d.train.batches(
            8, shuffle=True, generator=torch.Generator().manual_seed(seed))])

    first, again = shuffled(memory, 1), shuffled(memory, 1)
    torch.testing.assert_close(first, again)  # same seed, same crops and flips
    torch.testing.assert_close(first, shuffled(lazy, 1))  # and the same with workers
    assert not torch.equal(first, shuffled(plain, 1))  # augmentation did change them
    # evaluation batches are never augmented
    torch.testing.assert_close(torch.cat([x for x, _ in memory.val.batches(8)]),
                               plain.val.inputs)
    assert _fit(memory) == _fit(lazy)


def test_stopping_early_and_nested_passes_keep_the_batches(folder):
    memory = load_folder(folder, streaming=False)
    lazy = load_folder(folder, streaming=True, num_workers=2)
    want = [x for x, _ in memory.train.batches(8)]
    for _x, _ in lazy.train.batches(8):  # stop after one batch, as max_steps does
        break
    outer = []
    for x, _ in lazy.train.batches(8):
        outer.append(x)
        inner = [x2 for x2, _ in lazy.train.batches(8)]  # a nested pass reads in-process
        assert len(inner) == len(want)
    for got, expected in zip(outer, want, strict=True):
        torch.testing.assert_close(got, expected)


def test_auto_streams_above_the_threshold(folder, monkeypatch):
    assert isinstance(load_folder(folder).train, MultiTaskDataset)
    monkeypatch.setattr(streaming, "STREAMING_THRESHOLD_BYTES", 48 * 3 * 8 * 8 * 4 - 1)
    splits = load_folder(folder, num_workers=0)
    assert isinstance(splits.train, StreamingDataset) and splits.info["streaming"] is True
    with pytest.raises(DatasetError, match="streaming='sometimes' must be true, false or 'auto'"):
        load_folder(folder, streaming="sometimes")


def test_lazy_inputs_subset_fingerprint_and_device_choice(folder):
    data = load_folder(folder, streaming=True, num_workers=0)
    memory = load_folder(folder, streaming=False)
    train = data.train
    torch.testing.assert_close(train.inputs[:], memory.train.inputs)
    torch.testing.assert_close(train.inputs[[3, 1]], memory.train.inputs[[3, 1]])
    assert train.inputs.dim() == 4 and train.inputs.shape == memory.train.inputs.shape
    part = train.subset([5, 0, 2])
    torch.testing.assert_close(part.inputs[:], memory.train.inputs[[5, 0, 2]])
    torch.testing.assert_close(part.targets["hair"], memory.train.targets["hair"][[5, 0, 2]])
    assert data.fingerprint() == load_folder(folder, streaming=True).fingerprint()
    assert part.fingerprint() != train.fingerprint()
    with pytest.raises(DatasetError, match="read lazily.*materialize"):
        np.asarray(train.inputs)
    torch.testing.assert_close(train.materialize().inputs, memory.train.inputs)
    # asked to keep the data on the GPU: an in-memory split would be, a streaming one never
    config = TrainConfig(data_on_device=True, amp=False)
    gpu = torch.device("cuda")  # resolve only decides; nothing runs on it
    assert resolve(config, gpu, input_ndim=4, datasets=(memory.train,)).data_on_device
    assert not resolve(config, gpu, input_ndim=4, datasets=(train,)).data_on_device


def test_a_tensor_source_stays_uint8_until_the_batch():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    data = StreamingDataset(TensorSource(images), range(10), {"a": torch.arange(10) % 2},
                            [TaskSpec("a")])
    x, y = next(data.batches(4))
    torch.testing.assert_close(x, images[:4].float() / 255)
    assert data.source.data.dtype == torch.uint8 and data.estimated_bytes == 10 * 48 * 4


def test_a_file_broken_after_loading_is_named_mid_training(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["file,a"]
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{i % 2}")
    (tmp_path / "labels.csv").write_text("\n".join(rows))
    data = load_folder(tmp_path, streaming=True, num_workers=0)
    (tmp_path / "4.png").write_bytes(b"not a png any more")
    with pytest.raises(DatasetError, match=r"4\.png"):
        for _ in data.train.batches(30):
            pass
        for _ in data.val.batches(30):
            pass
        for _ in data.test.batches(30):
            pass


def test_fast_decoding_gives_the_pixels_predict_gets(tmp_path):
    from mtlsearch.data.preprocess import Preprocessing
    from mtlsearch.data.streaming import decode_image

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (20, 14, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (20, 14), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=85)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb).save(tmp_path / "c.bmp")  # not a fast format: Pillow decodes it
    Image.fromarray(grey).save(tmp_path / "g.jpg")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "a.png")
    Image.fromarray(grey).convert("LA").save(tmp_path / "la.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(grey).save(tmp_path / "g.png")
    for channels in (1, 3):
        for size in (None, (8, 6)):
            prep = Preprocessing(image_size=size, channels=channels)
            for path in sorted(tmp_path.iterdir()):
                got = decode_image(path, prep)
                assert got.dtype == torch.uint8 and got.shape[0] == channels
                assert torch.equal(got, prep.load_image(path)), (path.name, channels, size)
