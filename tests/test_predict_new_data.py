"""Preprocessing recorded in the export, and predict on new images, tables and .npz files."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
from mtlsearch.cli import main
from mtlsearch.data.preprocess import Augmentation, Preprocessing
from mtlsearch.errors import ExportError
from mtlsearch.export import export_model, load
from mtlsearch.export.predict_files import predict_files

pd = pytest.importorskip("pandas")
torch.set_num_threads(1)

PREP = Preprocessing(image_size=(8, 8), channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4),
                     augment=Augmentation(flip=True, crop=2))
SPECS = [TaskSpec("smiling"), TaskSpec("hair", kind="multiclass", num_classes=3,
                                       options={"classes": ["black", "blond", "brown"]}),
         TaskSpec("age", kind="regression"), TaskSpec("pose", kind="regression", out_dim=2)]


def _model(space, specs=SPECS):
    torch.manual_seed(0)
    graph = SharingGraph.hard_sharing([s.name for s in specs], space.num_blocks)
    return materialize(graph, space, specs)


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    space = create_space("small_cnn", input_shape=(3, 8, 8), channels=(4, 4), pool_after=(0,))
    model = _model(space)
    return export_model(model, tmp_path_factory.mktemp("m") / "model", picture=False,
                        preprocessing=PREP)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Five RGB images of another size than the model's, as PNG (lossless) and their pixels."""
    root = tmp_path_factory.mktemp("new")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 12, 10, 3), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(root / f"img_{4 - i}.png")  # names sort in reverse order
    return root, pixels[::-1].copy()  # pixels in file-name order


def _expected(folder, x):
    """By hand: the model on the prepared inputs, then sigmoid / softmax per task."""
    model = load(folder)
    with torch.no_grad():
        out = model(x)
    return {"smiling": torch.sigmoid(out["smiling"][:, 0]).numpy(),
            "hair": torch.softmax(out["hair"], 1).numpy(), "age": out["age"][:, 0].numpy(),
            "pose": out["pose"].numpy()}


def test_the_export_records_the_preprocessing_and_load_gives_it_back(image_export):
    record = json.loads((image_export / "architecture.json").read_text())
    assert record["schema_version"] == 2
    assert record["preprocessing"] == PREP.to_dict()
    model = load(image_export)
    assert model.preprocessing == PREP and model.input_normalization is None


def test_an_export_without_preprocessing_is_version_1_and_loads_as_before(tmp_path):
    space = create_space("mlp", input_shape=(4,), widths=(8,))
    folder = export_model(_model(space, [TaskSpec("a")]), tmp_path / "m", picture=False)
    record = json.loads((folder / "architecture.json").read_text())
    assert record["schema_version"] == 1 and "preprocessing" not in record
    assert load(folder).preprocessing is None
    # a loaded model keeps its preprocessing when exported again
    model = load(folder)
    model.preprocessing = Preprocessing(input_columns=("x", "y", "z", "w"))
    again = export_model(model, tmp_path / "again", picture=False)
    assert load(again).preprocessing.input_columns == ("x", "y", "z", "w")


def test_the_space_input_normalization_is_recorded(tmp_path):
    space = create_space("small_cnn", input_shape=(3, 8, 8), channels=(4,), pool_after=())
    space.input_normalization = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    folder = export_model(_model(space, [TaskSpec("a")]), tmp_path / "m", picture=False)
    record = json.loads((folder / "architecture.json").read_text())
    assert record["schema_version"] == 2
    assert load(folder).input_normalization == {"mean": [0.485, 0.456, 0.406],
                                                "std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["preprocessing"].update(size=3), r"invalid preprocessing: .*unknown keys"),
    (lambda r: r["preprocessing"].update(channels=7), "invalid preprocessing: channels"),
    (lambda r: r.update(schema_version=1), "'preprocessing' needs schema_version 2"),
    (lambda r: r.update(input_normalization={"mean": [1]}), "input_normalization must be"),
])
def test_an_edited_preprocessing_record_is_refused(image_export, tmp_path, edit, message):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(image_export, folder)
    record = json.loads((folder / "architecture.json").read_text())
    edit(record)
    (folder / "architecture.json").write_text(json.dumps(record))
    with pytest.raises(ExportError, match=message):
        load(folder)


