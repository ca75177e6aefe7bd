"""The worked example of docs/own_data.md, end to end on tiny fake data in the real formats.

A CelebA-style folder of JPEGs with an attribute CSV (``image_id`` and ``-1``/``1`` columns,
as Kaggle's ``list_attr_celeba.csv``), a ResNet-18 state dict saved as torchvision saves it
(``torch.save(model.state_dict(), "resnet18-f37072fd.pth")``, random weights here), then:
``mtlsearch search`` -> ``mtlsearch export`` -> ``mtlsearch predict`` on a folder of new images.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mtlsearch.cli import main

pd = pytest.importorskip("pandas")
torchvision = pytest.importorskip("torchvision")
torch.set_num_threads(1)

ATTRIBUTES = ["Smiling", "Eyeglasses"]  # two tasks: each needs a single-task reference


def _celeba_like(root, n, size, seed):
    """``n`` JPEGs ``000001.jpg ...`` whose colours carry the attributes, and their CSV."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        labels = (np.arange(len(ATTRIBUTES)) + i // (1 + np.arange(len(ATTRIBUTES)))) % 2
        pixels = rng.integers(0, 96, (size[0], size[1], 3))
        pixels[..., : len(ATTRIBUTES)] += labels * 150  # red = Smiling, green = Eyeglasses
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name, quality=90)
        rows.append({"image_id": name, **{a: int(2 * v - 1) for a, v in zip(ATTRIBUTES, labels)}})
    return pd.DataFrame(rows)


def test_folder_of_jpegs_to_search_export_and_predict(tmp_path, capsys):
    data = tmp_path / "celeba"
    table = _celeba_like(data, 32, (16, 16), seed=0)  # half of each attribute present
    table.to_csv(data / "list_attr_celeba.csv", index=False)
    torch.manual_seed(0)
    weights = tmp_path / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)

    out = tmp_path / "run"
    assert main([
        "search", "--dataset", f"folder:{data}",
        "--dataset-arg", "labels=list_attr_celeba.csv",
        "--dataset-arg", 'augment={"flip": true}',
        "--dataset-arg", "val_fraction=0.25", "--dataset-arg", "test_fraction=0.25",
        "--space", "resnet18", "--space-arg", f"weights={weights}",
        "--trials", "2", "--epochs", "1", "--batch-size", "12", "--out", str(out), "--quiet",
    ]) == 0
    assert "Pareto front" in capsys.readouterr().out

    model = tmp_path / "best-model"
    assert main(["export", "--storage", f"sqlite:///{out / 'study.db'}", "--best",
                 "--out", str(model)]) == 0
    record = json.loads((model / "architecture.json").read_text())
    prep = record["preprocessing"]  # recorded from the dataset, through the study
    assert prep["image_size"] == [16, 16] and prep["channels"] == 3
    assert prep["augment"]["flip"] is True and prep["mean"] is None  # the backbone normalises
    assert record["input_normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])

    weights.unlink()  # the export holds the trained weights: the pretrained file is not needed
    new = tmp_path / "new_images"  # another size: resized as the training images were
    _celeba_like(new, 5, (20, 24), seed=1)
    preds = tmp_path / "predictions.csv"
    capsys.readouterr()
    assert main(["predict", str(model), "--input", str(new), "--output", str(preds)]) == 0
    assert "5 rows" in capsys.readouterr().out
    got = pd.read_csv(preds)
    assert got.columns.tolist() == ["file"] + [c for a in ATTRIBUTES for c in (a, f"{a}_prob")]
    assert got["file"].tolist() == [f"{i:06d}.jpg" for i in range(1, 6)]
    from mtlsearch.export import load

    loaded = load(model)
    specs = {s.name: s for s in loaded.task_specs}
    for a in ATTRIBUTES:
        # labels in the table's own values when the task records them (-1/1), else 0/1
        labels = specs[a].options.get("classes") or [0, 1]
        assert got[f"{a}_prob"].between(0, 1).all()
        want = np.where(got[f"{a}_prob"] >= 0.5, labels[1], labels[0])
        assert got[a].astype(str).tolist() == [str(v) for v in want]

    # The same in Python: load() gives the preprocessing back; it prepares the files exactly
    # as predict did.
    x = loaded.preprocessing.prepare_files(sorted(new.glob("*.jpg")))
    assert x.shape == (5, 3, 16, 16)
    with torch.no_grad():
        out = loaded(x)
    for a in ATTRIBUTES:
        np.testing.assert_allclose(got[f"{a}_prob"], torch.sigmoid(out[a][:, 0]).numpy(),
                                   rtol=1e-4, atol=1e-6)
