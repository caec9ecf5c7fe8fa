"""Header text is untrusted: UIDs validated, other header strings escaped, CSV rows split only
on real row ends, no file name from header text (end to end: scan -> preprocess)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from mammokit.data.manifest import read_manifest
from mammokit.data.scan import scan
from mammokit.preprocess.pipeline import preprocess
from mammokit.utils.log import OneLineFormatter
from tests.helpers.hostile import tree_hash, write_patched_dicom

VIEWS4 = ("L-CC", "R-CC", "L-MLO", "R-MLO")
GOOD_STUDY = "1.2.826.0.1.3680043.10.1"
PLACEHOLDER = "1.2.826.0.1.3680043.10.2"  # same length as the hostile one below
HOSTILE_STUDY = b"1.2.826.0.1.3680043.10\x852"


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _archive(root: Path) -> Path:
    # Exam 1: valid UIDs, PatientID "../../x" (path traversal if it ever became a file name).
    for i, view in enumerate(VIEWS4):
        write_patched_dicom(root / "good" / f"IM{i}.dcm", {b"PATIENTXX": b"../../x\x00\x00"[:9]},
                            view=view, study_uid=GOOD_STUDY, patient_id="PATIENTXX")
    # Exam 2: StudyInstanceUID holding the byte 0x85 (str.splitlines treats it as a line break);
    # PatientID holding 0x85 and a newline.
    for i, view in enumerate(VIEWS4):
        write_patched_dicom(root / "hostile" / f"IM{i}.dcm",
                            {PLACEHOLDER.encode(): HOSTILE_STUDY, b"PAT_ABCD": b"P\x85\nABCD\x20"},
                            view=view, study_uid=PLACEHOLDER, patient_id="PAT_ABCD")
    return root


def test_hostile_uid_rejected_and_manifest_survives_preprocess(tmp_path):
    archive = _archive(tmp_path / "archive")
    before = tree_hash(archive)
    out = tmp_path / "out"
    result = scan(archive, out / "manifest.csv")
    # The hostile exam is rejected with its reason, each file once.
    rejects = _csv(out / "manifest.rejects.csv")
    assert sorted(Path(r["path"]).name for r in rejects) == [f"IM{i}.dcm" for i in range(4)]
    assert all("invalid StudyInstanceUID" in r["reason"] and "\\x85" in r["reason"] for r in rejects)
    assert all("\x85" not in r["reason"] for r in rejects)
    assert result.reject_counts == {"bad_uid": 4}
    # The manifest has the good exam; its PatientID is data, kept as written.
    rows = read_manifest(out / "manifest.csv")
    assert [(r.exam_id, r.view, r.patient_id) for r in rows] == [(GOOD_STUDY, v, "../../x") for v in VIEWS4]
    raw = (out / "manifest.csv").read_bytes()
    assert raw.count(b"\n") == 5 and b"\x85" not in raw

    work = tmp_path / "work"
    report = preprocess(out / "manifest.csv", work, preset="scale:0.05")
    assert report.n_failed == 0 and report.n_ok == 4
    exams = json.loads((work / "exams.json").read_text())["exams"]
    assert exams[0]["patient_id"] == "../../x"
    # Every file written stays inside the work folder; nothing named "x" appeared anywhere.
    written = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
    assert all(not name.startswith("..") for name in written)
    assert not any(p.name == "x" or p.name.startswith("x") for p in tmp_path.rglob("*"))
    assert tree_hash(archive) == before


def test_hostile_patient_id_is_escaped(tmp_path):
    archive = tmp_path / "archive"
    for i, view in enumerate(VIEWS4):
        write_patched_dicom(archive / f"IM{i}.dcm", {b"PAT_ABCD": b"P\x85\nABCD\x20"},
                            view=view, study_uid=GOOD_STUDY, patient_id="PAT_ABCD")
    scan(archive, tmp_path / "manifest.csv")
    rows = read_manifest(tmp_path / "manifest.csv")
    assert len(rows) == 4
    assert {r.patient_id for r in rows} == {"P\\x85\\x0aABCD"}


def test_manifest_rows_split_only_on_csv_row_ends(tmp_path):
    # A manifest written by an older mammokit (or by hand) with 0x85 / U+2028 inside fields.
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["exam_id", "view", "path", "patient_id"])
        w.writerow(["1.2\x853", "L-CC", "a.png", "p\u2028q"])
        w.writerow(["e2", "R-CC", "a.png", "multi\nline"])
    rows = read_manifest(path)
    assert [(r.exam_id, r.view, r.patient_id, r.line) for r in rows] == [
        ("1.2\x853", "L-CC", "p\u2028q", 2), ("e2", "R-CC", "multi\nline", 4)]


def test_exam_id_never_escapes_the_work_folder(tmp_path):
    from mammokit.data.images import write_png16
    from tests.helpers.hostile import breast_image

    src = tmp_path / "src"
    src.mkdir()
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["exam_id", "view", "path"])
        for view in VIEWS4:
            write_png16(src / f"{view}.png", breast_image(side=view[0]))
            w.writerow(["../../x", view, f"src/{view}.png"])
    work = tmp_path / "deep" / "work"
    preprocess(manifest, work, preset="scale:0.05")
    names = sorted(p.name for p in (work / "cropped").iterdir())
    assert names == sorted(f"___.._x_{v.replace('-', '_')}.png" for v in VIEWS4)
    assert not (tmp_path / "x").exists() and not (tmp_path / "deep" / "x").exists()


def test_log_lines_cannot_be_forged():
    record = logging.LogRecord("mammokit.t", logging.WARNING, __file__, 1, "bad file %s", ("a\nFAKE\x85b",), None)
    line = OneLineFormatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING bad file a\\x0aFAKE\\x85b"
