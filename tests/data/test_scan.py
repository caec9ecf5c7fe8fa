"""`mammokit scan`: DICOM/PNG folders -> manifest + rejects, never stopping on a bad file."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mammokit.cli import main
from mammokit.data.dicom_write import write_dicom
from mammokit.data.images import read_image, write_png16
from mammokit.data.manifest import manifest_to_exams, read_manifest
from mammokit.data.scan import scan

PIX = (np.arange(32 * 24, dtype=np.uint16).reshape(32, 24) * 5)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def archive(tmp_path) -> Path:
    root = tmp_path / "archive"
    study = "1.2.3.100"
    # A complete exam, one file without extension, one compressed.
    write_dicom(root / "p1" / "s1" / "IM1.dcm", PIX, laterality="L", view="CC", study_uid=study, patient_id="P1")
    write_dicom(root / "p1" / "s1" / "IM2", PIX, laterality="R", view="CC", study_uid=study, patient_id="P1")
    write_dicom(root / "p1" / "s1" / "IM3.dcm", PIX, laterality="L", view="MLO", study_uid=study, patient_id="P1",
                transfer_syntax="1.2.840.10008.1.2.5")
    write_dicom(root / "p1" / "s1" / "IM4.dcm", PIX, laterality="R", view="MLO", study_uid=study, patient_id="P1",
                ViewPosition=None)  # view from ViewCodeSequence
    # Rejects.
    write_dicom(root / "bad" / "ct.dcm", PIX, laterality="L", view="CC", study_uid=study, Modality="CT")
    write_dicom(root / "bad" / "raw.dcm", PIX, laterality="L", view="CC", study_uid=study,
                PresentationIntentType="FOR PROCESSING")
    write_dicom(root / "bad" / "nolat.dcm", PIX, laterality="L", view="CC", study_uid=study, ImageLaterality=None)
    write_dicom(root / "bad" / "noview.dcm", PIX, laterality="L", view="CC", study_uid=study, ViewPosition=None,
                ViewCodeSequence=None)
    write_dicom(root / "bad" / "ml.dcm", PIX, laterality="L", view="ML", study_uid=study)
    mod = Dataset()
    mod.CodeMeaning = "magnification"
    code = Dataset()
    code.CodeValue, code.CodeMeaning = "399162004", "cranio-caudal"
    code.ViewModifierCodeSequence = Sequence([mod])
    write_dicom(root / "bad" / "mag.dcm", PIX, laterality="L", view="CC", study_uid=study,
                ViewCodeSequence=Sequence([code]))
    write_dicom(root / "bad" / "nopix.dcm", PIX, laterality="L", view="CC", study_uid=study, PixelData=None)
    data = (root / "p1" / "s1" / "IM1.dcm").read_bytes()
    (root / "bad" / "trunc.dcm").write_bytes(data[: len(data) // 2])
    shutil.copy(root / "p1" / "s1" / "IM1.dcm", root / "p1" / "s1" / "zz_copy.dcm")  # duplicate SOP
    # Ignored.
    (root / "notes.txt").write_text("hello")
    (root / ".DS_Store").write_bytes(b"\0" * 300)
    # PNGs named after the reference convention, plus a badly named one.
    write_png16(root / "png" / "ex9_L_CC.png", PIX)
    write_png16(root / "png" / "ex9_L_CC_1.png", PIX)
    write_png16(root / "png" / "ex9_R_MLO.png", PIX)
    write_png16(root / "png" / "ex9_malignant.png", PIX)
    return root


def test_scan_manifest_and_rejects(archive, tmp_path):
    out = tmp_path / "out" / "manifest.csv"
    result = scan(archive, out, rejects_out=tmp_path / "out" / "rejects.csv")
    rows = read_manifest(out)
    assert [(r.exam_id, r.view, r.path.name, r.patient_id) for r in rows] == [
        ("1.2.3.100", "L-CC", "IM1.dcm", "P1"),
        ("1.2.3.100", "R-CC", "IM2", "P1"),
        ("1.2.3.100", "L-MLO", "IM3.dcm", "P1"),
        ("1.2.3.100", "R-MLO", "IM4.dcm", "P1"),
        ("ex9", "L-CC", "ex9_L_CC.png", None),
        ("ex9", "L-CC", "ex9_L_CC_1.png", None),
        ("ex9", "R-MLO", "ex9_R_MLO.png", None),
    ]
    reasons = {Path(r["path"]).name: r["reason"] for r in _csv(tmp_path / "out" / "rejects.csv")}
    assert set(reasons) == {"ct.dcm", "raw.dcm", "nolat.dcm", "noview.dcm", "ml.dcm", "mag.dcm", "nopix.dcm",
                            "trunc.dcm", "zz_copy.dcm", "ex9_malignant.png"}
    assert reasons["ct.dcm"] == "modality CT, not MG"
    assert reasons["raw.dcm"].startswith("FOR PROCESSING")
    assert reasons["nolat.dcm"].startswith("missing laterality")
    assert reasons["noview.dcm"].startswith("missing view")
    assert reasons["ml.dcm"] == "view ML is not CC or MLO"
    assert reasons["mag.dcm"].startswith("view modifier magnification")
    assert reasons["nopix.dcm"] == "no pixel data"
    assert "truncated" in reasons["trunc.dcm"]
    assert reasons["zz_copy.dcm"].startswith("same SOPInstanceUID as") and "IM1.dcm" in reasons["zz_copy.dcm"]
    assert result.n_ignored == 1 and result.n_exams == 2 and len(result.rows) == 7
    assert result.reject_counts["unreadable"] == 1 and sum(result.reject_counts.values()) == 10
    # Every accepted image is readable, and the manifest groups into valid exams.
    for row in rows:
        np.testing.assert_array_equal(read_image(row.path), PIX)
    exams = manifest_to_exams(rows)
    assert exams[1]["L-CC"] == ["ex9_L_CC", "ex9_L_CC_1"]


def test_scan_is_deterministic_across_workers(archive, tmp_path):
    scan(archive, tmp_path / "a" / "m.csv", workers=1)
    scan(archive, tmp_path / "b" / "m.csv", workers=3)
    # Paths inside the archive are absolute (the manifests live outside it): compare bytes.
    assert (tmp_path / "a" / "m.csv").read_bytes() == (tmp_path / "b" / "m.csv").read_bytes()
    assert (tmp_path / "a" / "m.rejects.csv").read_bytes() == (tmp_path / "b" / "m.rejects.csv").read_bytes()


def test_scan_cli(archive, tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["scan", str(archive), "-o", str(out), "--rejects", str(tmp_path / "r.csv"), "--workers", "2"]) == 0
    assert "7 images in 2 exams" in capsys.readouterr().out
    assert len(_csv(out)) == 7 and len(_csv(tmp_path / "r.csv")) == 10
    # --strict: the truncated file is fatal and named.
    assert main(["scan", str(archive), "-o", str(tmp_path / "s.csv"), "--strict"]) == 2
    assert "trunc.dcm: truncated" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()
    assert main(["scan", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "missing: folder not found" in capsys.readouterr().err


def test_scan_nothing_usable(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.dcm").write_text("garbage")
    with pytest.raises(ValueError, match="no usable mammograms"):
        scan(tmp_path / "d", tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
    assert len(_csv(tmp_path / "m.rejects.csv")) == 1


# ----------------------------------------------------------------------------- --exam-id


@pytest.fixture()
def two_studies(tmp_path) -> Path:
    """Patient P1: two studies (different StudyInstanceUID and AccessionNumber) on one day; P2:
    one study on another day, whose MLO lacks its AccessionNumber; P3: no StudyDate."""
    root = tmp_path / "studies"
    spec = [
        ("a1", "1.2.9.1", "ACC1", "P1", "20190312", "L", "CC"),
        ("a2", "1.2.9.1", "ACC1", "P1", "20190312", "R", "CC"),
        ("b1", "1.2.9.2", "ACC2", "P1", "20190312", "L", "MLO"),
        ("c1", "1.2.9.3", "ACC3", "P2", "20200101", "L", "CC"),
        ("c2", "1.2.9.3", None, "P2", "20200101", "L", "MLO"),
        ("d1", "1.2.9.4", "ACC4", "P3", None, "R", "MLO"),
    ]
    for name, study, acc, pid, date, lat, view in spec:
        write_dicom(root / f"{name}.dcm", PIX, laterality=lat, view=view, study_uid=study, patient_id=pid,
                    AccessionNumber=acc, StudyDate=date)
    return root


@pytest.mark.parametrize("rule, exams, rejected", [
    ("study", {"1.2.9.1": 2, "1.2.9.2": 1, "1.2.9.3": 2, "1.2.9.4": 1}, {}),
    ("accession", {"ACC1": 2, "ACC2": 1, "ACC3": 1, "ACC4": 1}, {"c2.dcm": "missing AccessionNumber"}),
    ("patient-date", {"P1_20190312": 3, "P2_20200101": 2}, {"d1.dcm": "missing StudyDate"}),
])
def test_exam_id_rules_form_ids_that_join_labels(two_studies, tmp_path, rule, exams, rejected):
    out = tmp_path / f"{rule}.csv"
    result = scan(two_studies, out, exam_id=rule)
    rows = read_manifest(out)
    counts = {}
    for row in rows:
        counts[row.exam_id] = counts.get(row.exam_id, 0) + 1
    assert counts == exams
    got = {Path(r.path).name: r.reason for r in result.rejects}
    assert set(got) == set(rejected) and all(rejected[k] in got[k] for k in rejected)
    # The ids join a labels table keyed the same way: one exam record per id.
    assert sorted(e["exam_id"] for e in manifest_to_exams(rows)) == sorted(exams)


def test_cli_exam_id_flag(two_studies, tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["scan", str(two_studies), "-o", str(out), "--exam-id", "patient-date"]) == 0
    assert {r["exam_id"] for r in _csv(out)} == {"P1_20190312", "P2_20200101"}
    with pytest.raises(SystemExit):
        main(["scan", str(two_studies), "-o", str(out), "--exam-id", "series"])
    with pytest.raises(ValueError, match="unknown --exam-id 'series'"):
        scan(two_studies, out, exam_id="series")
