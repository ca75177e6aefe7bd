"""Your own data through the API: every bad array is refused when the dataset is built.

Issue 17 section 2 ("your own data"): a multiclass label of 10⁹, all-missing multiclass
labels, text labels and inputs, NaN or infinity in the inputs, junk ``.npz`` files. Each is a
``DatasetError`` (or ``TaskError``) naming the task or array and the fix, raised by
``from_arrays`` / ``from_npz`` before any training, in bounded time and memory. Hypothesis
generates hostile arrays of every dtype family; each either builds a dataset or is refused
with an ``MTLSearchError``, never another exception.
"""

from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlsearch import DatasetError, TaskSpec, from_arrays, from_npz
from mtlsearch.errors import MTLSearchError, TaskError

TRIED: dict[str, int] = {}
FAST = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
N = 30


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print("\nown-data cases tried:", dict(TRIED), "total", sum(TRIED.values()))


def _count(kind: str) -> None:
    TRIED[kind] = TRIED.get(kind, 0) + 1


def _X(n: int = N) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 3)).astype("float32")


def _classes(n: int = N) -> np.ndarray:
    return np.arange(n) % 3


# ------------------------------------------------------------------------------ hand-made
def test_a_billion_class_label_is_refused_before_any_allocation():
    y = _classes()
    y[4] = 10**9
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=r"task 'digit' has the label 1000000000.*"
                       r"1,000,000,001 classes.*np\.unique.*num_classes"):
        from_arrays(_X(), {"digit": y}, kinds={"digit": "multiclass"})
    assert time.perf_counter() - start < 2


def test_many_classes_are_allowed_when_given_explicitly():
    y = _classes()
    y[0] = 100_001  # more than is ever inferred
    splits = from_arrays(_X(), {"c": y},
                         tasks=[TaskSpec("c", kind="multiclass", num_classes=100_002)])
    assert splits.tasks[0].num_classes == 100_002


