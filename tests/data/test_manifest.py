"""Manifest and labels CSVs: parsing, validation errors, exam grouping."""

from __future__ import annotations

from pathlib import Path

import pytest

from mammokit.data.examlist import validate_exam
from mammokit.data.manifest import (
    ManifestError,
    ManifestRow,
    image_name,
    manifest_to_exams,
    read_labels,
    read_manifest,
    write_labels,
    write_manifest,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_manifest_resolves_paths_and_defaults(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(
        tmp_path / "sub",
        "m.csv",
        "\ufeffexam_id, view ,path,patient_id,horizontal_flip,split\n"
        "e1,L-CC,img/a.png,p1,,train\n"
        "\n"
        "e1,r_mlo,/abs/b.dcm,p1,no,train\n"
        "e2,LCC,c.png,,YES,\n",
    )
    rows = read_manifest(path)
    assert [r.view for r in rows] == ["L-CC", "R-MLO", "L-CC"]
    assert rows[0].path == (tmp_path / "sub" / "img" / "a.png").resolve()
    assert rows[1].path == Path("/abs/b.dcm")
    assert [r.horizontal_flip for r in rows] == ["NO", "NO", "YES"]
    assert (rows[0].patient_id, rows[0].split, rows[0].line) == ("p1", "train", 2)
    assert (rows[2].patient_id, rows[2].split, rows[2].line) == (None, None, 5)


@pytest.mark.parametrize(
    "text,match",
    [
        ("", r"m\.csv: empty manifest"),
        ("exam_id,path\ne1,a.png\n", r"m\.csv: line 1: manifest is missing column\(s\) view"),
        ("exam_id,view,path\n", r"m\.csv: manifest has a header but no rows"),
        ("exam_id,view,path\ne1,L-CC,a.png\ne1,L-XCC,b.png\n", r"m\.csv: line 3: unknown view 'L-XCC'"),
        ("exam_id,view,path,horizontal_flip\ne1,L-CC,a.png,maybe\n", r"line 2: horizontal_flip must be YES or NO"),
        ("exam_id,view,path\ne1,L-CC,\n", r"line 2: empty path"),
        ("exam_id,view,path\ne1,L-CC,a.png,extra\n", r"line 2: more fields than columns"),
        ("exam_id,view,path,view\ne1,L-CC,a.png,L-CC\n", r"line 1: duplicate column\(s\) view"),
    ],
)
def test_read_manifest_errors(tmp_path, text, match):
    with pytest.raises(ManifestError, match=match):
        read_manifest(write(tmp_path, "m.csv", text))


def test_read_manifest_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"none\.csv: manifest not found"):
        read_manifest(tmp_path / "none.csv")


def test_manifest_to_exams_names_and_extras(tmp_path):
    path = write(
        tmp_path,
        "m.csv",
        "exam_id,view,path,patient_id,split\n"
        "a/b 1,L-CC,x1.png,p,test\n"
        "a/b 1,L-CC,x2.png,p,test\n"
        "a/b 1,R-MLO,x3.png,p,test\n"
        "e2,R-CC,y.png,q,train\n"
        "a/b 1,L-CC,x4.png,p,test\n",
    )
    exams = manifest_to_exams(read_manifest(path))
    assert [e["exam_id"] for e in exams] == ["a/b 1", "e2"]
    a = exams[0]
    assert a["L-CC"] == ["a_b_1_L_CC", "a_b_1_L_CC_1", "a_b_1_L_CC_2"]
    assert a["R-MLO"] == ["a_b_1_R_MLO"] and a["R-CC"] == [] and a["L-MLO"] == []
    assert a["source_paths"]["L-CC"] == [str(tmp_path.resolve() / n) for n in ("x1.png", "x2.png", "x4.png")]
    assert (a["patient_id"], a["split"], a["horizontal_flip"]) == ("p", "test", "NO")
    for exam in exams:
        validate_exam(exam)  # the examlist contract holds
    assert image_name("x", "R-MLO", 0) == "x_R_MLO" and image_name("x", "R-MLO", 2) == "x_R_MLO_2"


def test_manifest_to_exams_conflicts(tmp_path):
    path = write(tmp_path, "m.csv", "exam_id,view,path,horizontal_flip\ne1,L-CC,a.png,NO\ne1,R-CC,b.png,YES\n")
    with pytest.raises(ManifestError, match=r"m\.csv: line 3: exam 'e1' has conflicting horizontal_flip"):
        manifest_to_exams(read_manifest(path), source=path)
    rows = [ManifestRow("a b", "L-CC", Path("a.png"), line=2), ManifestRow("a_b", "L-CC", Path("b.png"), line=3)]
    with pytest.raises(ManifestError, match=r"line 3: exam ids 'a b' and 'a_b' both map"):
        manifest_to_exams(rows)
    rows = [ManifestRow("e", "L-CC", Path("a"), patient_id="p1", line=2),
            ManifestRow("e", "R-CC", Path("b"), patient_id="p2", line=3)]
    with pytest.raises(ManifestError, match="conflicting patient_id"):
        manifest_to_exams(rows)


def test_write_manifest_round_trip(tmp_path):
    rows = [
        ManifestRow("e1", "L-CC", tmp_path / "img" / "a.png", "p1", "NO", "train"),
        ManifestRow("e1", "R-CC", Path("/elsewhere/b.dcm"), None, "YES", None),
    ]
    out = tmp_path / "m.csv"
    write_manifest(out, rows)
    text = out.read_text().splitlines()
    assert text[0] == "exam_id,view,path,patient_id,horizontal_flip,split"
    assert text[1] == "e1,L-CC,img/a.png,p1,NO,train"  # relative to the manifest's folder
    back = read_manifest(out)
    assert [(r.exam_id, r.view, r.path, r.patient_id, r.horizontal_flip, r.split) for r in back] == [
        (r.exam_id, r.view, r.path, r.patient_id, r.horizontal_flip, r.split) for r in rows
    ]


def test_read_labels_types_and_extra_columns(tmp_path):
    path = write(
        tmp_path,
        "l.csv",
        "exam_id,left_benign,right_benign,left_malignant,right_malignant,birads,biopsied,density,split\n"
        "e1,0,1,0,1.0,2,1,DENSITY C,test\n"
        "e2,0,0,0,0,,,B,train\n",
    )
    labels = read_labels(path)
    assert list(labels) == ["e1", "e2"]
    assert labels["e1"] == {
        "left_benign": 0, "right_benign": 1, "left_malignant": 0, "right_malignant": 1,
        "birads": 2, "biopsied": 1, "density": "DENSITY C", "split": "test",
    }
    assert labels["e2"]["birads"] is None and labels["e2"]["biopsied"] is None and labels["e2"]["density"] == "B"
    assert all(type(labels["e1"][c]) is int for c in ("left_benign", "right_malignant", "birads"))
    write_labels(tmp_path / "l2.csv", labels)
    assert read_labels(tmp_path / "l2.csv") == labels


@pytest.mark.parametrize(
    "text,match",
    [
        ("exam_id,left_benign,right_benign,left_malignant\ne1,0,0,0\n",
         r"l\.csv: line 1: labels file is missing column\(s\) right_malignant"),
        ("exam_id,left_benign,right_benign,left_malignant,right_malignant\ne1,0,0,2,0\n",
         r"l\.csv: line 2: left_malignant must be 0 or 1, got '2'"),
        ("exam_id,left_benign,right_benign,left_malignant,right_malignant\ne1,0,0,yes,0\n",
         r"line 2: left_malignant must be 0 or 1, got 'yes'"),
        ("exam_id,left_benign,right_benign,left_malignant,right_malignant\ne1,0,0,,0\n",
         r"line 2: left_malignant must be 0 or 1, got ''"),
        ("exam_id,left_benign,right_benign,left_malignant,right_malignant,birads\ne1,0,0,0,0,4\n",
         r"line 2: birads must be one of 0, 1, 2"),
        ("exam_id,left_benign,right_benign,left_malignant,right_malignant\ne1,0,0,0,0\ne2,0,0,0,0\ne1,1,0,0,0\n",
         r"line 4: duplicate exam_id 'e1' \(first on line 2\)"),
        ("", r"l\.csv: empty labels file"),
    ],
)
def test_read_labels_errors(tmp_path, text, match):
    with pytest.raises(ManifestError, match=match):
        read_labels(write(tmp_path, "l.csv", text))


def test_mask_columns_become_per_image_paths_and_round_trip(tmp_path):
    from mammokit.data.manifest import manifest_to_exams, read_manifest, write_manifest

    f = tmp_path / "manifest.csv"
    f.write_text("exam_id,view,path,mask_malignant,mask_benign\n"
                 "e1,L-CC,a.png,masks/a_m.png,\n"
                 "e1,L-CC,a2.png,,\n"
                 "e1,R-MLO,b.png,,/abs/b_b.png\n"
                 "e2,L-CC,c.png,,\n")
    rows = read_manifest(f)
    assert rows[0].mask_malignant == tmp_path / "masks" / "a_m.png" and rows[0].mask_benign is None
    assert str(rows[2].mask_benign) == "/abs/b_b.png"
    e1, e2 = manifest_to_exams(rows)
    assert e1["mask_malignant"] == {"L-CC": [str(tmp_path / "masks" / "a_m.png"), None], "R-CC": [], "L-MLO": [],
                                    "R-MLO": [None]}
    assert e1["mask_benign"]["R-MLO"] == ["/abs/b_b.png"] and e1["mask_benign"]["L-CC"] == [None, None]
    assert "mask_malignant" not in e2  # no mask given for this exam
    out = tmp_path / "again.csv"
    write_manifest(out, rows)
    again = read_manifest(out)
    assert [(r.mask_malignant, r.mask_benign) for r in again] == [(r.mask_malignant, r.mask_benign) for r in rows]
    # Without mask columns the written manifest has none.
    write_manifest(out, read_manifest(f)[3:])
    assert out.read_text().splitlines()[0] == "exam_id,view,path,patient_id,horizontal_flip,split"
