"""``predict`` and ``predict_npz`` inputs: every hostile input is one clear line, quickly.

Issue 17 section 2 ("predict inputs"): text, datetime, object and record arrays, a ``.npy``
instead of an ``.npz``, a non-zip file, a header claiming a huge shape, a member that
inflates to gigabytes, a wrong input shape (blamed on the input, expected vs got), NaN.
Hypothesis generates inputs of every dtype family and shape, forged ``.npy`` headers and
corrupted archives; each either predicts or raises an ``ExportError`` (one line, naming
the file) in bounded time, never another exception.
"""

from __future__ import annotations

import io
import resource
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
from mtlsearch.errors import ExportError, MTLSearchError
from mtlsearch.export import export_model, predict, predict_npz

TRIED: dict[str, int] = {}
FAST = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", autouse=True)
def _report():
    torch.set_num_threads(1)
    yield
    print("\npredict-input cases tried:", dict(TRIED), "total", sum(TRIED.values()))


def _count(kind: str) -> None:
    TRIED[kind] = TRIED.get(kind, 0) + 1


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    space = create_space("mlp", input_shape=(4,), widths=(8,))
    specs = [TaskSpec("a"), TaskSpec("b", kind="multiclass", num_classes=3)]
    model = materialize(SharingGraph.hard_sharing(["a", "b"], 1), space, specs)
    return export_model(model, tmp_path_factory.mktemp("e") / "model", picture=False)


@pytest.fixture(scope="module")
def model(exported):
    from mtlsearch.export import load

    return load(exported)


def _one_clear_line(exc: BaseException, *fragments: str) -> None:
    message = str(exc)
    assert isinstance(exc, MTLSearchError) and message.strip() and "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------ hand-made
def test_wrong_shape_blames_the_input_with_expected_and_given(model, exported, tmp_path):
    with pytest.raises(ExportError) as info:
        predict(model, np.zeros((3, 5), dtype=np.float32))
    _one_clear_line(info.value, "(3, 5)", "(5,) per sample", "takes (4,) per sample")
    assert "search space" not in str(info.value)
    with pytest.raises(ExportError) as info:  # the header is checked before the data is read
        predict_npz(exported, _npz(tmp_path / "w.npz", X=np.zeros((3, 4, 1))), tmp_path / "o.npz")
    _one_clear_line(info.value, "w.npz", "(4, 1) per sample", "takes (4,)")


@pytest.mark.parametrize("X, what", [
    (np.array([["a", "b", "c", "d"]]), "text"),
    (np.array([[b"a"] * 4]), "bytes"),
    (np.array([["2020-01-01"] * 4], dtype="M8[D]"), "dates"),
    (np.ones((2, 4), dtype="m8[s]"), "time spans"),
    (np.zeros((2, 4), dtype=[("x", "f4")]), "records"),
    (np.ones((2, 4), dtype=complex), "complex numbers"),
])
def test_non_numeric_inputs_are_refused(model, exported, tmp_path, X, what):
    with pytest.raises(ExportError) as info:
        predict(model, X)
    _one_clear_line(info.value, f"inputs are {what}")
    with pytest.raises(ExportError) as info:
        predict_npz(exported, _npz(tmp_path / "t.npz", X=X), tmp_path / "o.npz")
    _one_clear_line(info.value, what)


def test_object_arrays_are_refused_without_unpickling(exported, tmp_path):
    path = _npz(tmp_path / "o.npz", X=np.array([[{"a": 1}] * 4], dtype=object))
    with pytest.raises(ExportError) as info:
        predict_npz(exported, path, tmp_path / "out.npz")
    _one_clear_line(info.value, "Python objects", "without pickle")


def test_nan_inputs_are_refused(model):
    X = np.zeros((5, 4), dtype=np.float64)
    X[3, 2] = np.nan
    with pytest.raises(ExportError, match=r"NaN or infinity \(first in row 3"):
        predict(model, X)
    X[3, 2] = 1e300  # finite as float64, infinite once a float32
    with pytest.raises(ExportError, match="row 3, as float32"):
        predict(model, X)


def test_a_npy_and_a_text_file_are_not_npz(exported, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 4)))
    with pytest.raises(ExportError) as info:
        predict_npz(exported, tmp_path / "x.npy", tmp_path / "o.npz")
    _one_clear_line(info.value, "is a .npy file", "np.savez(path, X=array)")
    (tmp_path / "x.csv").write_text("1,2,3,4\n")
    with pytest.raises(ExportError) as info:
        predict_npz(exported, tmp_path / "x.csv", tmp_path / "o.npz")
    _one_clear_line(info.value, "not an .npz file (not a zip archive)")


