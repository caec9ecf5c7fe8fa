"""Representation extraction (forward_features / forward_hidden) and the optional UMAP step."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from mammokit.cli import main
from mammokit.config import scaled_preset
from mammokit.data.examlist import save_exams
from mammokit.errors import MissingDependencyError
from mammokit.evaluation.embed import embed, exam_colours, project_umap


@pytest.fixture
def no_umap(monkeypatch):
    # A None entry in sys.modules makes `import umap` raise ImportError: umap not installed.
    monkeypatch.setitem(sys.modules, "umap", None)


def test_missing_umap_message(no_umap, tmp_path, capsys):
    with pytest.raises(MissingDependencyError, match=r'pip install "mammokit\[umap\]"'):
        project_umap(np.zeros((5, 3)))
    # The command fails before any work, even with a work folder that does not exist.
    assert main(["embed", str(tmp_path / "nowork"), "--model", str(tmp_path / "m.safetensors")]) == 2
    assert 'pip install "mammokit[umap]"' in capsys.readouterr().err


@pytest.fixture
def tiny_work(tmp_path):
    import torch

    from mammokit.models import create_model
    from mammokit.models.checkpoint import save_checkpoint

    # A very small preset (windows ~100 x 75) keeps the ResNet-22 columns fast on the CPU; the
    # work folder's preset_config is what embed uses.
    preset = scaled_preset("mini", 0.04)
    wd = tmp_path / "work"
    (wd / "cropped").mkdir(parents=True)
    rng = np.random.default_rng(0)
    exams = []
    for eid in ("e1", "e2"):
        exam = {"exam_id": eid, "horizontal_flip": "NO", "best_center": {}}
        for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            name = f"{eid}_{view.replace('-', '_')}"
            exam[view] = [name]
            h, w = preset.input_size(view)
            cv2.imwrite(str(wd / "cropped" / f"{name}.png"), (rng.random((h + 20, w + 10)) * 60000).astype(np.uint16))
            exam["best_center"][view] = [[(h + 20) // 2, w // 2]]
        exams.append(exam)
    save_exams(wd / "exams.json", exams, image_dir="cropped", preset="mini", preset_config=preset.to_dict())
    torch.manual_seed(0)
    model = create_model("view_wise", in_channels=1)
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, model, arch="view_wise", model_args={"in_channels": 1}, preset="tiny")
    return wd, ckpt


def test_extract_and_save_features(tiny_work, tmp_path):
    wd, ckpt = tiny_work
    r = embed(wd, ckpt, out_dir=tmp_path / "emb", project=False)
    assert r.exam_ids == ["e1", "e2"]
    assert r.columns.shape == (2, 4 * 256) and r.hidden.shape == (2, 2 * 512)
    assert (r.hidden >= 0).all()  # first-FC activations follow a ReLU
    saved = np.load(tmp_path / "emb" / "embeddings.npz")
    assert saved["exam_ids"].tolist() == r.exam_ids
    np.testing.assert_array_equal(saved["columns"], r.columns)
    assert not np.allclose(r.columns[0], r.columns[1])  # different images, different vectors


def test_exam_colours(tmp_path):
    labels = tmp_path / "l.csv"
    labels.write_text(
        "exam_id,left_benign,right_benign,left_malignant,right_malignant\ne1,0,0,0,1\ne2,1,0,0,0\ne3,0,0,0,0\n"
    )
    colour, _, size, categorical = exam_colours(["e1", "e2", "e3", "e4"], labels=labels)
    assert colour.tolist() == ["malignant", "benign", "negative", "unlabelled"] and categorical and size is None
    readers = tmp_path / "r.csv"
    readers.write_text(
        "reader_id,exam_id,breast,probability\nA,e1,L,10\nA,e1,R,60\nB,e1,L,30\nB,e1,R,20\nA,e2,L,0\nB,e2,L,0\n"
    )
    colour, _, size, _ = exam_colours(["e1", "e2"], readers=readers)
    # e1: left mean (10 + 30) / 2 = 20%, right (60 + 20) / 2 = 40% -> max 0.4; e2: 0.
    np.testing.assert_allclose(colour, [0.4, 0.0])
    np.testing.assert_allclose(size, [0.4, 0.0])


def test_project_umap_reproducible():
    pytest.importorskip("umap")
    x = np.random.default_rng(0).normal(size=(30, 8))
    a, b = project_umap(x, seed=3), project_umap(x, seed=3)
    assert a.shape == (30, 2)
    np.testing.assert_array_equal(a, b)
