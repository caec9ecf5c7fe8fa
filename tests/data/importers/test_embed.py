"""EMBED importer on a fixture laid out as the open release (server paths in anon_dicom_path,
one clinical row per finding); expectations computed here from the findings the fixture wrote."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from mammokit.cli import main
from mammokit.data.importers.run import run_import
from tests.helpers.fixtures_embed import make_embed


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def embed(tmp_path_factory):
    base = tmp_path_factory.mktemp("embed")
    fx = make_embed(base / "EMBED")
    return fx, run_import("embed", fx.root, base / "out")


def _truth(fx, exam: str) -> dict[str, set]:
    """Breasts with a malignant (severity 0-1) / benign (2-4) pathology; bside else side, B/empty = both."""
    out = {"malignant": set(), "benign": set()}
    for f in fx.exams[exam]["findings"]:
        if f.path_severity == "":
            continue
        side = f.bside or f.side
        sides = {side} if side in ("L", "R") else {"L", "R"}
        severity = int(f.path_severity)
        if severity <= 1:
            out["malignant"] |= sides
        elif severity <= 4:
            out["benign"] |= sides
    return out


def test_manifest_resolves_server_paths_and_keeps_2d_cc_mlo(embed):
    fx, result = embed
    rows = _rows(result.manifest)
    assert sorted((r["exam_id"], r["view"], r["path"]) for r in rows) == sorted(
        (im.exam, im.view, str(im.path.resolve())) for im in fx.kept())
    for r in rows:
        e = fx.exams[r["exam_id"]]
        assert r["patient_id"] == e["patient"] and r["cohort"] == e["cohort"]
        assert r["density"] == {1: "A", 2: "B", 3: "C", 4: "D"}.get(e["tissueden"], "")  # 5 = male: empty
        assert r["age"] == str(e["age"]) and r["manufacturer"] == "HOLOGIC, Inc."


def test_labels_from_path_severity_per_breast(embed):
    fx, result = embed
    labels = {r["exam_id"]: r for r in _rows(result.labels)}
    assert set(labels) == {im.exam for im in fx.kept()}
    order = [1, 2, 3, 0, 4, 5, 6]
    for exam, row in labels.items():
        t = _truth(fx, exam)
        for lat, side in (("L", "left"), ("R", "right")):
            assert row[f"{side}_malignant"] == str(int(lat in t["malignant"])), (exam, side)
            assert row[f"{side}_benign"] == str(int(lat in t["benign"])), (exam, side)
        worst = max((f.asses for f in fx.exams[exam]["findings"]), key=order.index)
        assert row["assessment"] == str(worst)
        assert row["birads"] == (str(worst) if worst in (0, 1, 2) else "")
    names = {fx.exams[e]["name"]: r for e, r in labels.items()}
    # The screening exam A1 (BI-RADS 0) stays unlabelled: its pathology is on the diagnostic exam A2.
    assert names["A1"]["left_malignant"] == "0" and names["A2"]["left_malignant"] == "1"
    # D1: side B but bside L -> left malignant only; F1: severities 5 and 6 set neither label.
    assert (names["D1"]["left_malignant"], names["D1"]["right_malignant"], names["D1"]["right_benign"]) == ("1", "0", "1")
    assert [names["F1"][c] for c in ("left_benign", "right_benign", "left_malignant", "right_malignant")] == ["0"] * 4


def test_roi_boxes_y_first_clipped_and_labelled_by_breast(embed):
    fx, result = embed
    labels = {r["exam_id"]: r for r in _rows(result.labels)}
    seen, expected = set(), []
    for im in fx.kept():
        if (im.exam, im.view) in seen:
            continue
        seen.add((im.exam, im.view))
        side = "left" if im.view[0] == "L" else "right"
        lab = labels[im.exam]
        label = "malignant" if lab[f"{side}_malignant"] == "1" else ("benign" if lab[f"{side}_benign"] == "1" else None)
        for y0, x0, y1, x1 in im.rois:
            if label is None:
                continue
            y0, x0, y1, x1 = (round(v) for v in (y0, x0, y1, x1))  # the table holds whole pixels
            expected.append((im.exam, im.view, label, *np.clip([x0, y0], 0, None), min(x1, im.columns), min(y1, im.rows)))
    got = [(b["exam_id"], b["view"], b["label"], *(float(b[k]) for k in ("x0", "y0", "x1", "y1")))
           for b in _rows(result.boxes)]
    assert sorted(got) == sorted(tuple(e[:3]) + tuple(float(v) for v in e[3:]) for e in expected)
    assert any(im.rois and im.rois[0][2] > im.rows for im in fx.kept())  # one box was clipped
    assert any("1 ROI boxes on a breast without a malignant or benign label" in n for n in result.report["notes"])


def test_every_reject_has_its_reason(embed):
    fx, result = embed
    items = result.report["rejects"]["items"]
    for im in fx.images:
        if im.reject:
            assert [it["reason"] for it in items if im.path.name in it["path"]] == [im.reject], im.path.name
    dup = [it for it in items if it["reason"] == "duplicate"]
    assert len(dup) == 1 and Path(fx.duplicate_rows[0]).name in dup[0]["path"]
    assert result.report["rejects"]["total"] == sum(1 for im in fx.images if im.reject) + 1


def test_reduced_tables_are_used_without_the_full_ones(embed, tmp_path):
    fx, result = embed
    root = tmp_path / "EMBED"
    shutil.copytree(fx.root, root)
    for name in ("EMBED_OpenData_clinical.csv", "EMBED_OpenData_metadata.csv"):
        (root / "tables" / name).unlink()
    reduced = run_import("embed", root, tmp_path / "out")
    rel = lambda rows: [{k: v.replace(str(root), str(fx.root.resolve())) for k, v in r.items()} for r in rows]  # noqa: E731
    assert rel(_rows(reduced.manifest)) == _rows(result.manifest)
    assert _rows(reduced.labels) == _rows(result.labels) and _rows(reduced.boxes) == _rows(result.boxes)


def test_wrong_layout_is_exit_1(tmp_path, capsys):
    assert main(["import", "embed", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "EMBED_OpenData_clinical.csv" in capsys.readouterr().err


def test_embed_through_preprocess_training_predict_evaluate(tmp_path):
    from tests.helpers.import_pipeline_boxes import run_pipeline

    fx = make_embed(tmp_path / "EMBED", size=(400, 300), n_extra=9)
    out = run_pipeline("embed", fx.root, tmp_path / "run")
    test_exams = {r["exam_id"] for r in out["labels"] if r["split"] == "test"}
    assert test_exams and {r["exam_id"] for r in out["predictions"]} == test_exams
    assert out["masks_from_boxes"] > 0 and (out["runs"] / "patch" / "best.safetensors").is_file()
    malignant = out["evaluation"]["models"][0]["populations"]["screening"]["malignant"]
    assert malignant["n_positive"] == sum(len(_truth(fx, e)["malignant"]) for e in test_exams)
