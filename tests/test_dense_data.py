"""The generated dense dataset and the NYU v2 / Cityscapes loaders on fake copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlsearch.data.builtin.dense_files import CITYSCAPES_TRAIN_IDS
from mtlsearch.errors import DatasetError
from mtlsearch.registry import load_dataset


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("dense_shapes", n_samples=40, size=16)


def test_dense_shapes_targets(shapes):
    tr = shapes.train
    assert shapes.input_shape == (3, 16, 16)
    seg, depth, normals, edges = (tr.targets[t] for t in ("segment", "depth", "normals", "edges"))
    assert seg.shape == (len(tr), 16, 16) and seg.dtype == torch.long
    assert set(seg.unique().tolist()) <= {-1, 0, 1, 2, 3}
    assert bool((seg == -1).any()), "the boundary band carries the ignore label"
    assert bool(torch.isnan(depth).any()), "missing depth holes are invalid"
    valid = depth[~torch.isnan(depth)]
    assert float(valid.min()) > 0 and float(valid.max()) < 8
    norms = torch.linalg.vector_norm(normals, dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    # Objects are nearer than the background plane (depth 4 to 7) wherever both are labelled.
    both = (seg > 0) & ~torch.isnan(depth[:, 0])
    assert float(depth[:, 0][both].max()) < float(depth[:, 0][(seg == 0) & ~torch.isnan(depth[:, 0])].min())
    assert shapes.tasks[0].options == {"size": [16, 16], "head": "aspp", "ignore_index": 255}
    assert shapes.tasks[3].options == {"size": [16, 16], "head": "aspp", "balance": "hed"}


def test_dense_shapes_is_seeded(shapes):
    again = load_dataset("dense_shapes", n_samples=40, size=16)
    other = load_dataset("dense_shapes", n_samples=40, size=16, seed=1)
    assert again.fingerprint() == shapes.fingerprint() != other.fingerprint()
    assert load_dataset("dense_shapes", **shapes.kwargs).fingerprint() == shapes.fingerprint()


def test_dense_shapes_options():
    s = load_dataset("dense_shapes", n_samples=20, size=8, tasks=["depth"], head="ppm",
                     missing_depth=0.0, ignore_boundary=False)
    assert s.task_names == ["depth"] and s.tasks[0].options["head"] == "ppm"
    assert not bool(torch.isnan(s.train.targets["depth"]).any())
    with pytest.raises(DatasetError, match="subset"):
        load_dataset("dense_shapes", n_samples=20, tasks=["albedo"])
    with pytest.raises(DatasetError, match="size"):
        load_dataset("dense_shapes", n_samples=20, size=4)
    with pytest.raises(DatasetError, match="missing_depth"):
        load_dataset("dense_shapes", n_samples=20, missing_depth=0.9)
    plain = load_dataset("dense_shapes", n_samples=20, size=8, tasks=["edges"], edge_balance="none")
    assert plain.tasks[0].options["balance"] == "none"
    with pytest.raises(DatasetError, match="edge_balance"):
        load_dataset("dense_shapes", n_samples=20, edge_balance="focal")


def _fake_nyu_npy(root, n_train=6, n_val=3, h=12, w=16):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in ("image", "label", "depth", "normal"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            np.save(root / split / "image" / f"{i}.npy", rng.random((h, w, 3)).astype(np.float32))
            label = rng.integers(-1, 13, size=(h, w)).astype(np.float32)
            np.save(root / split / "label" / f"{i}.npy", label)
            depth = rng.uniform(0.5, 5, size=(h, w, 1)).astype(np.float32)
            depth[0, 0] = 0.0
            np.save(root / split / "depth" / f"{i}.npy", depth)
            normal = rng.normal(size=(h, w, 3)).astype(np.float32)
            np.save(root / split / "normal" / f"{i}.npy", normal / np.linalg.norm(normal, axis=-1, keepdims=True))


def test_nyuv2_npy_layout(tmp_path):
    _fake_nyu_npy(tmp_path)
    s = load_dataset("nyuv2", root=tmp_path, size=[12, 16], val_fraction=0.2)
    assert [t.kind for t in s.tasks] == ["segmentation", "depth", "normals"]
    assert s.tasks[0].num_classes == 13
    assert (len(s.train), len(s.val), len(s.test)) == (5, 1, 3)
    assert s.input_shape == (3, 12, 16)
    # -1 labels are ignored, depth 0 is invalid: identical to the files at full size.
    raw = np.load(tmp_path / "val" / "label" / "0.npy")
    assert torch.equal(s.test.targets["segment"][0], torch.from_numpy(np.where(raw < 0, -1, raw)).long())
    assert bool(torch.isnan(s.test.targets["depth"][0, 0, 0, 0]))
    small = load_dataset("nyuv2", root=tmp_path, size=8, tasks=["depth"], max_samples=4)
    assert small.input_shape == (3, 8, 8) and small.task_names == ["depth"]


def test_nyuv2_mat_file(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    h, w, n = 10, 12, 8
    labels = rng.integers(0, 5, size=(h, w, n)).astype(np.uint16)  # 0 = unlabelled
    scipy.io.savemat(tmp_path / "nyu_depth_v2_labeled.mat", {
        "images": rng.integers(0, 256, size=(h, w, 3, n)).astype(np.uint8),
        "labels": labels,
        "depths": rng.uniform(0.5, 5, size=(h, w, n)).astype(np.float32),
    })
    s = load_dataset("nyuv2", root=tmp_path, size=[h, w])
    assert s.task_names == ["segment", "depth"] and s.tasks[0].num_classes == 4
    assert len(s.train) + len(s.val) + len(s.test) == n
    assert float(s.train.inputs.max()) <= 1.0
    seg = s.train.targets["segment"]
    assert int(seg.min()) == -1 and int(seg.max()) == 3


def _matlab_v73(path, arrays):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 after a 512-byte user block holding the
    text header, arrays stored column-major (h5py sees every axis reversed)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for name, a in arrays.items():
            ds = f.create_dataset(name, data=np.ascontiguousarray(a.transpose(*reversed(range(a.ndim)))))
            ds.attrs["MATLAB_class"] = np.bytes_({"uint8": "uint8", "uint16": "uint16"}.get(a.dtype.name, "single"))
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\0"))


def test_nyuv2_mat_v73_hdf5_file(tmp_path):
    pytest.importorskip("h5py")
    from scipy.io.matlab import matfile_version

    rng = np.random.default_rng(1)
    h, w, n = 8, 11, 10  # h != w: a transposed reading would not even have the right shape
    images = rng.integers(0, 256, size=(h, w, 3, n)).astype(np.uint8)  # MATLAB's view
    labels = rng.integers(0, 5, size=(h, w, n)).astype(np.uint16)  # 0 = unlabelled
    labels[0, 0, :] = 4
    depths = rng.uniform(0.5, 5, size=(h, w, n)).astype(np.float32)
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    _matlab_v73(path, {"images": images, "labels": labels, "depths": depths})
    assert matfile_version(str(path)) == (2, 0)  # scipy sees a v7.3 file it cannot read itself

    s = load_dataset("nyuv2", root=path, size=[h, w], val_fraction=0.2)
    assert s.task_names == ["segment", "depth"] and s.tasks[0].num_classes == 4
    assert s.input_shape == (3, h, w) and s.info["layout"] == "mat"
    found = []
    for split in (s.train, s.val, s.test):
        for x, seg, depth in zip(split.inputs, split.targets["segment"], split.targets["depth"],
                                 strict=True):
            match = [k for k in range(n)
                     if np.allclose(x.numpy(), images[..., k].transpose(2, 0, 1) / 255.0, atol=1e-6)]
            assert len(match) == 1
            k = match[0]
            found.append(k)
            want = labels[..., k].astype(np.int64) - 1  # class k -> k - 1, 0 -> ignored (-1)
            assert np.array_equal(seg.numpy(), want)
            assert np.allclose(depth.numpy()[0], depths[..., k])
    assert sorted(found) == list(range(n))


def test_nyuv2_mat_v73_without_h5py_names_the_fix(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    path = tmp_path / "nyu.mat"
    _matlab_v73(path, {"images": np.zeros((8, 8, 3, 2), np.uint8), "labels": np.zeros((8, 8, 2), np.uint16),
                       "depths": np.ones((8, 8, 2), np.float32)})
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(DatasetError, match="install h5py"):
        load_dataset("nyuv2", root=path)


def test_nyuv2_mat_without_the_labelled_variables(tmp_path):
    import scipy.io

    scipy.io.savemat(tmp_path / "nyu.mat", {"images": np.zeros((8, 8, 3, 2), np.uint8)})
    with pytest.raises(DatasetError, match="no variable 'labels'"):
        load_dataset("nyuv2", root=tmp_path / "nyu.mat")


def test_nyuv2_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="root="):
        load_dataset("nyuv2", root=tmp_path)


def _fake_cityscapes(root, with_depth=True):
    from PIL import Image

    rng = np.random.default_rng(0)
    ids = np.array([0, 7, 8, 26, 33, 1], dtype=np.uint8)
    for split, n in (("train", 5), ("val", 2)):
        for i in range(n):
            city = "aachen" if i % 2 else "bremen"
            stem = f"{city}_{i:06d}_000019"
            for folder in ("leftImg8bit", "gtFine", "disparity"):
                (root / folder / split / city).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, size=(16, 32, 3)).astype(np.uint8)).save(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(ids[rng.integers(0, len(ids), size=(16, 32))]).save(
                root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            if with_depth:
                disp = rng.integers(0, 3000, size=(16, 32)).astype(np.uint16)
                Image.fromarray(disp).save(root / "disparity" / split / city / f"{stem}_disparity.png")


def test_cityscapes_official_layout(tmp_path):
    _fake_cityscapes(tmp_path)
    s = load_dataset("cityscapes", root=tmp_path, size=[16, 32], val_fraction=0.2)
    assert s.task_names == ["segment", "depth"] and s.tasks[0].num_classes == 19
    assert (len(s.train), len(s.val), len(s.test)) == (4, 1, 2)
    seg = s.train.targets["segment"]
    # labelIds 7, 8, 26, 33 -> trainIds 0, 1, 13, 18; ids 0 and 1 are ignored.
    assert set(seg.unique().tolist()) == {-1} | {CITYSCAPES_TRAIN_IDS[i] for i in (7, 8, 26, 33)}
    depth = s.train.targets["depth"]
    assert bool(torch.isnan(depth).any()) and float(depth[~torch.isnan(depth)].min()) >= 0


def test_cityscapes_without_disparity_has_only_segmentation(tmp_path):
    _fake_cityscapes(tmp_path, with_depth=False)
    import shutil

    shutil.rmtree(tmp_path / "disparity")
    s = load_dataset("cityscapes", root=tmp_path, size=16)
    assert s.task_names == ["segment"]
    with pytest.raises(DatasetError, match="this copy has"):
        load_dataset("cityscapes", root=tmp_path, tasks=["depth"])
