"""File-based loaders, run on tiny fake copies written in each dataset's real on-disk format."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtlsearch.data.builtin.torchvision_files import (
    load_celeba,
    load_cifar10,
    load_fashion_mnist,
    load_omniglot,
)
from mtlsearch.errors import DatasetError
from mtlsearch.registry import load_dataset

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()
CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
FMNIST_TASKS = [
    "is_t_shirt_top",
    "is_trouser",
    "is_pullover",
    "is_dress",
    "is_coat",
    "is_sandal",
    "is_shirt",
    "is_sneaker",
    "is_bag",
    "is_ankle_boot",
]
OMNIGLOT = {"Greek": 3, "Japanese_(hiragana)": 2, "Latin": 2}  # alphabet -> characters


def _labels(split) -> np.ndarray:
    return np.stack([split.targets[t].numpy() for t in split.targets], axis=1)


# --- fake CelebA: jpgs plus the two annotation files in the real column layout ---------------

CELEBA_PARTITION = [0] * 8 + [1] * 3 + [2] * 3


def _celeba_attr(i: int, j: int) -> int:
    return 1 if (i + j) % 2 == 0 else -1  # 4 of each value in every column of the train rows


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    attr_lines = [str(len(CELEBA_PARTITION)), " ".join(CELEBA_ATTRS) + " "]
    part_lines = []
    for i, part in enumerate(CELEBA_PARTITION):
        name = f"{i + 1:06d}.jpg"
        # 178 wide, 218 high like the aligned images; the colour encodes the image number.
        Image.new("RGB", (178, 218), (10 * i, 100, 255 - 10 * i)).save(
            folder / "img_align_celeba" / name
        )
        values = " ".join(f"{_celeba_attr(i, j):2d}" for j in range(len(CELEBA_ATTRS)))
        attr_lines.append(f"{name} {values}")
        part_lines.append(f"{name} {part}")
    (folder / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (folder / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return tmp_path


def test_celeba_reads_the_official_layout(celeba_root):
    s = load_celeba(root=celeba_root)
    assert s.task_names == CELEBA_ATTRS
    assert (len(s.train), len(s.val), len(s.test)) == (8, 3, 3)
    assert s.input_shape == (3, 64, 64)
    x = s.train.inputs
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    files = s.info["files"]
    assert files["val"] == ["000009.jpg", "000010.jpg", "000011.jpg"]
    for split in ("train", "val", "test"):
        numbers = [int(f[:6]) - 1 for f in files[split]]
        expected = np.array([[_celeba_attr(i, j) for j in range(40)] for i in numbers])
        np.testing.assert_array_equal(_labels(getattr(s, split)), (expected + 1) // 2)
        # Colour survives JPEG within a few levels: the right image landed in the right row.
        red = getattr(s, split).inputs[:, 0].mean(dim=(1, 2)).numpy()
        np.testing.assert_allclose(red, [10 * i / 255 for i in numbers], atol=0.03)


def test_celeba_options(celeba_root):
    s = load_celeba(
        root=celeba_root / "celeba", image_size=16, tasks=["Smiling", "Male"], center_crop=False
    )
    assert s.task_names == ["Smiling", "Male"] and s.input_shape == (3, 16, 16)
    small = [load_celeba(root=celeba_root, max_samples=6, seed=k) for k in range(4)]
    assert all((len(d.train), len(d.val), len(d.test)) == (6, 3, 3) for d in small)
    assert len({tuple(d.info["files"]["train"]) for d in small}) > 1  # the seed picks the subset
    again = load_dataset("celeba", **json.loads(json.dumps(small[0].kwargs)))
    assert again.fingerprint() == small[0].fingerprint()
    with pytest.raises(DatasetError, match="unknown task names.*Smilling"):
        load_celeba(root=celeba_root, tasks=["Smilling"])


def test_celeba_missing_partition_file_is_named(celeba_root):
    (celeba_root / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetError, match="missing: list_eval_partition.txt. .*mmlab"):
        load_celeba(root=celeba_root)


def test_celeba_missing_image_is_named(celeba_root):
    (celeba_root / "celeba" / "img_align_celeba" / "000012.jpg").unlink()
    with pytest.raises(DatasetError, match="000012.jpg"):
        load_celeba(root=celeba_root)


# --- fake CIFAR-10: the python-pickle batch files ----------------------------------------------

CIFAR_PER_BATCH = 20


def _cifar_batch(start: int, protocol: int) -> bytes:
    labels = [(start + i) % 10 for i in range(CIFAR_PER_BATCH)]
    # Constant planes: R encodes the class, G the running image number, B a fixed value.
    data = np.zeros((CIFAR_PER_BATCH, 3, 1024), dtype=np.uint8)
    data[:, 0] = np.array(labels)[:, None] * 20
    data[:, 1] = (start + np.arange(CIFAR_PER_BATCH))[:, None]
    data[:, 2] = 200
    entry = {
        "batch_label": "training batch",
        "labels": labels,
        "data": data.reshape(CIFAR_PER_BATCH, 3072),
        "filenames": [f"img_{start + i}.png" for i in range(CIFAR_PER_BATCH)],
    }
    return pickle.dumps(entry, protocol=protocol)


@pytest.fixture(params=[2, 4, 5], ids=lambda p: f"pickle{p}")
def cifar_root(tmp_path: Path, request) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for b in range(5):
        (folder / f"data_batch_{b + 1}").write_bytes(
            _cifar_batch(b * CIFAR_PER_BATCH, request.param)
        )
    (folder / "test_batch").write_bytes(_cifar_batch(200, request.param))
    meta = {"num_cases_per_batch": CIFAR_PER_BATCH, "label_names": CIFAR_CLASSES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=request.param))
    return tmp_path


def test_cifar10_reads_the_python_batches(cifar_root):
    s = load_cifar10(root=cifar_root, seed=1)
    assert s.task_names == [f"is_{c}" for c in CIFAR_CLASSES]
    assert s.input_shape == (3, 32, 32)
    assert (len(s.train), len(s.val), len(s.test)) == (90, 10, 20)
    assert s.info["classes"] == CIFAR_CLASSES
    seen = []
    for split in ("train", "val", "test"):
        x, y = getattr(s, split).inputs, _labels(getattr(s, split))
        assert (y.sum(axis=1) == 1).all()
        # The class read back from the red plane matches the one-hot labels: rows, channel
        # order and labels stayed together.
        np.testing.assert_allclose(x[:, 0, 0, 0].numpy() * 255 / 20, y.argmax(axis=1), atol=1e-3)
        np.testing.assert_allclose(x[:, 2].numpy(), 200 / 255, atol=1e-6)
        seen.append(set(np.round(x[:, 1, 0, 0].numpy() * 255).astype(int)))
    assert not seen[0] & seen[1]  # validation images are carved out of training, not shared
    assert seen[2] == set(range(200, 200 + CIFAR_PER_BATCH))


def test_cifar10_options_and_seeding(cifar_root):
    s = load_cifar10(
        root=cifar_root / "cifar-10-batches-py", image_size=16, max_samples=30, tasks=["is_cat"]
    )
    assert s.input_shape == (3, 16, 16) and s.task_names == ["is_cat"]
    assert (len(s.train), len(s.val), len(s.test)) == (30, 10, 20)
    # Antialiased resizing keeps a flat plane flat.
    np.testing.assert_allclose(s.test.inputs[:, 2].numpy(), 200 / 255, atol=1e-5)
    a, b = load_cifar10(root=cifar_root, seed=3), load_cifar10(root=cifar_root, seed=3)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != load_cifar10(root=cifar_root, seed=4).fingerprint()
    assert (
        load_dataset("cifar10", **json.loads(json.dumps(a.kwargs))).fingerprint() == a.fingerprint()
    )


def _python2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled as Python 2 did it for the official files: byte strings and numpy.core."""

    def string(b: bytes) -> bytes:  # BINSTRING: a Python 2 str
        return b"T" + struct.pack("<I", len(b)) + b

    shape = b"".join(b"J" + struct.pack("<i", n) for n in data.shape)
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + string(b"b")
        + b"\x87R"
        + b"(K\x01("
        + shape
        + b"tcnumpy\ndtype\n"
        + string(b"u1")
        + b"K\x00K\x01\x87R"
        + b"(K\x03"
        + string(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + string(data.tobytes())
        + b"tb"
    )
    items = b"".join(b"K" + bytes([v]) + b"a" for v in labels)
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + b"]" + items + b"u."