def test_predict_a_folder_of_images_writes_a_table_with_probabilities(image_export, images,
                                                                      tmp_path):
    root, pixels = images
    result = predict_files(image_export, root, tmp_path / "p.csv")
    table = pd.read_csv(tmp_path / "p.csv")
    assert result.rows == 5 and result.skipped == []
    assert list(table.columns) == [
        "file", "smiling", "smiling_prob", "hair", "hair_prob_black", "hair_prob_blond",
        "hair_prob_brown", "age", "pose_0", "pose_1"]
    assert table["file"].tolist() == [f"img_{i}.png" for i in range(5)]
    # the export's preprocessing, without augmentation, computed by hand from the pixels:
    # resized as uint8 (images are stored resized, as uint8), scaled, normalised
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", antialias=True,
                                        align_corners=False).round().clamp(0, 255) / 255
    x = (x - torch.tensor(PREP.mean)[:, None, None]) / torch.tensor(PREP.std)[:, None, None]
    prepared = load(image_export).preprocessing.prepare_files(sorted(root.glob("*.png")))
    # torchvision's uint8 resize rounds in integers: at most one grey level apart
    torch.testing.assert_close(prepared, x, atol=1.01 / 255 / min(PREP.std), rtol=0)
    want = _expected(image_export, prepared)
    np.testing.assert_allclose(table["smiling_prob"], want["smiling"], rtol=1e-4, atol=1e-5)
    assert table["smiling"].tolist() == (want["smiling"] >= 0.5).astype(int).tolist()
    probs = table[["hair_prob_black", "hair_prob_blond", "hair_prob_brown"]].to_numpy()
    np.testing.assert_allclose(probs, want["hair"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    names = np.array(["black", "blond", "brown"])
    assert table["hair"].tolist() == names[want["hair"].argmax(1)].tolist()
    np.testing.assert_allclose(table["age"], want["age"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(table[["pose_0", "pose_1"]], want["pose"], rtol=1e-4, atol=1e-5)


def test_parquet_npz_and_a_table_of_file_names_give_the_same_predictions(image_export, images,
                                                                        tmp_path):
    pytest.importorskip("pyarrow")
    root, pixels = images
    csv = pd.read_csv(predict_files(image_export, root, tmp_path / "p.csv").path)
    parquet = pd.read_parquet(predict_files(image_export, root, tmp_path / "p.parquet").path)
    pd.testing.assert_frame_equal(csv, parquet, check_exact=False, rtol=1e-5, check_dtype=False)
    # the same pixels as a uint8 .npz (channel-last, another size): the same preprocessing
    np.savez(tmp_path / "x.npz", X=pixels)
    from_npz = pd.read_csv(predict_files(image_export, tmp_path / "x.npz", tmp_path / "n.csv").path)
    assert from_npz["row"].tolist() == list(range(5))
    np.testing.assert_allclose(from_npz["smiling_prob"], csv["smiling_prob"], rtol=1e-5)
    arrays = predict_files(image_export, tmp_path / "x.npz", tmp_path / "n.npz")
    with np.load(arrays.path) as data:
        np.testing.assert_allclose(data["smiling"], csv["smiling_prob"], rtol=1e-5)
        assert data["hair"].tolist() == [["black", "blond", "brown"].index(h) for h in csv["hair"]]
    # a table naming some of the files, found beside it
    (root / "wanted.csv").write_text("image,note\nimg_3.png,x\nimg_1.png,y\n")
    listed = pd.read_csv(predict_files(image_export, root / "wanted.csv", tmp_path / "w.csv").path)
    assert listed["file"].tolist() == ["img_3.png", "img_1.png"]
    np.testing.assert_allclose(listed["smiling_prob"], csv["smiling_prob"].iloc[[3, 1]],
                               rtol=1e-5)


def test_a_table_model_takes_its_recorded_columns(tmp_path):
    space = create_space("mlp", input_shape=(3,), widths=(8,))
    prep = Preprocessing(input_columns=("a", "b", "c"), mean=(1.0, 2.0, 3.0), std=(2.0, 2.0, 4.0))
    folder = export_model(_model(space, [TaskSpec("y"), TaskSpec("v", kind="regression")]),
                          tmp_path / "m", picture=False, preprocessing=prep)
    rows = np.array([[1.0, 0.0, 5.0], [3.0, 4.0, -1.0], [0.5, 2.0, 3.0]])
    frame = pd.DataFrame({"id": [7, 8, 9], "c": rows[:, 2], "a": rows[:, 0], "b": rows[:, 1]})
    frame.to_csv(tmp_path / "new.csv", index=False)
    table = pd.read_csv(predict_files(folder, tmp_path / "new.csv", tmp_path / "p.csv").path)
    x = torch.tensor((rows - [1.0, 2.0, 3.0]) / [2.0, 2.0, 4.0], dtype=torch.float32)
    with torch.no_grad():
        out = load(folder)(x)
    np.testing.assert_allclose(table["y_prob"], torch.sigmoid(out["y"][:, 0]), rtol=1e-5)
    np.testing.assert_allclose(table["v"], out["v"][:, 0], rtol=1e-5, atol=1e-6)
    assert table["row"].tolist() == [0, 1, 2]
    with pytest.raises(ExportError, match=r"no column\(s\) \['b'\].*its columns are: id, c, a"):
        frame.drop(columns="b").to_csv(tmp_path / "less.csv", index=False)
        predict_files(folder, tmp_path / "less.csv", tmp_path / "p.csv")


def test_table_columns_by_hand_with_class_names():
    from mtlsearch.export.prediction_table import prediction_columns

    specs = [TaskSpec("smoker", options={"classes": ["no", "yes"]}),
             TaskSpec("blood", kind="multiclass", num_classes=3, options={"classes": [-1, 0, 5]}),
             TaskSpec("rank", kind="ranking")]
    raw = {"smoker": torch.tensor([[0.0], [-2.0]]),
           "blood": torch.tensor([[0.0, np.log(2.0), 0.0], [np.log(3.0), 0.0, 0.0]]),
           "rank": torch.tensor([[1.5], [-0.5]])}
    cols = prediction_columns(specs, raw)
    assert list(cols) == ["smoker", "smoker_prob", "blood", "blood_prob_-1", "blood_prob_0",
                          "blood_prob_5", "rank"]
    assert cols["smoker"].tolist() == ["yes", "no"]  # probability 0.5 counts as yes
    np.testing.assert_allclose(cols["smoker_prob"], [0.5, 1 / (1 + np.e**2)], rtol=1e-6)
    np.testing.assert_allclose(cols["blood_prob_0"], [0.5, 0.2], rtol=1e-6)
    assert cols["blood"].tolist() == [0, -1] and cols["rank"].tolist() == [1.5, -0.5]
    with pytest.raises(ExportError, match="predicts a map per input"):
        prediction_columns([TaskSpec("seg", kind="regression")], {"seg": torch.zeros(2, 1, 4, 4)})


def test_unreadable_images_fail_by_name_or_are_skipped_and_counted(image_export, images,
                                                                   tmp_path):
    import shutil

    root = tmp_path / "imgs"
    shutil.copytree(images[0], root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ExportError, match=r"broken\.jpg.*on_bad_image='skip'"):
        predict_files(image_export, root, tmp_path / "p.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict_files(image_export, root, tmp_path / "p.csv", on_bad_image="skip")
    assert result.rows == 5 and len(result.skipped) == 1 and "broken.jpg" in result.skipped[0]
    assert any("left out 1 unreadable" in str(w.message) for w in caught)
    assert "broken.jpg" not in pd.read_csv(result.path)["file"].tolist()


@pytest.mark.parametrize("make, output, message", [
    (lambda p: p / "missing", "p.csv", "no input .*missing; give a folder of images"),
    (lambda p: (p / "x.txt").write_text("1") and p / "x.txt", "p.csv", "not an .npz file"),
    (lambda p: np.save(p / "x.npy", np.zeros(3)) or p / "x.npy", "p.csv", "is a .npy file"),
    (lambda p: p, "p.json", r"give a file ending in \.csv, \.tsv, \.parquet or \.npz"),
    (lambda p: (p / "t.csv").write_text("a,b\n1,2\n") and p / "t.csv", "p.csv",
     r"no column of image file names .*columns are \['a', 'b'\]"),
])
def test_bad_inputs_and_outputs_are_one_clear_error(image_export, tmp_path, make, output,
                                                    message):
    with pytest.raises(ExportError, match=message):
        predict_files(image_export, make(tmp_path), tmp_path / output)


def test_the_cli_predicts_a_folder_and_keeps_the_npz_form(image_export, images, tmp_path,
                                                          capsys):
    root, pixels = images
    out = tmp_path / "preds.csv"
    assert main(["predict", str(image_export), "--input", str(root), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "5 rows" in text and "smiling_prob" in text
    assert len(pd.read_csv(out)) == 5
    np.savez(tmp_path / "x.npz", X=pixels)
    assert main(["predict", str(image_export), "--input", str(tmp_path / "x.npz"), "--output",
                 str(tmp_path / "o.npz")]) == 0
    assert "smiling (5,)" in capsys.readouterr().out
    assert main(["predict", str(image_export), "--input", str(tmp_path / "nope"), "--output",
                 str(out)]) == 2
    assert "no input" in capsys.readouterr().err