def _forged(path: Path, shape: tuple[int, ...], data: bytes, *, compress: bool = False,
            dtype: str = "<f4") -> Path:
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        zf.writestr("X.npy", buffer.getvalue() + data)
    return path


def test_a_header_claiming_a_huge_shape_is_refused_before_allocating(exported, tmp_path):
    path = _forged(tmp_path / "huge.npz", (10**12, 4), bytes(64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ExportError) as info:
        predict_npz(exported, path, tmp_path / "o.npz")
    _one_clear_line(info.value, "declares shape (1000000000000, 4)", "holds 64 bytes")
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_a_decompression_bomb_is_refused_before_inflating(exported, tmp_path, monkeypatch):
    import mtlsearch.safety as safety

    # the floor is 256 MB; lowered so that a 4 MB bomb stands for the 1 GB one (same ratio)
    monkeypatch.setattr(safety, "INFLATE_FLOOR_BYTES", 1 << 20)
    path = _forged(tmp_path / "bomb.npz", (2**20, 1), bytes(4 * 2**20), compress=True)
    assert path.stat().st_size < 10_000
    start = time.perf_counter()
    with pytest.raises(ExportError) as info:
        predict_npz(exported, path, tmp_path / "o.npz")
    _one_clear_line(info.value, "would inflate from", "decompression bomb")
    assert time.perf_counter() - start < 10


def test_a_member_that_lies_about_its_size_is_caught(exported, tmp_path):
    path = _forged(tmp_path / "lie.npz", (2, 4), np.zeros(8, "<f4").tobytes())
    data = bytearray(path.read_bytes())
    # corrupt the stored data: the CRC no longer matches
    data[data.index(b"\x00" * 32) + 4] = 0x41
    path.write_bytes(bytes(data))
    with pytest.raises(ExportError) as info:
        predict_npz(exported, path, tmp_path / "o.npz")
    _one_clear_line(info.value, "corrupt")


# ------------------------------------------------------------------------------ generated
_DTYPES = st.sampled_from(["<f4", ">f8", "<f2", "|i1", "<i8", "|u1", "|b1", "<U2", "|S3", "<c8",
                           "<M8[D]", "<m8[s]", "|V4", "<i4"])


@FAST
@given(dtype=_DTYPES, shape=st.lists(st.integers(0, 5), min_size=0, max_size=3))
def test_generated_inputs_predict_or_fail_cleanly(exported, tmp_path, dtype, shape):
    _count("generated input arrays")
    X = np.zeros(tuple(shape), dtype=np.dtype(dtype))
    path = _npz(tmp_path / "g.npz", X=X)
    try:
        out = predict_npz(exported, path, tmp_path / "g_out.npz")
    except ExportError as exc:
        _one_clear_line(exc)
        return
    assert tuple(shape[1:]) == (4,) and np.dtype(dtype).kind in "biuf"
    with np.load(out) as data:
        assert data["a"].shape == (shape[0],)


@st.composite
def forged_archive(draw) -> bytes:
    """A real .npz, then one of: a forged header shape, a cut, flipped bytes, junk members."""
    buffer = io.BytesIO()
    np.savez(buffer, X=np.zeros((3, 4), np.float32))
    data = bytearray(buffer.getvalue())
    how = draw(st.sampled_from(["shape", "cut", "flip", "junk", "twice"]))
    if how == "shape":
        shape = draw(st.tuples(st.integers(0, 2**40), st.integers(0, 2**20)))
        return bytes(_forged_bytes(shape, bytes(48)))
    if how == "cut":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        return bytes(data)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("X.npy", _npy(np.zeros((3, 4), np.float32)))
        if how == "junk":
            zf.writestr(draw(st.sampled_from(["a.txt", "dir/", "b.npy"])), draw(st.binary(
                max_size=40)))
        else:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
                zf.writestr("X.npy", _npy(np.ones((3, 4), np.float32)))
    return out.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, arr)
    return buffer.getvalue()


def _forged_bytes(shape: tuple[int, ...], payload: bytes) -> bytes:
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("X.npy", header.getvalue() + payload)
    return out.getvalue()


@FAST
@given(forged_archive())
def test_forged_and_corrupted_archives_fail_cleanly_and_quickly(exported, tmp_path, blob):
    _count("forged or corrupted .npz")
    path = tmp_path / "f.npz"
    path.write_bytes(blob)
    start = time.perf_counter()
    try:
        predict_npz(exported, path, tmp_path / "f_out.npz")
    except ExportError as exc:
        _one_clear_line(exc)
    assert time.perf_counter() - start < 10
