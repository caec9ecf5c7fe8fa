"""INbreast import on a fixture of the Release 1.0 layout: file-name views, BI-RADS labels,
XML polygons rasterised, rejects with reasons, resume, the wrong-layout error, the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mammokit.cli import main
from mammokit.data.images import read_png8
from mammokit.data.importers import run_import
from mammokit.data.manifest import read_labels, read_manifest
from tests.helpers.fixtures_inbreast import make_inbreast


@pytest.fixture(scope="module")
def inbreast(tmp_path_factory):
    root = tmp_path_factory.mktemp("inbreast")
    truth = make_inbreast(root / "INbreast")
    out = root / "out"
    return truth, out, run_import("inbreast", truth.root, out)


def test_manifest_views_and_patients(inbreast):
    truth, out, _ = inbreast
    rows = read_manifest(out / "manifest.csv")
    assert {(r.exam_id, r.view): r.path for r in rows} == {k: Path(v).resolve() for k, v in truth.images.items()}
    assert all(r.patient_id == truth.patients[r.exam_id] for r in rows)
    # The patient imaged twice: two exams, one patient, the same split (patient-disjoint).
    labels = read_labels(out / "labels.csv")
    first, second = "6c613a14b80a8591_201001", "6c613a14b80a8591_201112"
    assert labels[first]["split"] == labels[second]["split"]


def test_labels_birads_rule(inbreast):
    truth, out, _ = inbreast
    labels = read_labels(out / "labels.csv")
    assert set(labels) == set(truth.labels)
    for exam, want in truth.labels.items():
        assert {k: labels[exam][k] for k in want} == want, exam
    assert {v["split"] for v in labels.values()} == {"train", "val", "test"}


def test_polygons_rasterised_into_class_masks(inbreast):
    truth, out, _ = inbreast
    written = sorted(p.name for p in (out / "masks").glob("*.png"))
    assert written == sorted(f"{e}_{v.replace('-', '_')}_{c}.png" for e, v, c in truth.masks)
    for (exam, view, cls), want in truth.masks.items():
        got = read_png8(out / "masks" / f"{exam}_{view.replace('-', '_')}_{cls}.png") > 0
        assert np.array_equal(got, want), (exam, view, cls)


def test_rejects_and_resume(inbreast, tmp_path):
    truth, out, _ = inbreast
    report = json.loads((out / "import_report.json").read_text())
    assert {i["path"]: i["reason"] for i in report["rejects"]["items"]} == truth.rejects
    again = run_import("inbreast", truth.root, out)
    assert again.report["headers"]["read"] == 0 and again.report["headers"]["from_cache"] == len(truth.images)


def test_wrong_layout_exit_1(tmp_path, capsys):
    (tmp_path / "AllDICOMs").mkdir()
    assert main(["import", "inbreast", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "does not look like a inbreast download: expected AllDICOMs/, AllXML/ and INbreast.csv" in err


def test_inbreast_through_preprocess_training_predict_evaluate(tmp_path):
    from tests.helpers.import_pipeline import run_pipeline

    truth = make_inbreast(tmp_path / "INbreast")
    out = run_pipeline("inbreast", truth.root, tmp_path / "run")
    test_exams = {r["exam_id"] for r in out["labels"] if r["split"] == "test"}
    assert {r["exam_id"] for r in out["predictions"]} == test_exams
    malignant = out["evaluation"]["models"][0]["populations"]["screening"]["malignant"]
    assert malignant["n_exams"] == len(test_exams)
    assert malignant["n_positive"] == sum(truth.labels[e]["left_malignant"] + truth.labels[e]["right_malignant"]
                                          for e in test_exams)
