"""Predicting with an exported dense model: per-task maps, the picture, the command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlsearch.cli import main
from mtlsearch.engine.train import TrainConfig
from mtlsearch.errors import ExportError
from mtlsearch.export import export_model, load, predict, predict_npz
from mtlsearch.registry import create_space, load_dataset
from mtlsearch.strategy.context import SearchContext
from mtlsearch.viz.dense import SEGMENT_PALETTE, dense_task_image, draw_dense_predictions

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny dense_shapes model (dilated_resnet18 width 4, one epoch), exported."""
    threads = torch.get_num_threads()  # module fixtures run before conftest's one-thread one
    torch.set_num_threads(1)
    try:
        data = load_dataset("dense_shapes", n_samples=30, size=16)
        space = create_space("dilated_resnet18", input_shape=(3, 16, 16), width=4)
        ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1, batch_size=16))
        model = ctx.train(ctx.new_graph("hard_sharing")).model
        folder = export_model(model, tmp_path_factory.mktemp("dense") / "model", picture=False)
    finally:
        torch.set_num_threads(threads)
    return data, model, folder


def _is_png(path):
    return path.read_bytes()[:8] == PNG_SIGNATURE


def _is_svg(path):
    import xml.etree.ElementTree as ET

    return ET.parse(path).getroot().tag.endswith("svg")


def test_predict_npz_writes_per_task_maps_and_the_picture(trained, tmp_path):
    data, model, folder = trained
    x = data.test.inputs.numpy()
    n = len(x)
    np.savez(tmp_path / "x.npz", X=x)
    out = predict_npz(folder, tmp_path / "x.npz", tmp_path / "maps.npz", picture=tmp_path / "pic")
    with np.load(out) as maps:
        assert sorted(maps.files) == sorted(data.task_names)
        assert maps["segment"].shape == (n, 16, 16) and maps["segment"].dtype == np.int64
        assert set(np.unique(maps["segment"])) <= {0, 1, 2, 3}
        assert maps["depth"].shape == (n, 1, 16, 16) and maps["depth"].dtype == np.float32
        assert maps["normals"].shape == (n, 3, 16, 16) and maps["normals"].dtype == np.float32
        assert np.allclose(np.linalg.norm(maps["normals"], axis=1), 1.0, atol=1e-4)
        assert maps["edges"].shape == (n, 1, 16, 16) and maps["edges"].dtype == np.float32
        direct = predict(load(folder), x)
        for task in data.task_names:
            assert np.array_equal(maps[task], direct[task])
    assert _is_png(tmp_path / "pic.png") and _is_svg(tmp_path / "pic.svg")