def test_cifar10_reads_python2_pickles(cifar_root):
    folder = cifar_root / "cifar-10-batches-py"
    labels = [3, 1, 4, 1, 5, 9, 2, 6]
    data = np.zeros((8, 3072), dtype=np.uint8)
    data[:, :1024] = np.array(labels)[:, None] * 20
    (folder / "test_batch").write_bytes(_python2_batch(data, labels))
    s = load_cifar10(root=cifar_root)
    assert len(s.test) == 8
    np.testing.assert_array_equal(_labels(s.test).argmax(axis=1), labels)
    np.testing.assert_allclose(s.test.inputs[:, 0, 5, 5].numpy() * 255 / 20, labels, atol=1e-3)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar10_refuses_pickles_that_call_functions(cifar_root):
    folder = cifar_root / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes(pickle.dumps({"data": _Evil(), "labels": []}))
    with pytest.raises(DatasetError, match=r"refusing to load (posix|nt)\.getcwd"):
        load_cifar10(root=cifar_root)


# --- fake Fashion-MNIST: idx ubyte files, gzipped or not --------------------------------------


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def fmnist_root(tmp_path: Path) -> Path:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, gz in (("train", 40, True), ("t10k", 20, False)):
        labels = np.arange(n) % 10
        images = np.repeat((labels * 20 + 5)[:, None, None], 28, axis=1).repeat(28, axis=2)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            data = _idx(array)
            if gz:  # the official downloads are .gz; torchvision leaves unpacked copies
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
    return tmp_path


