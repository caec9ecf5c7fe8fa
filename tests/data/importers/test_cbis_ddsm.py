"""CBIS-DDSM import on a fixture laid out as NBIA writes it: manifest, labels, masks decided by
content, rejects with reasons, resume, the wrong-layout error."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mammokit.cli import main
from mammokit.data.images import read_png8
from mammokit.data.importers import ImportFormatError, run_import
from mammokit.data.manifest import read_labels, read_manifest
from tests.helpers.fixtures_cbis_ddsm import make_cbis_ddsm


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cbis(tmp_path_factory):
    root = tmp_path_factory.mktemp("cbis")
    truth = make_cbis_ddsm(root / "CBIS")
    out = root / "out"
    result = run_import("cbis-ddsm", truth.root, out, workers=1)
    return truth, out, result


def test_manifest_has_every_kept_view_with_its_file(cbis):
    truth, out, _ = cbis
    rows = read_manifest(out / "manifest.csv")  # the project's own manifest reader accepts it
    got = {(r.exam_id, r.view): r.path for r in rows}
    assert got == {k: Path(v).resolve() for k, v in truth.images.items()}
    assert all(r.patient_id == r.exam_id for r in rows)
    raw = _rows(out / "manifest.csv")
    assert {r["density"] for r in raw} <= {"2", "3"} and "subject" in raw[0]


def test_labels_follow_the_pathology_rule(cbis):
    truth, out, _ = cbis
    labels = read_labels(out / "labels.csv")
    assert set(labels) == set(truth.labels)
    for exam, want in truth.labels.items():
        got = labels[exam]
        for column in ("left_benign", "right_benign", "left_malignant", "right_malignant", "birads"):
            assert got[column] == want[column], (exam, column)
        assert got["assessment"] == str(want["assessment"])
        assert got["biopsied"] == 1
    assert labels["P_00001"]["left_malignant"] == 1 and labels["P_00001"]["right_benign"] == 1
    assert labels["P_00003"]["left_malignant"] == labels["P_00003"]["left_benign"] == 1  # both


def test_official_split_at_patient_level_with_val_carved_from_train(cbis):
    truth, out, _ = cbis
    labels = read_labels(out / "labels.csv")
    for exam, official in truth.splits.items():
        if exam in labels:
            got = labels[exam]["split"]
            assert got == "test" if official == "test" else got in ("train", "val"), exam
    assert labels["P_00008"]["split"] == "test"  # Mass-Training and Calc-Test
    assert {v["split"] for v in labels.values()} == {"train", "val", "test"}


def test_masks_by_content_unioned_and_size_checked(cbis):
    truth, out, _ = cbis
    written = sorted(p.name for p in (out / "masks").glob("*.png"))
    expected = sorted(f"{exam}_{view.replace('-', '_')}_{cls}.png" for exam, view, cls in truth.masks)
    assert written == expected
    for (exam, view, cls), want in truth.masks.items():
        got = read_png8(out / "masks" / f"{exam}_{view.replace('-', '_')}_{cls}.png")
        assert got.shape == want.shape
        assert np.array_equal(got > 0, want), (exam, view, cls)


def test_every_reject_has_its_reason(cbis):
    truth, out, result = cbis
    report = json.loads((out / "import_report.json").read_text())
    got = {item["path"]: item["reason"] for item in report["rejects"]["items"]}
    assert got == truth.rejects
    assert report["images"] == len(truth.images) and report["exams"] == len(truth.labels)
    lacking = report["missing_views"]["by_exam"]
    assert lacking["P_00002"] == ["L-CC", "L-MLO"] and "P_00001" not in lacking
    assert report["classes"]["mask_files"]["malignant"] == sum(1 for k in truth.masks if k[2] == "malignant")


def test_resume_reads_no_header_again_and_gives_the_same_outputs(cbis, tmp_path):
    truth, out, first = cbis
    again = tmp_path / "again"
    shutil.copytree(out, again)
    before = {p.name: p.read_bytes() for p in (again).glob("*.csv")}
    result = run_import("cbis-ddsm", truth.root, again)
    assert result.report["headers"]["read"] == 0 and result.report["headers"]["from_cache"] > 0
    assert {p.name: p.read_bytes() for p in again.glob("*.csv")} == before


def test_without_metadata_csv_files_are_found_by_subject(tmp_path):
    truth = make_cbis_ddsm(tmp_path / "CBIS", metadata=False)
    result = run_import("cbis-ddsm", truth.root, tmp_path / "out", workers=2)
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    assert {(r.exam_id, r.view) for r in rows} == set(truth.images)
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == len(truth.masks)
    assert result.report["rejects"]["by_reason"]["mask size"] == 1


def test_wrong_layout_is_a_one_line_error_exit_1(tmp_path, capsys):
    (tmp_path / "metadata.csv").write_text("Series UID\n1\n")
    with pytest.raises(ImportFormatError, match="does not look like a cbis-ddsm download: expected"):
        run_import("cbis-ddsm", tmp_path, tmp_path / "out")
    assert main(["import", "cbis-ddsm", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "mass_/calc_case_description" in capsys.readouterr().err


def test_cbis_ddsm_through_preprocess_training_predict_evaluate(tmp_path):
    from tests.helpers.import_pipeline import run_pipeline

    truth = make_cbis_ddsm(tmp_path / "CBIS")
    out = run_pipeline("cbis-ddsm", truth.root, tmp_path / "run")
    test_exams = {r["exam_id"] for r in out["labels"] if r["split"] == "test"}
    assert {r["exam_id"] for r in out["predictions"]} == test_exams
    assert (out["runs"] / "patch" / "best.safetensors").is_file()
    malignant = out["evaluation"]["models"][0]["populations"]["screening"]["malignant"]
    assert malignant["n_exams"] == len(test_exams)
    assert malignant["n_positive"] == sum(truth.labels[e]["left_malignant"] + truth.labels[e]["right_malignant"]
                                          for e in test_exams)