@pytest.mark.parametrize("missing", [np.nan, -1])
def test_all_missing_multiclass_labels_name_the_task(missing):
    y = np.full(N, missing, dtype=float)
    with pytest.raises(DatasetError, match="multiclass task 'c' has no labels: all 30 are missing"):
        from_arrays(_X(), {"c": y}, kinds={"c": "multiclass"})


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_text_labels_name_the_task_and_the_fix(kind):
    y = np.array(["cat", "dog", "eel"] * (N // 3))
    with pytest.raises(DatasetError, match=r"labels of task 'animal' are text.*np\.unique"):
        from_arrays(_X(), {"animal": y}, kinds={"animal": kind})


def test_text_inputs_are_refused():
    X = np.array([["a", "b", "c"]] * N)
    with pytest.raises(DatasetError, match=r"inputs are text \(dtype <U1\), not numbers"):
        from_arrays(X, {"a": np.arange(N) % 2})


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN value"), (np.inf, "infinite value")])
def test_non_finite_inputs_are_refused_at_the_dataset_with_the_row(bad, word):
    X = _X()
    X[7, 1] = bad
    with pytest.raises(DatasetError, match=rf"inputs contain 1 {word} \(first in row 7\).*impute"):
        from_arrays(X, {"a": np.arange(N) % 2})


def test_nan_inputs_never_reach_search():
    """The issue: NaN inputs failed inside search() during the single-task reference."""
    X = _X()
    X[3, 0] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        from_arrays(X, {"a": np.arange(N) % 2})  # raised here, so search() never starts


@pytest.mark.parametrize("X, what", [
    (np.array([[np.datetime64("2020-01-01")] * 3] * N), "dates"),
    (np.ones((N, 3), dtype=complex), "complex numbers"),
    (np.zeros(N, dtype=[("a", "f4"), ("b", "f4")]), "records"),
    (np.array([[{"a": 1}] * 3] * N, dtype=object), "Python objects"),
])
def test_non_numeric_inputs_say_what_they_are(X, what):
    with pytest.raises(DatasetError, match=f"inputs are {what}"):
        from_arrays(X, {"a": np.arange(N) % 2})


def test_ragged_inputs_are_refused():
    X = [[1.0, 2.0]] * (N - 1) + [[1.0]]
    with pytest.raises(DatasetError, match="cannot be read as one array"):
        from_arrays(X, {"a": np.arange(N) % 2})


def test_infinite_and_fractional_multiclass_labels():
    y = _classes().astype(float)
    y[2] = np.inf
    with pytest.raises(DatasetError, match="contain infinity"):
        from_arrays(_X(), {"c": y}, kinds={"c": "multiclass"})
    y[2] = 1.5
    with pytest.raises(DatasetError, match="not whole numbers"):
        from_arrays(_X(), {"c": y}, kinds={"c": "multiclass"})


# ------------------------------------------------------------------------------ junk .npz
def _junk_files(tmp_path):
    X, y = _X(), np.arange(N) % 2
    np.save(tmp_path / "single.npy", X)
    yield "a .npy", tmp_path / "single.npy", "is a .npy file.*np.savez"
    (tmp_path / "text.npz").write_text("X,y\n1,0\n")
    yield "text", tmp_path / "text.npz", "not an .npz file"
    np.savez(tmp_path / "ok.npz", X=X, y=y)
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    yield "truncated", tmp_path / "cut.npz", "not a readable .npz|truncated|corrupt"
    with zipfile.ZipFile(tmp_path / "notes.npz", "w") as zf:
        zf.writestr("X.npy", (tmp_path / "single.npy").read_bytes())
        zf.writestr("readme.txt", "hello")
    yield "a non-array member", tmp_path / "notes.npz", "readme.txt.*not a numpy array"
    np.savez(tmp_path / "badname.npz", X=X, **{"a\u202eb": y})
    yield "a bidi task name", tmp_path / "badname.npz", r"'a\\u202eb' is not allowed"


def test_junk_npz_files_are_clear_dataset_errors(tmp_path):
    for _label, path, message in _junk_files(tmp_path):
        _count("junk .npz (hand-made)")
        with pytest.raises((DatasetError, TaskError), match=message):
            from_npz(path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(DatasetError, match="FIFO"):
        from_npz(fifo)
    assert time.perf_counter() - start < 2


# ------------------------------------------------------------------------------ generated
_DTYPES = st.sampled_from(["f4", "f8", "f2", "i1", "i8", "u1", "u8", "?", "U3", "S2", "c8",
                           "M8[D]", "m8[s]", "O"])
_SPECIAL = st.sampled_from([0.0, 1.0, -1.0, 2.0, np.nan, np.inf, -np.inf, 1e9, 1e30, 2**62])


@st.composite
def hostile_array(draw, rows: int):
    dtype = np.dtype(draw(_DTYPES))
    shape = (rows, *draw(st.lists(st.integers(1, 3), max_size=2)))
    if dtype.kind in "fc":
        values = draw(st.lists(_SPECIAL, min_size=1, max_size=4))
        arr = np.resize(np.array(values, dtype=dtype), shape)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = draw(st.lists(st.integers(max(info.min, -(2**62)), min(info.max, 2**62)),
                               min_size=1, max_size=4))
        arr = np.resize(np.array(values, dtype=dtype), shape)
    elif dtype.kind == "?":
        arr = np.resize(np.array([True, False]), shape)
    elif dtype.kind == "O":
        arr = np.empty(shape, dtype=object)
        arr.fill(draw(st.sampled_from([None, "x", 1, {"a": 1}])))
    elif dtype.kind in "Mm":
        arr = np.resize(np.array([1, 2, 3], dtype="i8").astype(dtype), shape)
    else:
        arr = np.resize(np.array(["ab", "c"], dtype=dtype), shape)
    return arr


@FAST
@given(data=st.data(), kind=st.sampled_from(["binary", "multiclass", "regression", "ranking"]))
def test_generated_hostile_labels_build_or_fail_cleanly(data, kind):
    _count(f"hostile labels ({kind})")
    y = data.draw(hostile_array(N))
    try:
        splits = from_arrays(_X(), {"t": y}, kinds={"t": kind})
    except MTLSearchError as exc:
        assert str(exc).strip() and ("'t'" in str(exc) or "task" in str(exc))
        return
    spec = splits.tasks[0]
    assert spec.kind == kind and (kind != "multiclass" or 2 <= spec.num_classes <= 100_000)


@FAST
@given(data=st.data())
def test_generated_hostile_inputs_build_or_fail_cleanly(data):
    _count("hostile inputs")
    X = data.draw(hostile_array(N))
    try:
        splits = from_arrays(X, {"t": np.arange(N) % 2})
    except MTLSearchError as exc:
        assert "inputs" in str(exc)
        return
    assert np.isfinite(splits.train.inputs.numpy()).all()
