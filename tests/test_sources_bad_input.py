"""Bad input to the data sources: each a clear DatasetError naming file, column or task.

Missing files, unreadable images (fail, or skip with a count), a label table whose names do not
match the folder, columns that do not exist, a task column with one class, mixed types:
nothing is dropped silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mtlsearch.data.sources import load_folder, load_npz, load_table
from mtlsearch.errors import DatasetError

N = 30


def _images(root, n=N, sizes=None):
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = sizes[i % len(sizes)] if sizes else (8, 8)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")


def _labels(root, n=N, name="labels.csv", extra=""):
    rows = ["file,smiling,hair"] + [f"{i}.png,{i % 2},{i % 3}" for i in range(n)]
    (root / name).write_text("\n".join(rows) + extra)


def test_missing_folder_and_label_table(tmp_path):
    with pytest.raises(DatasetError, match="no such image folder: .*nowhere"):
        load_folder(tmp_path / "nowhere")
    _images(tmp_path)
    (tmp_path / "attributes.csv").write_text("file,a\n")
    with pytest.raises(DatasetError, match=r"no label table 'labels.csv'.*\['attributes.csv'\]"
                       r".*labels=FILE"):
        load_folder(tmp_path)


def test_table_names_that_do_not_match_the_folder(tmp_path):
    _images(tmp_path, n=N - 3)
    _labels(tmp_path)  # rows for 27.png .. 29.png have no file
    with pytest.raises(DatasetError, match=r"3 of 30 files named in the label table are not in "
                       r".*\['27.png', '28.png', '29.png'\].*never dropped silently"):
        load_folder(tmp_path)


def test_images_in_a_subfolder_are_pointed_to(tmp_path):
    (tmp_path / "img_align").mkdir()
    _images(tmp_path / "img_align")
    _labels(tmp_path)
    with pytest.raises(DatasetError, match="in the subfolder 'img_align'"):
        load_folder(tmp_path)


def test_unreadable_image_fails_naming_it_or_is_skipped_and_counted(tmp_path):
    _images(tmp_path)
    _labels(tmp_path)
    (tmp_path / "5.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(DatasetError, match=r"1 image\(s\) cannot be read: .*5\.png.*"
                       "on_bad_image=skip"):
        load_folder(tmp_path)
    splits = load_folder(tmp_path, on_bad_image="skip")
    assert splits.info["skipped_images"]["count"] == 1
    assert splits.info["skipped_images"]["files"][0].endswith("5.png")
    assert len(splits.train) + len(splits.val) + len(splits.test) == N - 1
    with pytest.raises(DatasetError, match="on_bad_image='ignore' must be 'fail' or 'skip'"):
        load_folder(tmp_path, on_bad_image="ignore")


def test_a_truncated_image_is_caught_when_decoding_into_memory(tmp_path):
    _images(tmp_path)
    _labels(tmp_path)
    data = (tmp_path / "7.png").read_bytes()
    (tmp_path / "7.png").write_bytes(data[: len(data) // 2])  # the header still reads
    with pytest.raises(DatasetError, match=r"7\.png"):
        load_folder(tmp_path, streaming=False)
    assert load_folder(tmp_path, on_bad_image="skip").info["skipped_images"]["count"] == 1


def test_columns_that_do_not_exist_list_the_ones_that_do(tmp_path):
    _images(tmp_path)
    _labels(tmp_path)
    with pytest.raises(DatasetError, match=r"tasks names columns that do not exist: \['smile'\]; "
                       "the columns are 'file', 'smiling', 'hair'"):
        load_folder(tmp_path, tasks=["smile"])
    with pytest.raises(DatasetError, match=r"file_column .*\['name'\].*'file', 'smiling'"):
        load_folder(tmp_path, file_column="name")
    pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DatasetError, match=r"targets names columns that do not exist: \['z'\]; "
                       "the columns are 'x', 'y'"):
        load_table(tmp_path / "t.csv", targets="z")
    with pytest.raises(DatasetError, match=r"inputs names columns .*\['w'\]"):
        load_table(tmp_path / "t.csv", targets="y", inputs="w")


def test_a_file_column_that_cannot_be_found(tmp_path):
    _images(tmp_path)
    (tmp_path / "labels.csv").write_text("a,b\n" + "\n".join(f"{i},{i % 2}" for i in range(N)))
    with pytest.raises(DatasetError, match="cannot tell which column holds the file names.*"
                       "file_column=NAME"):
        load_folder(tmp_path)


def test_a_task_column_with_one_class(tmp_path):
    _images(tmp_path)
    rows = ["file,bald,hair"] + [f"{i}.png,0,{i % 3}" for i in range(N)]
    (tmp_path / "labels.csv").write_text("\n".join(rows))
    with pytest.raises(DatasetError, match=r"labels.csv: column 'bald' has one class .* all 30 "
                       "labelled rows.*drop it"):
        load_folder(tmp_path)


def test_mixed_types_in_a_column(tmp_path):
    _images(tmp_path)
    rows = ["file,smiling,hair"] + [f"{i}.png,{i % 2},{'blond' if i == 4 else i % 3}"
                                    for i in range(N)]
    (tmp_path / "labels.csv").write_text("\n".join(rows))
    with pytest.raises(DatasetError, match=r"labels.csv: column 'hair' mixes numbers and text "
                       r"\(number '0', text 'blond'; 1 of 30 values are text\).*same type"):
        load_folder(tmp_path)
    df = pd.DataFrame({"x": np.arange(N, dtype=float), "y": [0, "a", 1.5] * (N // 3)})
    from mtlsearch.data.sources import from_dataframe

    with pytest.raises(DatasetError, match=r"column 'y' mixes types \(int 0, str 'a', float"):
        from_dataframe(df, targets="y")


def test_images_of_different_sizes_ask_for_image_size(tmp_path):
    _images(tmp_path, sizes=[(8, 8), (8, 8), (10, 6)])
    _labels(tmp_path)
    with pytest.raises(DatasetError, match=r"differ in size \(2 sizes: 8x8 \(20 images\), 10x6 "
                       r"\(10 images\)\); pass image_size=64"):
        load_folder(tmp_path)
    assert load_folder(tmp_path, image_size=[6, 6]).input_shape == (3, 6, 6)


def test_duplicate_and_empty_file_names(tmp_path):
    _images(tmp_path)
    _labels(tmp_path, extra="\n3.png,1,1")
    with pytest.raises(DatasetError, match=r"1 file names appear more than once .*\['3.png'\]"):
        load_folder(tmp_path)
    _labels(tmp_path, extra="\n,1,1")
    with pytest.raises(DatasetError, match=r"1 rows have no file name in column 'file' \(rows "
                       r"\[30\]\)"):
        load_folder(tmp_path)


def test_table_inputs_that_are_not_numbers_or_missing(tmp_path):
    df = pd.DataFrame({"age": np.arange(N, dtype=float), "city": ["Oslo", "Rome"] * (N // 2),
                       "y": np.arange(N) % 2})
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DatasetError, match=r"input columns \['city'\] are not numbers .*Oslo.*"
                       "get_dummies"):
        load_table(tmp_path / "t.csv", targets="y")
    df.loc[2, "age"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DatasetError, match=r"missing or infinite values \(\{'age': 1\} rows\)"):
        load_table(tmp_path / "t.csv", targets="y", inputs="age")
    with pytest.raises(DatasetError, match="no such table file: .*nothere.csv"):
        load_table(tmp_path / "nothere.csv", targets="y")
    with pytest.raises(DatasetError, match=r"unknown table format '.xlsx'"):
        (tmp_path / "t.xlsx").write_text("")
        load_table(tmp_path / "t.xlsx", targets="y")


def test_npz_problems_are_named(tmp_path):
    with pytest.raises(DatasetError, match="no such .npz file: .*gone.npz"):
        load_npz(tmp_path / "gone.npz")
    np.savez(tmp_path / "d.npz", X=np.zeros((N, 2)), y=np.arange(N) % 2, short=np.zeros(5))
    with pytest.raises(DatasetError, match="array 'short' has 5 rows but the input 'X' has 30.*"
                       "exclude it"):
        load_npz(tmp_path / "d.npz")
    with pytest.raises(DatasetError, match="kinds: task 'y' has the unknown kind 'binar'; "
                       "known kinds: .*binary"):
        load_npz(tmp_path / "d.npz", exclude="short", kinds={"y": "binar"})
    with pytest.raises(DatasetError, match=r"kinds names \['z'\], which are not tasks"):
        load_npz(tmp_path / "d.npz", exclude="short", kinds={"z": "binary"})
    with pytest.raises(DatasetError, match="'X' is the input; it cannot be a task"):
        load_npz(tmp_path / "d.npz", tasks="X,y")
