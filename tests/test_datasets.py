"""Built-in in-memory datasets: multi_digits, digits, synthetic (and their registry entries)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from mtlsearch.data.builtin.digits import load_digits, source_digits
from mtlsearch.data.builtin.multi_digits import GROUPS, TASKS, load_multi_digits
from mtlsearch.data.builtin.synthetic import group_sizes_for, load_synthetic
from mtlsearch.errors import DatasetError, MTLSearchError
from mtlsearch.registry import list_datasets, load_dataset

SPLITS = ("train", "val", "test")
SMALL = {"n_train": 400, "n_val": 150, "n_test": 150}


@pytest.fixture(scope="module")
def sk_digits():
    bunch = sk_load_digits()
    return bunch.images / 16.0, bunch.target


@pytest.fixture(scope="module")
def md():
    return load_multi_digits(seed=0)


def _labels(split) -> np.ndarray:
    return np.stack([split.targets[t].numpy() for t in split.targets], axis=1)


def _group_correlations(splits) -> tuple[float, float]:
    corr = np.corrcoef(_labels(splits.train).T)
    group = np.array(splits.info["labels"])
    same = group[:, None] == group[None, :]
    off_diagonal = ~np.eye(len(group), dtype=bool)
    return float(corr[same & off_diagonal].mean()), float(corr[~same].mean())


# --- registry -------------------------------------------------------------------------------


def test_every_builtin_is_registered():
    names = list_datasets()
    for name in (
        "multi_digits",
        "digits",
        "synthetic",
        "celeba",
        "cifar10",
        "fashion_mnist",
        "omniglot",
    ):
        assert name in names


def test_registry_rejects_unknown_option():
    with pytest.raises(MTLSearchError, match="bogus"):
        load_dataset("multi_digits", bogus=1)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("multi_digits", {"seed": 3, **SMALL, "shift": 1, "tasks": ["sum_ge10", "left_even"]}),
        ("digits", {"seed": 2, "val_fraction": 0.2}),
        ("synthetic", {"seed": 5, "group_sizes": [3, 2], "n_samples": 400, "kind": "regression"}),
    ],
)
def test_recorded_kwargs_reload_identical_data(name, kwargs):
    first = load_dataset(name, **kwargs)
    recorded = json.loads(json.dumps(first.kwargs))  # must survive JSON
    assert recorded["seed"] == kwargs["seed"]
    again = load_dataset(name, **recorded)
    assert again.fingerprint() == first.fingerprint()
    assert again.task_names == first.task_names


# --- multi_digits ---------------------------------------------------------------------------


def test_multi_digits_shapes_tasks_and_groups(md):
    assert md.name == "multi_digits"
    assert md.input_shape == (1, 12, 24)
    assert md.task_names == [
        "left_even",
        "left_ge5",
        "right_even",
        "right_ge5",
        "left_gt_right",
        "sum_ge10",
    ]
    assert (len(md.train), len(md.val), len(md.test)) == (3000, 1000, 1000)
    assert md.info["groups"] == [
        ["left_even", "left_ge5"],
        ["right_even", "right_ge5"],
        ["left_gt_right", "sum_ge10"],
    ]
    assert md.info["group_names"] == ["left", "right", "both"]
    assert all(spec.kind == "binary" for spec in md.tasks)
    x = md.train.inputs
    assert x.dtype.is_floating_point and float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_multi_digits_source_digits_are_disjoint_across_splits(md, sk_digits):
    pools = {s: set(md.info["pools"][s]) for s in SPLITS}
    assert not pools["train"] & pools["val"]
    assert not pools["train"] & pools["test"]
    assert not pools["val"] & pools["test"]
    assert len(pools["train"] | pools["val"] | pools["test"]) == len(sk_digits[1])
    used = {}
    for s in SPLITS:
        src = md.info["source_indices"][s]
        assert len(src["left"]) == len(src["right"]) == len(getattr(md, s))
        used[s] = set(src["left"]) | set(src["right"])
        assert used[s] <= pools[s]
    assert not used["train"] & used["test"] and not used["train"] & used["val"]


def test_multi_digits_labels_match_the_placed_digits(md, sk_digits):
    images, digit = sk_digits
    for s in SPLITS:
        split, src = getattr(md, s), md.info["source_indices"][s]
        left, right = digit[src["left"]], digit[src["right"]]
        expected = {
            "left_even": left % 2 == 0,
            "left_ge5": left >= 5,
            "right_even": right % 2 == 0,
            "right_ge5": right >= 5,
            "left_gt_right": left > right,
            "sum_ge10": left + right >= 10,
        }
        for task, rule in expected.items():
            np.testing.assert_array_equal(split.targets[task].numpy(), rule.astype(np.float32))
        assert md.info["digit_labels"][s] == {"left": left.tolist(), "right": right.tolist()}


def test_multi_digits_images_hold_the_recorded_digits(md, sk_digits):
    images, _ = sk_digits
    src, x = md.info["source_indices"]["test"], md.test.inputs[:, 0].numpy()
    corners = md.info["corners"]["test"]
    for i in range(40):
        for side, offset in ((0, 0), (1, 12)):
            digit = images[src[("left", "right")[side]][i]]
            half = x[i, :, offset : offset + 12]
            # Search the half for the digit at every shift, independently of the recorded
            # corner; the rest of the half must be blank (pixels are non-negative).
            hits = [
                (r, c)
                for r in range(5)
                for c in range(5)
                if np.allclose(half[r : r + 8, c : c + 8], digit, atol=1e-6)
            ]
            assert np.isclose(half.sum(), digit.sum(), atol=1e-4)
            row, col = corners[i][side]
            assert (row, col - offset) in hits, f"test image {i}: digit {side} not where recorded"


def test_multi_digits_shift_moves_digits_within_bounds(md):
    corners = np.array(md.info["corners"]["train"])  # (n, side, row/col)
    rows, cols = corners[:, :, 0], corners[:, :, 1] - np.array([0, 12])
    assert rows.min() == 0 and rows.max() == 4 and cols.min() == 0 and cols.max() == 4
    centred = load_multi_digits(seed=0, shift=0, **SMALL)
    c = np.array(centred.info["corners"]["train"])
    assert (c[:, :, 0] == 2).all() and (c[:, 0, 1] == 2).all() and (c[:, 1, 1] == 14).all()


def test_multi_digits_tasks_are_balanced_enough(md):
    for task in md.task_names:
        rate = float(md.train.targets[task].mean())
        assert 0.3 < rate < 0.7, (task, rate)


def test_multi_digits_seeding():
    a, b = load_multi_digits(seed=7, **SMALL), load_multi_digits(seed=7, **SMALL)
    assert a.fingerprint() == b.fingerprint()
    assert a.info["pools"] == b.info["pools"]
    c = load_multi_digits(seed=8, **SMALL)
    assert c.fingerprint() != a.fingerprint()
    assert c.info["pools"]["test"] != a.info["pools"]["test"]


def test_multi_digits_builds_fast():
    load_multi_digits(seed=0)  # warm the source-digit cache
    start = time.perf_counter()
    load_multi_digits(seed=1)
    assert time.perf_counter() - start < 1.0


def test_multi_digits_task_subset_keeps_order_and_filters_groups():
    s = load_multi_digits(tasks=["sum_ge10", "left_even", "left_ge5"], **SMALL)
    assert s.task_names == ["sum_ge10", "left_even", "left_ge5"]
    assert s.info["groups"] == [["left_even", "left_ge5"], ["sum_ge10"]]
    assert s.info["group_names"] == ["left", "both"]
    assert TASKS == [t for g in GROUPS.values() for t in g]


def test_multi_digits_larger_canvas():
    s = load_multi_digits(half_size=16, shift=4, **SMALL)
    assert s.input_shape == (1, 16, 32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"tasks": ["left_even", "middle_odd"]},
            "unknown task names.*middle_odd.*known tasks: left_even",
        ),
        ({"tasks": []}, "non-empty list"),
        ({"tasks": ["left_even", "left_even"]}, "more than once"),
        ({"n_train": 0}, "n_train=0 is out of range"),
        ({"n_val": 2.5}, "n_val=2.5 must be an integer"),
        ({"shift": 3}, "shift=3 moves an 8-pixel digit out of a 12-pixel half.*shift <= 2"),
        ({"shift": -1}, "shift=-1 is out of range"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_multi_digits_bad_options(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        load_multi_digits(**{**SMALL, **kwargs})


# --- digits ---------------------------------------------------------------------------------


def test_source_digits_equal_scikit_learn(sk_digits):
    images, labels = source_digits()
    np.testing.assert_allclose(images, sk_digits[0], atol=1e-7)
    np.testing.assert_array_equal(labels, sk_digits[1])
    assert not images.flags.writeable


def test_digits_one_vs_rest(sk_digits):
    s = load_digits(seed=0)
    assert s.task_names == [f"is_{k}" for k in range(10)]
    assert s.input_shape == (1, 8, 8)
    rows = {k: s.info["source_indices"][k] for k in SPLITS}
    assert sum(len(r) for r in rows.values()) == 1797
    assert len(set(rows["train"]) | set(rows["val"]) | set(rows["test"])) == 1797
    assert len(s.val) == len(s.test) == round(1797 * 0.15)
    for k in SPLITS:
        split = getattr(s, k)
        y = _labels(split)
        assert (y.sum(axis=1) == 1).all()  # exactly one "is_k" per image
        np.testing.assert_array_equal(y.argmax(axis=1), sk_digits[1][rows[k]])
        np.testing.assert_allclose(split.inputs[:, 0].numpy(), sk_digits[0][rows[k]], atol=1e-7)


def test_digits_seeding_and_options():
    assert load_digits(seed=4).fingerprint() == load_digits(seed=4).fingerprint()
    assert load_digits(seed=4).fingerprint() != load_digits(seed=5).fingerprint()
    s = load_digits(val_fraction=0.1, test_fraction=0.2, tasks=["is_3", "is_8"])
    assert s.task_names == ["is_3", "is_8"]
    assert len(s.test) == round(1797 * 0.2)
    with pytest.raises(DatasetError, match="leave no training data"):
        load_digits(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DatasetError, match="val_fraction=0.0 must lie strictly between"):
        load_digits(val_fraction=0.0)
    with pytest.raises(DatasetError, match="known tasks: is_0"):
        load_digits(tasks=["is_10"])


# --- synthetic ------------------------------------------------------------------------------


def test_synthetic_defaults():
    s = load_synthetic()
    assert s.task_names == [f"t{i:03d}" for i in range(12)]
    assert s.input_shape == (32,)
    assert len(s.train) + len(s.val) + len(s.test) == 3000
    assert s.info["labels"] == [0] * 4 + [1] * 4 + [2] * 4
    assert s.info["groups"] == [[f"t{i:03d}" for i in range(4 * k, 4 * k + 4)] for k in range(3)]
    for task in s.task_names:
        assert abs(float(s.train.targets[task].mean()) - 0.5) < 0.05  # median threshold


def test_synthetic_within_group_labels_agree_more_than_between():
    within, between = _group_correlations(load_synthetic(relatedness=0.9, seed=1))
    assert within > 0.3
    assert abs(between) < 0.1
    assert within > between + 0.25


def test_synthetic_relatedness_and_between_are_dials():
    strong, _ = _group_correlations(load_synthetic(relatedness=0.95, seed=2))
    weak, _ = _group_correlations(load_synthetic(relatedness=0.3, seed=2))
    assert strong > weak + 0.3
    _, apart = _group_correlations(load_synthetic(between=0.0, seed=2))
    _, together = _group_correlations(load_synthetic(between=0.7, seed=2))
    assert together > apart + 0.1


def test_synthetic_group_sizes_and_regression():
    s = load_synthetic(group_sizes=[5, 2, 1], kind="regression", n_samples=500, input_dim=8)
    assert s.info["labels"] == [0] * 5 + [1] * 2 + [2]
    assert s.info["groups"][2] == ["t007"]
    assert s.input_shape == (8,)
    assert all(spec.kind == "regression" for spec in s.tasks)
    y = np.concatenate([_labels(getattr(s, k)) for k in SPLITS])
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=0), 1, atol=1e-4)
    assert group_sizes_for(10, 3) == [4, 3, 3]


def test_synthetic_many_tasks_build_quickly():
    start = time.perf_counter()
    s = load_synthetic(n_tasks=312, n_groups=12)
    elapsed = time.perf_counter() - start
    assert len(s.tasks) == 312 and s.task_names[-1] == "t311"
    assert len(s.info["groups"]) == 12 and sorted(map(len, s.info["groups"])) == [26] * 12
    within, between = _group_correlations(s)
    assert within > between + 0.25
    assert elapsed < 10.0


def test_synthetic_more_groups_than_dimensions():
    s = load_synthetic(n_tasks=40, n_groups=20, input_dim=8, n_samples=400)
    assert len(s.info["groups"]) == 20


def test_synthetic_seeding():
    a = load_synthetic(seed=3, n_samples=300)
    assert a.fingerprint() == load_synthetic(seed=3, n_samples=300).fingerprint()
    assert a.fingerprint() != load_synthetic(seed=4, n_samples=300).fingerprint()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"relatedness": 1.5}, r"relatedness=1.5 must be a number in \[0, 1\]"),
        ({"between": 1.0}, "between=1.0"),
        ({"noise": -0.1}, "noise=-0.1 must be a number >= 0"),
        ({"n_tasks": 2, "n_groups": 3}, "n_groups=3 is more than n_tasks=2"),
        ({"group_sizes": [3, 3], "n_tasks": 5}, "n_tasks=5 disagrees with group_sizes"),
        ({"group_sizes": []}, "group_sizes=.* must be a non-empty list"),
        ({"group_sizes": [2, 0]}, r"group_sizes\[1\]=0 is out of range"),
        ({"kind": "ranking"}, "kind='ranking' is not supported; use one of"),
        ({"n_samples": 5}, "n_samples=5 is out of range"),
        ({"input_dim": "32"}, "input_dim='32' must be an integer"),
    ],
)
def test_synthetic_bad_options(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        load_synthetic(**kwargs)
