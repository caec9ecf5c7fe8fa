"""VinDr-Mammo importer on a fixture laid out as the PhysioNet release: every expectation is
computed here from the fixture's truth (the BI-RADS it wrote, the boxes, the bad files)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mammokit.cli import main
from mammokit.data.images import read_image
from mammokit.data.importers.run import run_import
from tests.helpers.fixtures_vindr import make_vindr


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def vindr(tmp_path_factory):
    base = tmp_path_factory.mktemp("vindr")
    fx = make_vindr(base / "physionet.org" / "files" / "vindr-mammo" / "1.0.0")
    result = run_import("vindr-mammo", fx.root, base / "out")
    return fx, result


def test_manifest_has_every_kept_image_with_its_extras(vindr):
    fx, result = vindr
    rows = _rows(result.manifest)
    assert {(r["exam_id"], r["view"], r["path"]) for r in rows} == {
        (im.study_id, f"{im.laterality}-{im.view}", str(im.path.resolve())) for im in fx.kept()}
    for r in rows:
        study = fx.studies[r["exam_id"]]
        lat = r["view"][0]
        assert r["patient_id"] == r["exam_id"]  # no patient id in VinDr: the study is the group
        assert r["density"] == study["density"][lat]
        assert r["age"] == ("" if study["age"] is None else str(study["age"]))
        assert r["manufacturer"] == study["manufacturer"]


def test_labels_are_birads_suspicion_worst_over_the_breast(vindr):
    fx, result = vindr
    labels = {r["exam_id"]: r for r in _rows(result.labels)}
    assert set(labels) == {im.study_id for im in fx.kept()}
    for exam, row in labels.items():
        study = fx.studies[exam]
        for lat, side in (("L", "left"), ("R", "right")):
            b = study["birads"][lat]
            assert row[f"{side}_malignant"] == str(int(b in (4, 5))), (exam, side)
            assert row[f"{side}_benign"] == str(int(b in (2, 3))), (exam, side)
            assert row[f"{side}_birads"] == ("" if b is None else str(b))
        worst = max(b for b in study["birads"].values() if b is not None)
        assert row["assessment"] == str(worst)
        assert row["birads"] == (str(worst) if worst <= 2 else "")
    # The fixture has both classes and a breast that is malignant only.
    assert any(r["left_malignant"] == "1" for r in labels.values())
    assert any(r["right_benign"] == "1" for r in labels.values())


def test_official_split_by_study(vindr):
    fx, result = vindr
    for row in _rows(result.labels):
        official = fx.studies[row["exam_id"]]["split"]
        assert row["split"] in (("test",) if official == "test" else ("train", "val")), row["exam_id"]
    manifest_split = {(r["exam_id"], r["split"]) for r in _rows(result.manifest)}
    assert len({e for e, _ in manifest_split}) == len(manifest_split)  # one split per exam


def test_boxes_from_findings_clipped_flipped_and_labelled_by_finding_birads(vindr):
    fx, result = vindr
    kept = {(im.study_id, f"{im.laterality}-{im.view}") for im in fx.kept()}
    expected = []
    for f in fx.findings:
        if f.box is None or f.finding_birads is None or (f.study_id, f.view) not in kept:
            continue
        x0, y0, x1, y1 = f.box
        if f.mirrored:  # the reader flips a mirrored file: the box goes with it
            x0, x1 = f.columns - x1, f.columns - x0
        x0, x1 = np.clip([x0, x1], 0, f.columns)
        y0, y1 = np.clip([y0, y1], 0, f.rows)
        label = "malignant" if f.finding_birads >= 4 else "benign"
        expected.append((f.study_id, f.view, label, round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)))
    got = [(b["exam_id"], b["view"], b["label"], *(round(float(b[k]), 2) for k in ("x0", "y0", "x1", "y1")))
           for b in _rows(result.boxes)]
    assert sorted(got) == sorted(expected)
    assert any(f.mirrored for f in fx.findings) and any(f.box[1] < 0 for f in fx.findings if f.box)
    assert any("1 finding rows without finding BI-RADS" in n for n in result.report["notes"])  # skin thickening


def test_every_reject_has_its_reason(vindr):
    fx, result = vindr
    items = result.report["rejects"]["items"]
    for key, code in fx.rejects.items():
        image_id = key.split("#")[0]
        matching = [it for it in items if image_id in it["path"]]
        assert [it["reason"] for it in matching] == [code], key
    assert result.report["rejects"]["total"] == len(fx.rejects)
    assert result.report["missing_views"]["exams"] == 3  # s4 (2 views lost), s5 (R-CC), s6 (3 views)


def test_pixels_decode_to_display_convention(vindr):
    fx, result = vindr
    boxes = {(b["exam_id"], b["view"]): b for b in _rows(result.boxes)}
    checked = set()
    for im in fx.kept():
        key = (im.study_id, f"{im.laterality}-{im.view}")
        if key not in boxes or boxes[key]["label"] != "malignant":
            continue
        img = read_image(im.path)  # MONOCHROME1 inverted, windowed, mirrored files flipped
        b = boxes[key]
        cy, cx = (float(b["y0"]) + float(b["y1"])) / 2, (float(b["x0"]) + float(b["x1"])) / 2
        assert img[int(cy), int(cx)] > 60000  # the bright lesion is where the box says
        assert img[0, 0 if im.laterality == "R" else -1] == 0  # air away from the chest wall
        checked.add((fx.studies[im.study_id]["name"], im.mirrored))
    assert ("s2", True) in checked and ("s0", False) in checked  # mirrored MONOCHROME1, plain MONOCHROME1


def test_resume_reads_no_header_again(vindr, tmp_path):
    fx, result = vindr
    again = run_import("vindr-mammo", fx.root, result.out)
    assert again.report["headers"]["read"] == 0
    assert again.report["headers"]["from_cache"] == result.report["headers"]["read"]
    assert _rows(again.manifest) == _rows(result.manifest) and _rows(again.boxes) == _rows(result.boxes)


def test_wrong_layout_is_a_one_line_error_exit_1(vindr, tmp_path, capsys):
    fx, _ = vindr
    (tmp_path / "empty").mkdir()
    assert main(["import", "vindr-mammo", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "breast-level_annotations.csv" in err and len(err.strip().splitlines()) == 1
    # A VinDr folder is not an RSNA download either.
    assert main(["import", "rsna", str(fx.root), "--out", str(tmp_path / "o2")]) == 1


def test_vindr_through_preprocess_training_predict_evaluate(tmp_path):
    from tests.helpers.import_pipeline_boxes import run_pipeline

    fx = make_vindr(tmp_path / "VinDr", size=(400, 300), n_extra=6)
    out = run_pipeline("vindr-mammo", fx.root, tmp_path / "run")
    test_exams = {r["exam_id"] for r in out["labels"] if r["split"] == "test"}
    assert test_exams and {r["exam_id"] for r in out["predictions"]} == test_exams
    assert out["masks_from_boxes"] > 0 and (out["runs"] / "patch" / "best.safetensors").is_file()
    malignant = out["evaluation"]["models"][0]["populations"]["screening"]["malignant"]
    assert malignant["n_exams"] == len(test_exams)
    assert malignant["n_positive"] == sum(
        int(fx.studies[e]["birads"][lat] in (4, 5)) for e in test_exams for lat in ("L", "R")
        if fx.studies[e]["birads"][lat] is not None)
    json.dumps(out["evaluation"])  # serialisable
