"""The in-memory exam pipeline gives what the work-folder pipeline (``mammokit run``) gives, and
its geometry puts heatmaps back on the original pixel grid."""

from __future__ import annotations

import csv
import math

import cv2
import numpy as np
import pytest

from mammokit.config import LABEL_COLUMNS, VIEWS
from mammokit.data.dicom import read_dicom_pixels
from mammokit.inference.exam import ExamInput, load_exam_models, predict_exams_in_memory, preset_pixel_mm
from tests.helpers.serve_fixtures import make_studies, make_tiny_models


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("exam")
    patch, breast = make_tiny_models(root / "models")
    studies = make_studies(root / "synth", n=2, seed=5)
    models = load_exam_models([breast], patch, device="cpu")
    return root, patch, breast, studies, models


def _input(exam_id, study, drop=(), pixel_mm=None):
    return ExamInput(exam_id, {v: read_dicom_pixels(p) for v, p in study.items() if v not in drop},
                     pixel_mm=pixel_mm or {})


@pytest.mark.parametrize("tta", [0, 2])
def test_same_as_the_work_folder_pipeline(setup, tta):
    from mammokit.data.heatmap_io import read_heatmap
    from mammokit.data.examlist import load_exams
    from mammokit.inference.run import run

    root, patch, breast, studies, models = setup
    manifest = root / f"manifest{tta}.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["exam_id", "view", "path"])
        for i, study in enumerate(studies):
            for view, path in study.items():
                w.writerow([f"e{i}", view, path])
    out = root / f"run{tta}"
    result = run(manifest, out, [breast], patch_model=patch, preset=models.preset, tta=tta, device="cpu")
    expected = dict(zip(result.predictions.exam_ids, result.predictions.probabilities))
    mine = predict_exams_in_memory([_input(f"e{i}", s) for i, s in enumerate(studies)], models, tta=tta)
    exams, _ = load_exams(out / "exams.json")
    for r, exam in zip(mine, exams):
        # The work folder stores heatmaps as 16-bit PNGs: the only difference (1/65535 per pixel).
        np.testing.assert_allclose([r.probabilities[c] for c in LABEL_COLUMNS], expected[r.exam_id], atol=2e-4)
        assert r.views_used == list(VIEWS) and not r.rejected
        for view in VIEWS:
            stored = read_heatmap(out / exam["heatmap_malignant"][view][0])
            np.testing.assert_allclose(r.heatmaps[view][0], stored, atol=1 / 65535)
            top, bottom, left, right = exam["window_location"][view][0]
            assert r.geometry[view].window_location == (top, bottom, left, right)


def test_heatmaps_back_on_the_original_grid(setup):
    _, _, _, studies, models = setup
    (r,) = predict_exams_in_memory([_input("g", studies[0])], models, tta=0)
    for view, path in studies[0].items():
        image = read_dicom_pixels(path)
        full = r.heatmap_on_original(view)
        top, bottom, left, right = r.geometry[view].window_location
        assert full.shape == (2, *image.shape)
        np.testing.assert_array_equal(full[:, top:bottom, left:right], r.heatmaps[view])
        outside = full.copy()
        outside[:, top:bottom, left:right] = 0
        assert not outside.any()
        # the crop holds the breast: nearly all non-background pixels (not the burned-in label)
        inside = np.count_nonzero(image[top:bottom, left:right])
        assert inside >= 0.9 * np.count_nonzero(image)


def test_resize_to_the_model_resolution(setup):
    """An image at twice the model's resolution (each pixel repeated 2 x 2, spacing halved) is
    brought back by the resize to exactly the original pixels: same probabilities; heatmaps come
    back on the large grid."""
    _, _, _, studies, models = setup
    study = studies[1]
    (ref,) = predict_exams_in_memory([_input("r", study)], models, tta=0)
    half = preset_pixel_mm(models.preset) / 2
    big = {v: np.repeat(np.repeat(read_dicom_pixels(p), 2, 0), 2, 1) for v, p in study.items()}
    (res,) = predict_exams_in_memory([ExamInput("r", big, {v: half for v in big})], models, tta=0)
    np.testing.assert_allclose(list(res.probabilities.values()), list(ref.probabilities.values()), atol=1e-6)
    for view in VIEWS:
        g = res.geometry[view]
        assert g.resized and g.shape == big[view].shape and g.resized_shape == ref.geometry[view].shape
        full = res.heatmap_on_original(view)
        assert full.shape == (2, *big[view].shape)
        h, w = big[view].shape
        small = cv2.resize(full[0], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        t, b, l, r = ref.geometry[view].window_location  # inside the crop (its edges blend with 0)
        np.testing.assert_allclose(small[t + 1:b - 1, l + 1:r - 1], ref.heatmap_on_original(view)[0][t + 1:b - 1, l + 1:r - 1],
                                   atol=0.02)


def test_missing_and_rejected_views(setup):
    _, _, _, studies, models = setup
    s = studies[0]
    one_right = _input("m1", s, drop=("R-MLO",))
    no_right = _input("m2", s, drop=("R-MLO", "R-CC"))
    blank = _input("m3", s)
    blank.images["L-CC"] = np.zeros_like(blank.images["L-CC"])  # nothing to crop
    r1, r2, r3 = predict_exams_in_memory([one_right, no_right, blank], models, tta=0)
    assert r1.views_used == ["L-CC", "R-CC", "L-MLO"]
    assert all(math.isfinite(p) for p in r1.probabilities.values())
    assert r2.views_used == ["L-CC", "L-MLO"]
    assert math.isnan(r2.probabilities["right_malignant"]) and math.isfinite(r2.probabilities["left_malignant"])
    assert "L-CC" in r3.rejected and "crop failed" in r3.rejected["L-CC"]
    assert r3.views_used == ["R-CC", "L-MLO", "R-MLO"]
    # the same exam alone gives the same numbers as in a batch with others
    (alone,) = predict_exams_in_memory([one_right], models, tta=0)
    np.testing.assert_allclose(list(alone.probabilities.values()), list(r1.probabilities.values()), atol=1e-6)
