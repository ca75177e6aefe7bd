"""Bring-your-own data: arrays, .npz files, seeded splits and the errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from mtlsearch import DatasetError, TaskError, from_arrays, from_npz


def _arrays(n=100):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5)).astype("float32")
    return X, {"pos": (X[:, 0] > 0).astype(int), "size": X[:, 1] * 3, "cls": np.arange(n) % 4}


def test_from_arrays_splits_and_infers_specs():
    X, y = _arrays()
    splits = from_arrays(X, y, kinds={"size": "regression", "cls": "multiclass"}, seed=1)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 100
    assert [t.kind for t in splits.tasks] == ["binary", "regression", "multiclass"]
    assert splits.tasks[2].num_classes == 4
    assert splits.input_shape == (5,)
    x, targets = next(splits.train.batches(8))
    assert x.shape == (8, 5) and set(targets) == {"pos", "size", "cls"}


def test_same_seed_same_split_and_other_seed_differs():
    X, y = _arrays()
    a, b, c = (from_arrays(X, {"pos": y["pos"]}, seed=s) for s in (0, 0, 1))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_npz_round_trip(tmp_path):
    X, y = _arrays()
    path = tmp_path / "data.npz"
    np.savez(path, X=X, **y)
    splits = from_npz(path, kinds={"size": "regression", "cls": "multiclass"})
    assert splits.name == "data" and len(splits.tasks) == 3


def test_npz_without_input_names_the_arrays(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, features=np.zeros((4, 2)), pos=np.zeros(4))
    with pytest.raises(DatasetError, match="no input array 'X'.*\\['features', 'pos'\\].*input_key"):
        from_npz(path)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(DatasetError, match="without pickle"):
        from_npz(path)


def test_empty_dataset():
    with pytest.raises(DatasetError, match="empty"):
        from_arrays(np.zeros((0, 3)), {"a": np.zeros(0)})


def test_single_class_task_in_training_split():
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(DatasetError, match="task 'const' has a single class \\[1.0\\] in its training split"):
        from_arrays(X, {"const": np.ones(50)})


def test_labels_count_mismatch():
    with pytest.raises(DatasetError, match="task 'a' has 3 labels for 4 inputs"):
        from_arrays(np.zeros((4, 2)), {"a": [0, 1, 0]})


def test_bad_labels_name_the_task():
    with pytest.raises(TaskError, match="binary task 'a'"):
        from_arrays(np.zeros((4, 2)), {"a": [0, 1, 3, 0]})


def test_bad_split_fractions():
    with pytest.raises(DatasetError, match="sum to less than 1"):
        from_arrays(np.zeros((10, 2)), {"a": [0, 1] * 5}, val_fraction=0.6, test_fraction=0.5)
