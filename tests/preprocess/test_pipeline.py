"""`mammokit preprocess` end to end on a tiny manifest: outputs, failures, resume, workers, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mammokit.data.examlist import load_exams
from mammokit.data.images import read_image, write_png16
from mammokit.preprocess.pipeline import (
    PreprocessError,
    preprocess,
    preprocess_exams,
    preprocess_image,
)

H, W = 200, 150
# The largest preset whose windows fit these 200 x 150 images (CC 161 x 117, MLO 178 x 105).
PRESET = "scale:0.06"


def breast(view: str, seed: int) -> np.ndarray:
    """A textured half-ellipse breast on a zero background (chest wall per view, flip NO) + label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    a, b, cy = 70 + seed, 75 - seed, 100 + 3 * seed
    inside = (xx / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    img = np.where(inside, rng.integers(1000, 60000, (H, W)), 0).astype(np.uint16)
    img[5:20, W - 30 : W - 8] = 40000  # burned-in label
    return img[:, ::-1].copy() if view.startswith("R") else img


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    rows = ["exam_id,view,path,horizontal_flip"]
    for i, view in enumerate(("L-CC", "R-CC", "L-MLO", "R-MLO")):
        name = f"A_{view}.png"
        write_png16(root / "img" / name, breast(view, i))
        rows.append(f"A,{view},img/{name},NO")
    write_png16(root / "img" / "B_L-CC.png", breast("L-CC", 5))
    (root / "img" / "B_R-CC.png").write_text("not an image")
    write_png16(root / "img" / "B_L-MLO.png", np.zeros((H, W), np.uint16))
    rows += ["B,L-CC,img/B_L-CC.png,NO", "B,R-CC,img/B_R-CC.png,NO", "B,L-MLO,img/B_L-MLO.png,NO"]
    (root / "img" / "C.png").write_text("")
    rows.append("C,R-MLO,img/C.png,NO")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _read_failures(workdir: Path) -> list[dict]:
    with open(workdir / "preprocess_failures.csv", newline="") as f:
        return list(csv.DictReader(f))


def _snapshot(workdir: Path) -> dict[str, bytes]:
    files = sorted((workdir / "cropped").glob("*.png")) + [workdir / "exams.json", workdir / "preprocess_failures.csv"]
    return {p.relative_to(workdir).as_posix(): p.read_bytes() for p in files}


def test_preprocess_end_to_end(dataset, tmp_path):
    work = tmp_path / "work"
    report = preprocess(dataset / "manifest.csv", work, preset=PRESET)
    assert (report.n_images, report.n_processed, report.n_reused, report.n_failed) == (8, 5, 0, 3)

    failures = _read_failures(work)
    assert [(f["exam_id"], f["view"]) for f in failures] == [("B", "R-CC"), ("B", "L-MLO"), ("C", "R-MLO")]
    assert failures[0]["reason"].startswith("unreadable image:") and "B_R-CC.png" in failures[0]["reason"]
    assert failures[1]["reason"].startswith("crop failed:") and "all background" in failures[1]["reason"]
    assert failures[2]["path"].endswith("C.png")

    exams, meta = load_exams(work / "exams.json")
    assert meta["preset"] == "scale0.06" and meta["image_dir"] == "cropped" and meta["preset_config"]["erosion_iterations"] == 6
    a, b, c = exams
    assert [a[v] for v in ("L-CC", "R-CC", "L-MLO", "R-MLO")] == [["A_L_CC"], ["A_R_CC"], ["A_L_MLO"], ["A_R_MLO"]]
    # B keeps its good image; the failed views are empty with aligned per-image fields.
    assert (b["L-CC"], b["R-CC"], b["L-MLO"]) == (["B_L_CC"], [], [])
    assert b["best_center"]["R-CC"] == [] and b["source_paths"]["L-CC"][0].endswith("B_L-CC.png")
    assert all(c[v] == [] for v in ("L-CC", "R-CC", "L-MLO", "R-MLO"))

    # Each written crop and its geometry equal the per-image function's output.
    for i, view in enumerate(("L-CC", "R-CC", "L-MLO", "R-MLO")):
        name = f"A_{view.replace('-', '_')}"
        expected = preprocess_image(breast(view, i), view, "NO", PRESET)
        np.testing.assert_array_equal(read_image(work / "cropped" / f"{name}.png"), expected.cropped)
        for key, value in expected.geometry.items():
            assert a[key][view] == [value]
    assert a["distance_from_starting_side"]["L-CC"] == [0]
    assert not (work / "cropped" / "B_R_CC.png").exists()


def test_resume_reuses_done_images(dataset, tmp_path):
    work = tmp_path / "work"
    preprocess(dataset / "manifest.csv", work, preset=PRESET)
    before = _snapshot(work)
    again = preprocess(dataset / "manifest.csv", work, preset=PRESET)
    assert (again.n_processed, again.n_reused, again.n_failed) == (0, 5, 3)  # failures are retried
    assert _snapshot(work) == before

    # A changed source is recomputed; so is everything when the settings change.
    write_png16(dataset / "img" / "A_L-CC.png", breast("L-CC", 7))
    changed = preprocess(dataset / "manifest.csv", work, preset=PRESET)
    assert (changed.n_processed, changed.n_reused) == (1, 4)
    exams, _ = load_exams(work / "exams.json")
    assert exams[0]["window_location"]["L-CC"] == [preprocess_image(breast("L-CC", 7), "L-CC", "NO", PRESET).geometry["window_location"]]
    other = preprocess(dataset / "manifest.csv", work, preset=PRESET, background_threshold=1)
    assert (other.n_processed, other.n_reused) == (5, 0)
    fresh = preprocess(dataset / "manifest.csv", work, preset=PRESET, background_threshold=1, resume=False)
    assert fresh.n_reused == 0


def test_workers_give_identical_output(dataset, tmp_path):
    one = preprocess(dataset / "manifest.csv", tmp_path / "w1", preset=PRESET, workers=1)
    two = preprocess(dataset / "manifest.csv", tmp_path / "w2", preset=PRESET, workers=2)
    assert one.failures == two.failures
    assert _snapshot(tmp_path / "w1") == _snapshot(tmp_path / "w2")


def test_strict_stops_at_first_failure(dataset, tmp_path):
    with pytest.raises(PreprocessError, match=r"B_R-CC\.png: unreadable image"):
        preprocess(dataset / "manifest.csv", tmp_path / "work", preset=PRESET, strict=True)


def test_preprocess_exams_validates_records(tmp_path):
    exam = {"exam_id": "x", "horizontal_flip": "NO", "L-CC": ["x_L_CC"], "source_paths": {"L-CC": []}}
    with pytest.raises(ValueError, match=r"source_paths\[L-CC\] has 0 paths for 1 images"):
        preprocess_exams([exam], tmp_path, preset=PRESET)
    exam = {"exam_id": "x", "L-CC": ["../evil"], "source_paths": {"L-CC": ["a.png"]}}
    with pytest.raises(ValueError, match="not a safe relative file name"):
        preprocess_exams([exam], tmp_path, preset=PRESET)
    with pytest.raises(ValueError, match="workers"):
        preprocess_exams([], tmp_path, workers=0)


def test_cli(dataset, tmp_path, capsys):
    from mammokit.cli import main

    work = tmp_path / "work"
    code = main(["preprocess", str(dataset / "manifest.csv"), "--out", str(work), "--preset", PRESET, "--workers", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "8 images: 5 cropped, 0 reused, 3 failed" in out
    assert json.loads((work / "exams.json").read_text())["preset"] == "scale0.06"
    assert main(["preprocess", str(dataset / "manifest.csv"), "--out", str(work), "--preset", PRESET, "--strict", "--no-resume"]) == 2
    assert "B_R-CC.png" in capsys.readouterr().err
    assert main(["preprocess", str(tmp_path / "missing.csv"), "--out", str(work)]) == 2


def test_mask_paths_stay_aligned_with_the_kept_images(dataset, tmp_path):
    text = (dataset / "manifest.csv").read_text().splitlines()
    rows = [text[0] + ",mask_malignant"] + [line + (f",m/{i}.png" if line.startswith("B,") else ",") for i, line in enumerate(text[1:])]
    (dataset / "manifest.csv").write_text("\n".join(rows) + "\n")
    preprocess(dataset / "manifest.csv", tmp_path / "work", preset=PRESET)
    exams, _ = load_exams(tmp_path / "work" / "exams.json")
    b = next(e for e in exams if e["exam_id"] == "B")
    # B_R-CC (not an image) and B_L-MLO (all background) failed: only B_L-CC and its mask remain.
    assert b["L-CC"] == ["B_L_CC"] and b["R-CC"] == [] and b["L-MLO"] == []
    assert b["mask_malignant"] == {"L-CC": [str(dataset / "m" / "4.png")], "R-CC": [], "L-MLO": [], "R-MLO": []}
    assert b["source_shape"]["L-CC"] == [[H, W]]
