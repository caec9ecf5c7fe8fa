"""SR and SEG objects: valid for dciodvfy, and they read back with the values they were given."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pydicom
import pytest

from mammokit.data.dicom import read_dicom_pixels
from mammokit.inference.exam import ExamInput, predict_exams_in_memory, probabilities_by_breast
from mammokit.serve.results import ModelDescription, build_seg, build_sr, read_seg_maps, read_sr_probabilities
from tests.serve.conftest import need

MODEL = ModelDescription(name="mammokit view_wise", checkpoints=(("breast", "a" * 64), ("patch", "b" * 64)),
                         settings=(("tta", "2"),))


def dciodvfy_errors(path) -> list[str]:
    exe = need("dciodvfy")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def predicted(studies, loaded_models):
    study = studies[0]
    (r,) = predict_exams_in_memory([ExamInput("x", {v: read_dicom_pixels(p) for v, p in study.items()})],
                                   loaded_models, tta=0)
    return study, r


def test_sr_is_valid_and_reads_back(tmp_path, predicted):
    study, r = predicted
    views = {v: pydicom.dcmread(p) for v, p in study.items()}
    probs = probabilities_by_breast(r)
    sr = build_sr(views, probs, MODEL, rejected=[("L-CC DX SOP 1.2.3", "not MG (modality DX)")])
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    back = read_sr_probabilities(path)
    for side in ("L", "R"):
        for kind in ("malignant", "benign"):
            assert back[side][kind] == pytest.approx(probs[side][kind], abs=1e-12)
    ds = pydicom.dcmread(path)
    assert ds.StudyInstanceUID == views["L-CC"].StudyInstanceUID  # same study as the input
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and ds.VerificationFlag == "UNVERIFIED"
    texts = [str(v.value) for v in _walk(ds)]
    assert any("not MG (modality DX)" in t for t in texts)
    assert any("a" * 64 in t for t in texts) and any(t == "99MAMMOKIT" for t in texts)
    # a second version references the first
    sr2 = build_sr(views, probs, MODEL, previous=[pydicom.dcmread(path)], instance_number=2)
    pre = sr2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pre.ReferencedSOPInstanceUID == ds.SOPInstanceUID


def test_sr_without_a_breast(tmp_path, predicted):
    study, r = predicted
    views = {v: pydicom.dcmread(p) for v, p in study.items() if v.startswith("L")}
    sr = build_sr(views, {"L": {"malignant": 0.2, "benign": 0.3}, "R": {"malignant": math.nan, "benign": math.nan}},
                  MODEL)
    path = tmp_path / "left.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    assert read_sr_probabilities(path) == {"L": {"malignant": 0.2, "benign": 0.3}}


def test_seg_is_valid_and_pixel_aligned(tmp_path, predicted):
    study, r = predicted
    for view in ("L-CC", "R-MLO"):
        ds = pydicom.dcmread(study[view])
        maps = r.heatmap_on_original(view)
        seg = build_seg(ds, maps, MODEL)
        path = tmp_path / f"seg_{view}.dcm"
        seg.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []
        back = read_seg_maps(path)
        assert set(back) == {"malignant", "benign"}
        assert back["malignant"].shape == (ds.Rows, ds.Columns)
        np.testing.assert_allclose(back["malignant"], maps[0], atol=0.5 / 255 + 1e-6)
        np.testing.assert_allclose(back["benign"], maps[1], atol=0.5 / 255 + 1e-6)
        out = pydicom.dcmread(path)
        src = out.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert src.ReferencedSOPInstanceUID == ds.SOPInstanceUID
        assert out.SegmentationType == "FRACTIONAL" and out.StudyInstanceUID == ds.StudyInstanceUID


def _walk(ds):
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)
        else:
            yield elem
