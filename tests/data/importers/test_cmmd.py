"""CMMD import on a fixture of the TCIA layout: views from ViewCodeSequence (not file order),
labels from the clinical sheet (openpyxl), 8-bit SIGMOID images, rejects, resume, the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mammokit.cli import main
from mammokit.data.dicom import read_dicom_pixels
from mammokit.data.importers import run_import
from mammokit.data.manifest import read_labels, read_manifest
from tests.helpers.fixtures_cmmd import SPEC, make_cmmd


@pytest.fixture(scope="module")
def cmmd(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmmd")
    truth = make_cmmd(root / "CMMD-download")
    out = root / "out"
    return truth, out, run_import("cmmd", truth.root, out)


def test_views_come_from_the_header_not_the_file_order(cmmd):
    truth, out, _ = cmmd
    rows = read_manifest(out / "manifest.csv")
    assert {(r.exam_id, r.view): r.path for r in rows} == {k: Path(v).resolve() for k, v in truth.images.items()}
    report = json.loads((out / "import_report.json").read_text())
    assert report["missing_views"]["by_exam"] == {"D1-0005": ["L-CC", "L-MLO"], "D1-0008": ["R-CC", "R-MLO"]}


def test_labels_from_the_clinical_sheet(cmmd):
    truth, out, _ = cmmd
    labels = read_labels(out / "labels.csv")
    assert set(labels) == set(truth.labels)
    for exam, want in truth.labels.items():
        assert {k: labels[exam][k] for k in want} == want, exam
        assert labels[exam]["birads"] is None
        assert labels[exam]["age"] == (SPEC[exam][0] if SPEC[exam][1] else "")  # the sheet lists breasts with findings
    assert labels["D1-0002"]["subtype_left"] == "Luminal A"
    assert {v["split"] for v in labels.values()} == {"train", "val", "test"}


def test_rejects_resume_and_sigmoid_pixels(cmmd):
    truth, out, _ = cmmd
    report = json.loads((out / "import_report.json").read_text())
    assert {i["path"]: i["reason"] for i in report["rejects"]["items"]} == truth.rejects
    again = run_import("cmmd", truth.root, out)
    assert again.report["headers"] == {"read": 0, "from_cache": len(truth.images), "workers": 1}
    # The 8-bit SIGMOID image decodes to 16 bits: y = 65535 / (1 + exp(-4 (x - 128) / 256)).
    import pydicom

    path = next(iter(truth.images.values()))
    stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
    expect = 65535 / (1 + np.exp(-4 * (stored - 128) / 256))
    assert np.abs(read_dicom_pixels(path).astype(np.float64) - expect).max() <= 1.0


def test_wrong_layout_exit_1(tmp_path, capsys):
    (tmp_path / "CMMD").mkdir()
    assert main(["import", "cmmd", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "expected CMMD_clinicaldata_revision.xlsx" in capsys.readouterr().err


def test_cmmd_through_preprocess_training_predict_evaluate(tmp_path):
    from tests.helpers.import_pipeline import run_pipeline

    truth = make_cmmd(tmp_path / "CMMD-download")
    # SIGMOID (WC 128, WW 256) maps stored 0 to 65535 / (1 + e^2) = 7812: the README's threshold.
    out = run_pipeline("cmmd", truth.root, tmp_path / "run", preprocess=("--background-threshold", "8000"),
                       has_outlines=False)
    test_exams = {r["exam_id"] for r in out["labels"] if r["split"] == "test"}
    assert {r["exam_id"] for r in out["predictions"]} == test_exams
    malignant = out["evaluation"]["models"][0]["populations"]["screening"]["malignant"]
    assert malignant["n_exams"] == len(test_exams)