def test_predict_command_with_picture_and_ground_truth(trained, tmp_path, capsys):
    data, _, folder = trained
    test = data.test
    # Ground truth in the input file, under the task names, as a user would store it.
    np.savez(tmp_path / "x.npz", X=test.inputs.numpy(),
             segment=np.where(test.targets["segment"].numpy() < 0, 255, test.targets["segment"].numpy()),
             depth=np.nan_to_num(test.targets["depth"].numpy()))
    code = main(["predict", str(folder), "--input", str(tmp_path / "x.npz"), "--output",
                 str(tmp_path / "p.npz"), "--picture", str(tmp_path / "pic.png"),
                 "--picture-samples", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"segment ({len(test)}, 16, 16)" in printed and "pic.png and" in printed
    assert _is_png(tmp_path / "pic.png") and _is_svg(tmp_path / "pic.svg")
    # Two rows; columns: input, segment truth + prediction, depth truth + prediction, then
    # normals and edges predictions only (no truth in the file): 7 image axes per row.
    import xml.etree.ElementTree as ET

    images = [e for e in ET.parse(tmp_path / "pic.svg").iter() if e.tag.endswith("image")]
    assert len(images) == 2 * 7


def test_picture_of_a_model_without_dense_tasks_names_the_problem(tmp_path):
    data = load_dataset("synthetic", n_tasks=2, n_groups=1, n_samples=60)
    space = create_space("mlp", input_shape=data.input_shape)
    ctx = SearchContext(data=data, space=space, budget=TrainConfig(epochs=1))
    folder = export_model(ctx.train(ctx.new_graph()).model, tmp_path / "m", picture=False)
    np.savez(tmp_path / "x.npz", X=data.test.inputs.numpy())
    with pytest.raises(ExportError, match="not dense"):
        predict_npz(folder, tmp_path / "x.npz", tmp_path / "p.npz", picture=tmp_path / "pic")


def test_draw_dense_predictions_library_function(trained, tmp_path):
    data, model, _ = trained
    fig = draw_dense_predictions(model, data.test, [0, 2], tmp_path / "preds")
    assert _is_png(tmp_path / "preds.png") and _is_svg(tmp_path / "preds.svg")
    axes = fig.axes
    assert len(axes) == 2 * (1 + 2 * 4)  # rows x (input + truth and prediction of 4 tasks)
    assert [ax.get_title() for ax in axes[:3]] == ["input", "segment\ntruth", "segment\nprediction"]
    # The truth panel shows the dataset's labels in the fixed palette, ignored pixels white.
    seg = data.test.targets["segment"][2].numpy()
    shown = axes[9 + 1].get_images()[0].get_array()
    assert np.allclose(shown, dense_task_image("segmentation", seg))
    assert np.allclose(shown[seg == 0], SEGMENT_PALETTE[0]) and np.allclose(shown[seg < 0], 1.0)
    with pytest.raises(IndexError, match="outside"):
        draw_dense_predictions(model, data.test, [len(data.test)])


def test_dense_task_images_by_hand():
    depth = dense_task_image("depth", np.array([[[1.0, 3.0], [0.0, 2.0]]]), depth_range=(1.0, 3.0))
    from matplotlib import colormaps

    viridis = colormaps["viridis"]
    assert np.allclose(depth[0, 0], viridis(0.0)[:3]) and np.allclose(depth[0, 1], viridis(1.0)[:3])
    assert np.allclose(depth[1, 0], 1.0)  # missing depth is white
    normals = dense_task_image("normals", np.array([[[0.0, np.nan]], [[0.0, 0.0]], [[1.0, 0.0]]]))
    assert np.allclose(normals[0, 0], [0.5, 0.5, 1.0]) and np.allclose(normals[0, 1], 1.0)
    edges = dense_task_image("edges", np.array([[[1.0, 0.0, np.nan]], [[0.0, 0.5, np.nan]]]))
    assert np.allclose(edges[0, :, 0], [0.0, 0.45, 1.0])  # channels' max; 1 black, missing white
    with pytest.raises(ValueError, match="dense kinds"):
        dense_task_image("binary", np.zeros(2))


def test_command_line_search_export_predict_on_dense_tasks(tmp_path, capsys):
    """What a user types: search a dense dataset, export the best trial, predict maps."""
    out = tmp_path / "search"
    code = main(["search", "-q", "--dataset", "dense_shapes", "--dataset-arg", "n_samples=30",
                 "--dataset-arg", "size=16", "--space", "dilated_resnet18", "--space-arg",
                 "width=4", "--epochs", "1", "--batch-size", "16", "--trials", "1",
                 "--out", str(out)])
    assert code == 0
    storage = f"sqlite:///{out / 'study.db'}"
    assert main(["export", "-q", "--storage", storage, "--best", "--out",
                 str(tmp_path / "model")]) == 0
    model = load(tmp_path / "model")
    kinds = {t.name: t.kind for t in model.task_specs}
    assert kinds == {"segment": "segmentation", "depth": "depth", "normals": "normals",
                     "edges": "edges"}
    x = load_dataset("dense_shapes", n_samples=30, size=16).test.inputs.numpy()[:2]
    maps = predict(model, x)
    assert maps["segment"].shape == (2, 16, 16) and maps["normals"].shape == (2, 3, 16, 16)
    capsys.readouterr()