def test_fashion_mnist_reads_idx_files(fmnist_root):
    s = load_fashion_mnist(root=fmnist_root)
    assert s.task_names == FMNIST_TASKS
    assert s.input_shape == (1, 28, 28)
    assert (len(s.train), len(s.val), len(s.test)) == (36, 4, 20)
    for split in ("train", "val", "test"):
        x, y = getattr(s, split).inputs, _labels(getattr(s, split))
        assert (y.sum(axis=1) == 1).all()
        np.testing.assert_allclose(
            (x[:, 0, 0, 0].numpy() * 255 - 5) / 20, y.argmax(axis=1), atol=1e-3
        )
    small = load_fashion_mnist(
        root=fmnist_root / "FashionMNIST" / "raw", image_size=14, val_fraction=0.25
    )
    assert small.input_shape == (1, 14, 14) and len(small.val) == 10


def test_fashion_mnist_truncated_file_is_named(fmnist_root):
    path = fmnist_root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.*truncated"):
        load_fashion_mnist(root=fmnist_root)


# --- fake Omniglot: omniglot-py/images_background/<Alphabet>/<character>/*.png -----------------

DRAWINGS = 5


@pytest.fixture
def omniglot_root(tmp_path: Path) -> Path:
    base = tmp_path / "omniglot-py" / "images_background"
    for alphabet, n_chars in OMNIGLOT.items():
        for c in range(n_chars):
            folder = base / alphabet / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for d in range(DRAWINGS):
                # White 105x105 page with a black block: the originals draw dark on light.
                img = Image.new("L", (105, 105), 255)
                img.paste(0, (20, 20, 60, 60))
                img.convert("1").save(folder / f"{c:04d}_{d + 1:02d}.png")
    return tmp_path


def test_omniglot_per_alphabet_tasks(omniglot_root):
    s = load_omniglot(root=omniglot_root)
    alphabets = sorted(OMNIGLOT)
    assert s.task_names == alphabets
    assert [t.kind for t in s.tasks] == ["multiclass"] * 3
    assert [t.num_classes for t in s.tasks] == [OMNIGLOT[a] for a in alphabets]
    assert s.input_shape == (1, 28, 28)
    n_chars = sum(OMNIGLOT.values())
    # Each character's 5 drawings: 1 validation, 1 test, 3 training.
    assert (len(s.train), len(s.val), len(s.test)) == (3 * n_chars, n_chars, n_chars)
    y = _labels(s.train)
    assert ((y >= 0).sum(axis=1) == 1).all()  # every drawing is labelled for its alphabet only
    for k, a in enumerate(alphabets):
        counts = np.bincount(y[:, k][y[:, k] >= 0].astype(int))
        assert counts.tolist() == [3] * OMNIGLOT[a]  # every character is in training
    x = s.train.inputs
    # Strokes bright, background dark.
    assert float(x[:, 0, 0, 0].max()) == 0.0 and float(x[:, 0, 10, 10].min()) > 0.9


def test_omniglot_other_modes(omniglot_root):
    s = load_omniglot(root=omniglot_root, mode="alphabet", image_size=32)
    assert s.task_names == ["alphabet"] and s.tasks[0].num_classes == 3
    assert s.input_shape == (1, 32, 32)
    assert sorted(set(s.train.targets["alphabet"].tolist())) == [0, 1, 2]
    b = load_omniglot(root=omniglot_root, mode="one_vs_rest", max_samples=12, seed=2)
    assert b.task_names == ["is_greek", "is_japanese_hiragana", "is_latin"]
    assert len(b.train) == 12 and (_labels(b.train).sum(axis=1) == 1).all()
    assert (
        load_dataset("omniglot", **json.loads(json.dumps(b.kwargs))).fingerprint()
        == b.fingerprint()
    )
    with pytest.raises(DatasetError, match="mode='characters' is not known; use one of"):
        load_omniglot(root=omniglot_root, mode="characters")
    with pytest.raises(DatasetError, match="images_evaluation"):
        load_omniglot(root=omniglot_root, background=False)


# --- missing files ----------------------------------------------------------------------------

LOADERS = {
    "celeba": (load_celeba, "list_attr_celeba.txt"),
    "cifar10": (load_cifar10, "data_batch_1"),
    "fashion_mnist": (load_fashion_mnist, "train-images-idx3-ubyte"),
    "omniglot": (load_omniglot, "images_background"),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_missing_files_say_what_is_expected(name, tmp_path):
    loader, expected_file = LOADERS[name]
    with pytest.raises(DatasetError, match=f"{name} needs root=.*{expected_file}"):
        loader()
    with pytest.raises(DatasetError, match=f"files? not found|{expected_file}.*not found") as info:
        loader(root=tmp_path)
    assert expected_file in str(info.value) and "http" in str(info.value)
    with pytest.raises(DatasetError, match="does not exist"):
        loader(root=tmp_path / "nowhere")


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_bad_common_options(name, tmp_path):
    loader, _ = LOADERS[name]
    with pytest.raises(DatasetError, match="image_size=0 is out of range"):
        loader(root=tmp_path, image_size=0)
    with pytest.raises(DatasetError, match="max_samples='all' must be an integer"):
        loader(root=tmp_path, max_samples="all")
