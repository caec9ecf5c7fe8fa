"""RSNA screening importer on a fixture laid out as the Kaggle download (JPEG 2000 / JPEG lossless
files, MONOCHROME1 and 2); expectations computed here from the rows the fixture wrote."""

from __future__ import annotations

import csv
from pathlib import Path

import pydicom
import pytest

from mammokit.cli import main
from mammokit.data.images import read_image
from mammokit.data.importers.run import run_import
from tests.helpers.fixtures_rsna import J2K, JPEG_SV1, make_rsna


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def rsna(tmp_path_factory):
    base = tmp_path_factory.mktemp("rsna")
    fx = make_rsna(base / "rsna-breast-cancer-detection")
    return fx, run_import("rsna", fx.root, base / "out")


def _truth_labels(fx) -> dict[str, dict]:
    """Per patient: malignant = any cancer 1 on the breast, benign = biopsied and no cancer."""
    out: dict[str, dict] = {}
    for r in fx.rows:
        if r.laterality not in ("L", "R") or r.cancer not in ("0", "1"):
            continue  # rows with unknown values say nothing
        lab = out.setdefault(r.patient_id, {"cancer": set(), "biopsy": set(), "birads": set()})
        if r.cancer == "1":
            lab["cancer"].add(r.laterality)
        if r.biopsy == "1":
            lab["biopsy"].add(r.laterality)
        if r.birads:
            lab["birads"].add(int(r.birads))
    return out


def test_manifest_has_every_kept_cc_mlo_image(rsna):
    fx, result = rsna
    rows = _rows(result.manifest)
    assert sorted((r["exam_id"], r["view"], r["path"]) for r in rows) == sorted(
        (k.patient_id, f"{k.laterality}-{k.view}", str(k.path.resolve())) for k in fx.kept())
    by_path = {str(k.path.resolve()): k for k in fx.kept()}
    for r in rows:
        k = by_path[r["path"]]
        assert r["patient_id"] == r["exam_id"] == k.patient_id
        assert r["age"] == (str(int(float(k.age))) if k.age else "")
        assert (r["density"], r["site_id"], r["machine_id"], r["implant"]) == (k.density, k.site_id, k.machine_id, k.implant)
    # Both encodings the set uses, both photometric interpretations, and headers without view tags.
    kept_syntaxes = {pydicom.dcmread(k.path, stop_before_pixels=True).file_meta.TransferSyntaxUID for k in fx.kept()}
    assert kept_syntaxes == {J2K, JPEG_SV1}
    assert {k.photometric for k in fx.kept()} == {"MONOCHROME1", "MONOCHROME2"}
    # A repeat exposure of a view is kept as a second image of that view.
    assert len([r for r in rows if r["view"] == "L-CC"]) > len({r["exam_id"] for r in rows if r["view"] == "L-CC"})


def test_labels_cancer_and_biopsied_benign(rsna):
    fx, result = rsna
    truth = _truth_labels(fx)
    labels = {r["exam_id"]: r for r in _rows(result.labels)}
    assert set(labels) == {k.patient_id for k in fx.kept()}
    for exam, row in labels.items():
        t = truth[exam]
        for lat, side in (("L", "left"), ("R", "right")):
            assert row[f"{side}_malignant"] == str(int(lat in t["cancer"])), (exam, side)
            assert row[f"{side}_benign"] == str(int(lat in t["biopsy"] and lat not in t["cancer"])), (exam, side)
        expected = "" if not t["birads"] else str(0 if 0 in t["birads"] else max(t["birads"]))
        assert row["birads"] == expected
        assert row["biopsied"] == str(int(bool(t["biopsy"])))
    assert sum(int(r["left_malignant"]) + int(r["right_malignant"]) for r in labels.values()) == 2
    assert sum(int(r["left_benign"]) + int(r["right_benign"]) for r in labels.values()) == 1


def test_seeded_patient_disjoint_split(rsna, tmp_path):
    fx, result = rsna
    splits = {(r["patient_id"], r["split"]) for r in _rows(result.manifest)}
    assert len({p for p, _ in splits}) == len(splits)
    assert {s for _, s in splits} <= {"train", "val", "test"}
    again = run_import("rsna", fx.root, tmp_path / "o", seed=0)
    assert _rows(again.labels) == _rows(result.labels)  # same seed, same split


def test_every_reject_has_its_reason(rsna):
    fx, result = rsna
    items = result.report["rejects"]["items"]
    expected = {r.image_id: r.reject for r in fx.rows if r.reject}
    for image_id, code in expected.items():
        assert [it["reason"] for it in items if image_id in it["path"]] == [code], image_id
    assert result.report["rejects"]["total"] == len(expected)
    assert result.report["rejects"]["by_reason"]["special view"] == 4  # AT, ML, LM, LMO
    assert any("test.csv: 4 images" in n for n in result.report["notes"])
    assert result.report["missing_views"]["exams"] >= 2  # p5 has three views, p4 lost R-MLO


def test_compressed_monochrome1_pixels_decode(rsna):
    fx, _ = rsna
    seen = set()
    for k in fx.kept():
        img = read_image(k.path)
        air = img[0, -1] if k.laterality == "L" else img[0, 0]
        breast = img[img.shape[0] // 2, 2] if k.laterality == "L" else img[img.shape[0] // 2, -3]
        assert air == 0 and breast > 5000, k.path  # inverted where needed, windowed, padding -> 0
        seen.add((k.syntax, k.photometric))
    assert {(J2K, "MONOCHROME1"), (JPEG_SV1, "MONOCHROME1"), (J2K, "MONOCHROME2"), (JPEG_SV1, "MONOCHROME2")} <= seen


def test_wrong_layout_is_exit_1(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("site_id,patient_id\n")
    assert main(["import", "rsna", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "train_images" in capsys.readouterr().err


def test_rsna_through_preprocess_training_predict_evaluate(tmp_path):
    # RSNA has no lesion locations: no patch model can be trained from it, so the pipeline is
    # import -> preprocess -> train (image-only) -> predict -> evaluate.
    from tests.helpers.import_pipeline_boxes import run_pipeline

    fx = make_rsna(tmp_path / "RSNA", size=(400, 300), n_extra=9)
    out = run_pipeline("rsna", fx.root, tmp_path / "run", patch=False)
    test_exams = {r["exam_id"] for r in out["labels"] if r["split"] == "test"}
    assert test_exams and {r["exam_id"] for r in out["predictions"]} == test_exams
    truth = _truth_labels(fx)
    malignant = out["evaluation"]["models"][0]["populations"]["screening"]["malignant"]
    assert malignant["n_exams"] == len(test_exams)
    assert malignant["n_positive"] == sum(len(truth[e]["cancer"]) for e in test_exams)
