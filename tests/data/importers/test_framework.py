"""The importer framework: resumable parallel header reader, header checks, splits, masks,
boxes, run_import with a stand-in importer, and the CLI's exit status 1 for a wrong format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mammokit.cli import main
from mammokit.data.dicom_write import write_dicom
from mammokit.data.importers import REGISTRY, ImportFormatError, load_formats
from mammokit.data.importers.base import Box, ImageRecord, ImportRecords, MaskSource, empty_labels, not_layout
from mammokit.data.importers.context import ImportContext
from mammokit.data.importers.run import run_import
from mammokit.data.importers.split import assign_splits
from mammokit.data.importers.write import clip_boxes, rasterise_polygon


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _dicoms(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = folder / f"img{i:03d}.dcm"
        write_dicom(p, np.full((8, 6), i, np.uint16), laterality="L" if i % 2 else "R", view="CC" if i % 3 else "MLO",
                    study_uid=f"1.2.3.{i // 4}", patient_id=f"P{i // 8}")
        paths.append(p)
    return paths


def test_header_reader_caches_and_resumes(tmp_path):
    paths = _dicoms(tmp_path / "d", 10)
    (tmp_path / "d" / "junk.dcm").write_bytes(b"not a dicom file at all" * 10)
    ctx = ImportContext(out=tmp_path / "out")
    got = ctx.read_headers([*paths, tmp_path / "d" / "junk.dcm", tmp_path / "d" / "gone.dcm"])
    assert ctx.stats == {"cached": 0, "read": 11}  # the missing file is not read at all
    infos = [got[str(p)] for p in paths]
    assert [i.laterality for i in infos] == ["L" if i % 2 else "R" for i in range(10)]
    assert [i.view for i in infos] == ["CC" if i % 3 else "MLO" for i in range(10)]
    assert got[str(tmp_path / "d" / "junk.dcm")].code == "unreadable"
    assert got[str(tmp_path / "d" / "gone.dcm")].code == "missing file"
    # A re-run reads nothing again; a changed file is read again; a cut-off last line is ignored.
    with open(ctx.cache_path, "a", encoding="utf-8") as fh:
        fh.write('{"job": "header", "path": "x", "ke')
    write_dicom(paths[0], np.zeros((9, 7), np.uint16), laterality="L", view="MLO", patient_id="P9")
    again = ImportContext(out=tmp_path / "out")
    got2 = again.read_headers(paths)
    assert again.stats == {"cached": 9, "read": 1}
    assert got2[str(paths[0])].rows == 9 and got2[str(paths[0])].patient_id == "P9"


def test_parallel_reader_matches_serial(tmp_path):
    paths = _dicoms(tmp_path / "d", 140)  # > 2 chunks: the process pool is used
    serial = ImportContext(out=tmp_path / "a").read_headers(paths)
    parallel = ImportContext(out=tmp_path / "b", workers=2).read_headers(paths)
    assert list(serial) == list(parallel)
    assert all(serial[k] == parallel[k] for k in serial)


def test_check_header_reasons(tmp_path):
    pixels = np.ones((6, 5), np.uint16)
    cases = {
        "proc": ({"PresentationIntentType": "FOR PROCESSING"}, "FOR PROCESSING"),
        "nopix": ({"PixelData": None}, "no pixel data"),
        "ml": ({"ViewPosition": "ML", "ViewCodeSequence": None}, "special view"),
        "nolat": ({"ImageLaterality": None}, "unknown value"),
        "ok": ({}, None),
    }
    ctx = ImportContext(out=tmp_path / "out")
    for name, (elements, code) in cases.items():
        write_dicom(tmp_path / f"{name}.dcm", pixels, laterality="L", view="CC", **elements)
    infos = ctx.read_headers([tmp_path / f"{n}.dcm" for n in cases])
    for name, (_, code) in cases.items():
        result = ctx.check_header(infos[str(tmp_path / f"{name}.dcm")])
        assert (result.code if result else None) == code, name


def test_splits_official_patient_level_and_seeded():
    exams = {f"e{i}": f"p{i // 2}" for i in range(40)}
    labels = {e: {**empty_labels(), "left_malignant": int(i % 5 == 0)} for i, e in enumerate(exams)}
    # Official: patient p0 has one Training and one Test exam -> both test.
    official = {e: ("test" if i in (1, 30, 31) else "train") for i, e in enumerate(exams)}
    s = assign_splits(exams, official, labels, seed=0)
    assert s["e0"] == s["e1"] == "test" and s["e30"] == "test"
    assert {s[e] for e in exams} == {"train", "val", "test"}
    for p in set(exams.values()):
        assert len({s[e] for e, q in exams.items() if q == p}) == 1  # patient-disjoint
    # No official split: seeded, patient-disjoint, reproducible, every part has a malignant exam.
    a = assign_splits(exams, {}, labels, seed=3)
    assert a == assign_splits(exams, {}, labels, seed=3)
    assert a != assign_splits(exams, {}, labels, seed=4)
    for part in ("train", "val", "test"):
        assert any(labels[e]["left_malignant"] for e in exams if a[e] == part)
    for p in set(exams.values()):
        assert len({a[e] for e, q in exams.items() if q == p}) == 1


def test_polygon_and_boxes():
    square = [(2, 1), (5, 1), (5, 3), (2, 3)]
    m = rasterise_polygon(square, (6, 8))
    expect = np.zeros((6, 8), bool)
    expect[1:4, 2:6] = True
    assert (m == expect).all()
    assert (rasterise_polygon(square, (6, 8), mirrored=True) == expect[:, ::-1]).all()
    image = ImageRecord("e", "L-CC", "/x.dcm", "p", rows=100, columns=50)
    kept, rej = clip_boxes([Box("e", "L-CC", "benign", -5, 10, 60, 20), Box("e", "L-CC", "benign", 70, 1, 80, 5),
                            Box("f", "L-CC", "benign", 0, 0, 1, 1)], {("e", "L-CC"): image})
    assert [(b.x0, b.y0, b.x1, b.y1) for b in kept] == [(0, 10, 50, 20)]
    assert len(rej) == 2 and all(r.code == "unknown value" for r in rej)


class _Fake:
    """A stand-in importer: one exam per file of ROOT/*.dcm, a polygon and a wrong-size mask."""

    name = "rsna"
    label_rule = "test rule"

    def detect(self, root: Path) -> None:
        if not (root / "table.csv").exists():
            raise not_layout(root, self.name, "table.csv")

    def collect(self, root: Path, ctx: ImportContext) -> ImportRecords:
        rec = ImportRecords()
        for path, info in ctx.read_headers(sorted(root.glob("*.dcm"))).items():
            bad = info if not hasattr(info, "laterality") else ctx.check_header(info)
            if bad:
                rec.rejects.append(bad)
                continue
            exam = f"ex{info.patient_id}"
            rec.images.append(ImageRecord(exam, info.view_name, path, info.patient_id, rows=info.rows,
                                          columns=info.columns, extra={"age": "50"}))
            rec.labels[exam] = {**empty_labels(), "left_malignant": 1, "birads": None}
        rec.masks.append(MaskSource("exP0", "L-CC", "malignant", polygon=[(1, 1), (4, 1), (4, 4), (1, 4)]))
        rec.masks.append(MaskSource("exP0", "L-CC", "benign", path=str(root / "small.png")))
        rec.images.append(rec.images[0])  # listed twice
        return rec


@pytest.fixture
def fake(monkeypatch, tmp_path):
    load_formats()
    monkeypatch.setitem(REGISTRY, "rsna", _Fake())
    root = tmp_path / "root"
    root.mkdir()
    (root / "table.csv").write_text("x\n1\n")
    for i in range(3):
        write_dicom(root / f"{i}.dcm", np.ones((10, 8), np.uint16) * 5, laterality="L", view="CC", patient_id=f"P{i}")
    write_dicom(root / "proc.dcm", np.ones((10, 8), np.uint16), laterality="L", view="CC", patient_id="P7",
                PresentationIntentType="FOR PROCESSING")
    from mammokit.data.images import write_png8

    write_png8(root / "small.png", np.full((9, 8), 255, np.uint8))
    return root


def test_run_import_with_a_stand_in_importer(fake, tmp_path):
    out = tmp_path / "out"
    result = run_import("rsna", fake, out)
    rows = _rows(out / "manifest.csv")
    assert [r["exam_id"] for r in rows] == ["exP0", "exP1", "exP2"]
    assert rows[0]["age"] == "50" and Path(rows[0]["path"]).is_absolute()
    labels = _rows(out / "labels.csv")
    assert list(labels[0])[:6] == ["exam_id", "left_benign", "right_benign", "left_malignant", "right_malignant", "birads"]
    assert {r["split"] for r in labels} <= {"train", "val", "test"}
    from mammokit.data.images import read_png8

    mask = read_png8(out / "masks" / "exP0_L_CC_malignant.png")
    assert mask.shape == (10, 8) and (mask > 0).sum() == 16
    assert not (out / "masks" / "exP0_L_CC_benign.png").exists()
    report = json.loads((out / "import_report.json").read_text())
    assert report["rejects"]["by_reason"] == {"FOR PROCESSING": 1, "duplicate": 1, "mask size": 1}
    assert report["missing_views"]["exams"] == 3 and report["images"] == 3
    assert report["classes"]["mask_files"] == {"malignant": 1, "benign": 0}
    again = run_import("rsna", fake, out)
    assert again.report["headers"]["read"] == 0 and again.report["headers"]["from_cache"] == 4
    assert _rows(out / "manifest.csv") == rows


def test_cli_wrong_format_and_layout_exit_1(fake, tmp_path, capsys):
    assert main(["import", "ddsm", str(fake), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert "expected one of cbis-ddsm, vindr-mammo, rsna, inbreast, cmmd, embed" in err and "\n" not in err
    (fake / "table.csv").unlink()
    assert main(["import", "rsna", str(fake), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("does not look like a rsna download: expected table.csv")
    assert main(["import", "rsna", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    with pytest.raises(ImportFormatError):
        run_import("rsna", fake, tmp_path / "o")
