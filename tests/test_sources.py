"""Your own data as datasets: npz, CSV/Parquet/DataFrame, image folder, torch Dataset.

Every source is checked against labels computed by hand from the tiny files the tests write
in the real formats (npz, CSV, Parquet, PNG/JPEG), and once through the command line.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mtlsearch.data.sources import (
    from_dataframe,
    from_torch_dataset,
    infer_task,
    load_folder,
    load_npz,
    load_table,
)
from mtlsearch.data.sources.infer import MAX_CLASSES
from mtlsearch.errors import DatasetError

torch.set_num_threads(1)
N = 60


def _values(split, task):
    return split.targets[task].numpy()


# ------------------------------------------------------------------------------ inference
@pytest.mark.parametrize(
    ("values", "kind", "encoded", "classes"),
    [
        ([0, 1, 1, 0], "binary", [0, 1, 1, 0], None),
        ([-1, 1, 1, -1], "binary", [0, 1, 1, 0], [-1, 1]),  # CelebA's attributes
        ([0, 1, -1, 1], "binary", [0, 1, np.nan, 1], None),  # -1 next to 0/1: missing
        ([True, False, True, True], "binary", [1, 0, 1, 1], None),
        (["yes", "no", None, "yes"], "binary", [1, 0, np.nan, 1], ["no", "yes"]),
        ([0, 1, 2, 3, 2], "multiclass", [0, 1, 2, 3, 2], None),
        ([3, 7, 10, 7, 3], "multiclass", [0, 1, 2, 1, 0], [3, 7, 10]),
        ([0.0, 2.0, np.nan, 1.0], "multiclass", [0, 2, np.nan, 1], None),  # pandas' int+NaN
        (["cat", "dog", "owl", "cat"], "multiclass", [0, 1, 2, 0], ["cat", "dog", "owl"]),
        ([0.5, 1.25, np.nan, 3.0], "regression", [0.5, 1.25, np.nan, 3.0], None),
    ],
)
def test_kinds_are_inferred_and_labels_encoded(values, kind, encoded, classes):
    task = infer_task("t", np.array(values, dtype=object if None in values else None))
    assert task.kind == kind and task.inferred
    np.testing.assert_array_equal(task.labels, np.array(encoded, dtype=float))
    assert task.classes == classes


def test_many_whole_numbers_are_regression_and_kinds_override():
    many = np.arange(MAX_CLASSES + 1)
    assert infer_task("count", many).kind == "regression"
    forced = infer_task("count", many, kind="multiclass")
    assert forced.kind == "multiclass" and forced.num_classes == MAX_CLASSES + 1
    assert not forced.inferred
    assert infer_task("score", np.array([0, 1, 0]), kind="regression").kind == "regression"


# ------------------------------------------------------------------------------ npz
def _npz(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 5)).astype(np.float32)
    arrays = {"smile": (X[:, 0] > 0).astype(np.int64), "digit": np.arange(N) % 4,
              "age": X[:, 1] * 10 + 40, "ids": np.arange(N) + 1000}
    np.savez(tmp_path / "faces.npz", X=X, **arrays)
    return tmp_path / "faces.npz", X, arrays


def test_npz_extra_int_array_is_no_longer_forced_binary(tmp_path):
    path, X, arrays = _npz(tmp_path)
    splits = load_npz(path, exclude="ids")
    kinds = {t.name: t.kind for t in splits.tasks}
    assert kinds == {"smile": "binary", "digit": "multiclass", "age": "regression"}
    assert splits.tasks[1].num_classes == 4
    # labels follow their inputs through the split
    for split in (splits.train, splits.val, splits.test):
        x = split.inputs.numpy()
        row = [int(np.flatnonzero((X == r).all(axis=1))[0]) for r in x]
        np.testing.assert_array_equal(_values(split, "digit"), arrays["digit"][row])
        np.testing.assert_allclose(_values(split, "age")[:, 0], arrays["age"][row], rtol=1e-6)


def test_npz_tasks_pick_arrays_in_order_and_kinds_override(tmp_path):
    from mtlsearch import from_npz

    path, _, _ = _npz(tmp_path)
    splits = from_npz(path, tasks=["digit", "smile"], kinds={"digit": "regression"})
    assert splits.task_names == ["digit", "smile"]
    assert [t.kind for t in splits.tasks] == ["regression", "binary"]
    assert load_npz(path, tasks="smile,age").task_names == ["smile", "age"]


def test_npz_unknown_task_array_lists_the_arrays(tmp_path):
    path, _, _ = _npz(tmp_path)
    with pytest.raises(DatasetError, match=r"no arrays \['smiles'\].*'age', 'digit', 'ids'"):
        load_npz(path, tasks=["smiles"])


def test_same_seed_same_split_other_seed_differs(tmp_path):
    path, _, _ = _npz(tmp_path)
    a, b, c = (load_npz(path, exclude="ids", seed=s) for s in (0, 0, 1))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


# ------------------------------------------------------------------------------ options
def test_pos_weight_balanced_is_negatives_over_positives_of_the_training_split(tmp_path):
    path, _, _ = _npz(tmp_path)
    splits = load_npz(path, tasks="smile,age", pos_weight="balanced", metric="f1")
    y = splits.train.targets["smile"].numpy()
    expected = float((y == 0).sum() / (y == 1).sum())
    assert splits.tasks[0].options == {"metric": "f1", "pos_weight": pytest.approx(expected)}
    assert splits.tasks[1].options == {}  # regression: no binary options
    per_task = load_npz(path, tasks="smile,age", metric={"smile": "auroc"}, pos_weight=2)
    assert per_task.tasks[0].options == {"metric": "auroc", "pos_weight": 2.0}
    with pytest.raises(DatasetError, match="metric 'recall'.*accuracy, balanced_accuracy, f1"):
        load_npz(path, tasks="smile", metric="recall")
    with pytest.raises(DatasetError, match=r"names \['age'\], which are not binary"):
        load_npz(path, tasks="smile,age", metric={"age": "f1"})


# ------------------------------------------------------------------------------ tables
def _frame():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({
        "height": rng.normal(170, 10, N), "weight": rng.normal(70, 5, N),
        "smoker": ["yes", "no", "no"] * (N // 3),
        "blood": ["A", "B", "O", "AB"] * (N // 4),
        "score": rng.normal(size=N),
    })
    df.loc[3, "smoker"] = None  # an empty cell: a missing label
    return df


def test_csv_targets_are_tasks_the_rest_inputs_and_empty_cells_missing(tmp_path):
    df = _frame()
    df.to_csv(tmp_path / "people.csv", index=False)
    splits = load_table(tmp_path / "people.csv", targets="smoker,blood,score")
    assert splits.name == f"csv:{(tmp_path / 'people.csv').resolve()}"
    assert splits.input_shape == (2,)
    assert [t.kind for t in splits.tasks] == ["binary", "multiclass", "regression"]
    assert splits.info["label_maps"] == {"smoker": ["no", "yes"], "blood": ["A", "AB", "B", "O"]}
    assert splits.info["input_columns"] == ["height", "weight"]
    smoker = np.concatenate([_values(s, "smoker") for s in (splits.train, splits.val,
                                                              splits.test)])
    assert int(np.isnan(smoker).sum()) == 1  # kept as missing, not dropped
    assert int(np.nansum(smoker)) == int((df["smoker"] == "yes").sum())


def test_parquet_and_dataframe_give_the_csv_data(tmp_path):
    df = _frame()
    df.to_csv(tmp_path / "p.csv", index=False)
    df.to_parquet(tmp_path / "p.parquet")
    a = load_table(tmp_path / "p.csv", targets=["blood"], inputs=["height"])
    b = load_table(tmp_path / "p.parquet", targets=["blood"], inputs=["height"])
    c = from_dataframe(df, targets="blood", inputs="height")
    assert a.fingerprint() == b.fingerprint() == c.fingerprint()


# ------------------------------------------------------------------------------ folders
def _folder(tmp_path, n=N, size=(12, 10), suffix="png", grey=False, name="labels.csv"):
    rng = np.random.default_rng(2)
    rows = ["image_id,Smiling,Hair,Age"]
    pixels = {}
    for i in range(n):
        shape = (*size,) if grey else (*size, 3)
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i:04d}.{suffix}")
        pixels[f"{i:04d}.{suffix}"] = arr
        rows.append(f"{i:04d}.{suffix},{[-1, 1][i % 2]},{['black', 'blond', 'brown'][i % 3]},"
                    f"{20 + i}")
    (tmp_path / name).write_text("\n".join(rows) + "\n")
    return pixels


def test_folder_celeba_layout_in_memory(tmp_path):
    pixels = _folder(tmp_path)
    splits = load_folder(tmp_path)
    assert splits.input_shape == (3, 12, 10)
    assert [t.kind for t in splits.tasks] == ["binary", "multiclass", "regression"]
    assert splits.info["label_maps"]["Smiling"] == [-1, 1]
    assert splits.preprocessing.image_size == (12, 10) and splits.preprocessing.channels == 3
    # the PNG's pixels, scaled to [0, 1], with the row's labels: find row 7 by its pixels
    want = torch.from_numpy(pixels["0007.png"]).permute(2, 0, 1).float() / 255
    for split in (splits.train, splits.val, splits.test):
        x = split.inputs
        hit = [i for i in range(len(split)) if torch.allclose(x[i], want, atol=1e-6)]
        if hit:
            assert float(split.targets["Smiling"][hit[0]]) == 1.0  # 7 is odd: +1 -> 1
            assert int(split.targets["Hair"][hit[0]]) == 7 % 3
            assert float(split.targets["Age"][hit[0], 0]) == 27.0
            break
    else:
        raise AssertionError("image 0007.png is in no split")


def test_folder_resizes_detects_grey_and_picks_tasks(tmp_path):
    _folder(tmp_path, suffix="jpg", grey=True)
    splits = load_folder(tmp_path, image_size=8, tasks=["Hair"], file_column="image_id")
    assert splits.input_shape == (1, 8, 8) and splits.task_names == ["Hair"]
    assert load_folder(tmp_path, image_size="6x4", channels=3).input_shape == (3, 6, 4)


def test_folder_records_its_preprocessing_and_options(tmp_path):
    _folder(tmp_path)
    splits = load_folder(tmp_path, augment={"flip": True, "crop": 2}, mean=[0.5] * 3,
                         std=[0.25] * 3)
    record = splits.preprocessing.to_dict()
    assert record["augment"] == {"flip": True, "crop": 2} and record["mean"] == [0.5] * 3
    assert splits.kwargs["image_size"] == [12, 10]
    x = splits.val.inputs[:]
    assert float(x.min()) >= -2.0 - 1e-6 and float(x.max()) <= 2.0 + 1e-6  # (0-.5)/.25 .. 2


# ------------------------------------------------------------------------------ torch
class _Faces(torch.utils.data.Dataset):
    def __init__(self, vector: bool):
        self.vector = vector

    def __len__(self):
        return N

    def __getitem__(self, i):
        x = torch.full((2, 3), float(i))
        if self.vector:
            return x, torch.tensor([i % 2, i % 3])
        return x, {"odd": i % 2, "mod3": torch.tensor(i % 3)}


@pytest.mark.parametrize("streaming", [False, True])
def test_torch_dataset_with_dict_or_vector_labels(streaming):
    a = from_torch_dataset(_Faces(False), streaming=streaming, num_workers=0)
    b = from_torch_dataset(_Faces(True), tasks=["odd", "mod3"], streaming=streaming,
                           num_workers=0)
    for splits in (a, b):
        assert [t.kind for t in splits.tasks] == ["binary", "multiclass"]
        x, y = next(splits.train.batches(8))
        i = x[:, 0, 0].long()
        torch.testing.assert_close(y["odd"], (i % 2).float())
        torch.testing.assert_close(y["mod3"], i % 3)
    with pytest.raises(DatasetError, match="pass tasks="):
        from_torch_dataset(_Faces(True))


# ------------------------------------------------------------------------------ CLI
def test_cli_search_on_a_folder_and_load_dataset_names(tmp_path, capsys):
    from mtlsearch.cli.main import main
    from mtlsearch.registry import load_dataset  # the sources are built-in datasets

    images = tmp_path / "imgs"
    images.mkdir()
    _folder(images, n=40, size=(8, 8), name="attrs.csv")
    _frame().to_csv(tmp_path / "t.csv", index=False)
    csv = load_dataset(f"csv:{tmp_path / 't.csv'}", targets="blood", inputs="height,weight")
    assert csv.task_names == ["blood"]
    # a study records name and kwargs: they load the same data again
    path, _, _ = _npz(tmp_path)
    folder = load_folder(images, labels="attrs.csv", augment={"flip": True}, seed=3)
    for data in (csv, load_npz(path, exclude="ids", metric="f1"), folder):
        again = load_dataset(data.name, **json.loads(json.dumps(data.kwargs)))
        assert again.fingerprint() == data.fingerprint() and again.tasks == data.tasks
    rc = main(["search", "--dataset", f"folder:{images}", "--dataset-arg", "labels=attrs.csv",
               "--dataset-arg", "tasks=Smiling,Hair", "--space", "small_cnn",
               "--strategy", "hard_sharing", "--trials", "1", "--epochs", "1",
               "--storage", "memory", "--out", str(tmp_path / "out"), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert "Pareto front (1 trial)" in capsys.readouterr().out


def test_a_table_records_its_input_columns_and_its_class_names():
    """What predict needs from a table-trained model: which columns are inputs, and the
    table's own class values to write predictions in."""
    import pandas as pd

    from mtlsearch.data.sources import from_dataframe

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.random(60), "b": rng.random(60),
                       "smiling": np.where(rng.random(60) > 0.5, "yes", "no")})
    splits = from_dataframe(df, targets=["smiling"])
    assert splits.preprocessing.input_columns == ("a", "b")
    (spec,) = splits.tasks
    assert spec.kind == "binary" and spec.options["classes"] == ["no", "yes"]
