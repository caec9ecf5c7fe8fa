"""End-to-end checks of ``mammokit.synth.generate`` on tiny data sets (scale 1/8)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mammokit.config import LABEL_COLUMNS, VIEWS
from mammokit.synth import SynthConfig, generate, plan_dataset, render_view

SCALE = 0.125


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    generate(out, n_exams=6, seed=11, scale=SCALE, cancer_rate=0.5, benign_rate=0.5, dicom=True)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_any_worker_count(dataset, tmp_path):
    again = tmp_path / "b"
    generate(again, n_exams=6, seed=11, scale=SCALE, cancer_rate=0.5, benign_rate=0.5, dicom=True, workers=2)
    a, b = _files(dataset), _files(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    other = tmp_path / "c"
    generate(other, n_exams=2, seed=12, scale=SCALE, cancer_rate=0.5, benign_rate=0.5)
    stem = "images/S00000_L_CC.png"
    assert (other / stem).read_bytes() != a[stem]


def test_files_and_formats(dataset):
    manifest = _read_csv(dataset / "manifest.csv")
    labels = _read_csv(dataset / "labels.csv")
    assert list(manifest[0]) == ["exam_id", "view", "path", "patient_id", "horizontal_flip", "split"]
    assert list(labels[0])[:5] == ["exam_id", *LABEL_COLUMNS]
    assert {"birads", "biopsied", "density", "split", "finding_types"} <= set(labels[0])
    assert len(manifest) == 4 * len(labels) == 24
    h, w = round(3328 * SCALE), round(2560 * SCALE)
    for row in manifest:
        assert row["view"] in VIEWS and row["horizontal_flip"] == "NO" and row["split"] in ("train", "val", "test")
        img = cv2.imread(str(dataset / row["path"]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint16 and img.shape == (h, w)
        # 12-bit values rescaled by 65535/4095: every value is round(k * 65535 / 4095).
        values = np.unique(img)
        k = np.rint(values.astype(np.float64) * 4095 / 65535)
        assert np.array_equal(np.rint(k * 65535 / 4095), values)
        for cls in ("malignant", "benign"):
            m = cv2.imread(str(dataset / "masks" / (Path(row["path"]).stem + f"_{cls}.png")), cv2.IMREAD_UNCHANGED)
            assert m.dtype == np.uint8 and m.shape == (h, w) and set(np.unique(m)) <= {0, 255}
    for row in labels:
        assert all(row[c] in ("0", "1") for c in LABEL_COLUMNS)
        assert row["birads"] in ("0", "1", "2") and row["density"] in "ABCD"
        # biopsied <=> any finding, except false-positive biopsies of finding-free exams
        if row["finding_types"]:
            assert row["biopsied"] == "1"
    # one split per patient
    split_of = {}
    for row in manifest:
        assert split_of.setdefault(row["patient_id"], row["split"]) == row["split"]
    synth = json.loads((dataset / "synth.json").read_text())
    assert synth["seed"] == 11 and synth["config"]["scale"] == SCALE


def test_labels_match_findings_and_masks(dataset):
    labels = {r["exam_id"]: r for r in _read_csv(dataset / "labels.csv")}
    findings = json.loads((dataset / "findings.json").read_text())["exams"]
    seen_visible = 0
    for exam in findings:
        row = labels[exam["exam_id"]]
        for side, name in (("L", "left"), ("R", "right")):
            for cls in ("malignant", "benign"):
                expected = any(f["side"] == side and f["class"] == cls for f in exam["findings"])
                assert row[f"{name}_{cls}"] == str(int(expected))
        for f in exam["findings"]:
            side = f["side"]
            assert set(f["views"]) == {f"{side}-CC", f"{side}-MLO"}  # both views of its breast
            for view, entry in f["views"].items():
                stem = f"{exam['exam_id']}_{view.replace('-', '_')}"
                mask = cv2.imread(str(dataset / "masks" / f"{stem}_{f['class']}.png"), cv2.IMREAD_UNCHANGED)
                if f["occult"]:
                    assert entry["pixels"] == 0
                else:
                    assert entry["pixels"] > 0 and mask.any()
                    seen_visible += 1
                    r, c = (int(round(v)) for v in entry["center"])
                    ys, xs = np.nonzero(mask)
                    # the mask lies around the recorded centre
                    assert np.min(np.hypot(ys - r, xs - c)) < 60 * 1.0
    assert seen_visible > 0


def test_dicom_round_trip(dataset):
    import pydicom

    from mammokit.synth.dicom_writer import read_back

    kinds = set()
    for path in sorted((dataset / "dicom").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        view = path.stem
        assert ds.Modality == "MG" and ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.ImageLaterality == view[0] and ds.ViewPosition == view.split("-")[1]
        assert ds.PatientID.startswith("P") and ds.StudyInstanceUID
        png = cv2.imread(str(dataset / "images" / f"{path.parent.name}_{view.replace('-', '_')}.png"), -1)
        twelve = np.rint(png.astype(np.float64) * 4095 / 65535).astype(np.uint16)
        assert np.array_equal(read_back(path), twelve)
        kinds.add((ds.PhotometricInterpretation, str(ds.file_meta.TransferSyntaxUID)))
    uids = {pydicom.dcmread(p).StudyInstanceUID for p in (dataset / "dicom").rglob("L-CC.dcm")}
    assert len(uids) == 6


def test_background_zero_and_label_outside_breast():
    cfg = SynthConfig(scale=SCALE, cancer_rate=1, benign_rate=1)
    for plan in plan_dataset(3, 5, cfg):
        for view in VIEWS:
            r = render_view(plan, view, cfg)
            assert (r.image[~(r.breast | r.label)] == 0).all()
            assert (r.image[r.breast] > 0).all()
            assert r.label.any() and not (r.label & r.breast).any()
            # far enough that the crop's erosion / dilation cannot join label and breast
            dist = cv2.distanceTransform((~r.breast).astype(np.uint8), cv2.DIST_L2, 5)
            assert dist[r.label].min() > 2 * 100 * SCALE
            # chest wall edge: the breast touches the left edge on L views, the right on R views
            col = 0 if view.startswith("L") else -1
            assert r.breast[:, col].any() and not r.breast[:, -1 - col].any()
            assert not (r.malignant | r.benign)[~r.breast].any()


def test_crop_discards_label():
    from mammokit.config import preset_for_scale
    from mammokit.preprocess.crop import crop_mammogram

    cfg = SynthConfig(scale=SCALE, cancer_rate=0.5, benign_rate=0.5)
    preset = preset_for_scale(SCALE)
    for plan in plan_dataset(4, 21, cfg):
        for view in VIEWS:
            r = render_view(plan, view, cfg)
            res = crop_mammogram(r.image, view, horizontal_flip="NO", preset=preset)
            top, bottom, left, right = res.window_location
            assert res.cropped.shape == (bottom - top, right - left)
            window = np.zeros_like(r.breast)
            window[top:bottom, left:right] = True
            assert not (window & r.label).any(), f"{plan.exam_id} {view}: label inside the crop"
            assert r.breast[window].sum() == r.breast.sum(), f"{plan.exam_id} {view}: breast cut"


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        SynthConfig(scale=1.5)
    with pytest.raises(ValueError, match="cancer-rate"):
        SynthConfig(cancer_rate=2)
    with pytest.raises(ValueError, match="splits"):
        SynthConfig(splits=(0.5, 0.2, 0.2))


def test_cli(tmp_path, capsys):
    from mammokit.cli import main

    assert main(["-q", "synth", str(tmp_path / "o"), "--exams", "1", "--seed", "2", "--scale", "0.125"]) == 0
    assert len(list((tmp_path / "o" / "images").glob("*.png"))) == 4
    assert main(["-q", "synth", str(tmp_path / "p"), "--exams", "1", "--scale", "2"]) == 2
    assert "scale must be in (0, 1]" in capsys.readouterr().err
