"""Loading an exam's views: flips, heatmap channels, cache, windows + standardisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mammokit.config import PRESETS
from mammokit.data.views import (
    ImageCache,
    MissingHeatmapsError,
    collate,
    load_exam_views,
    load_view,
    make_model_inputs,
)
from mammokit.errors import InputFileError
from mammokit.transforms.window import crop_windows, sample_window, window_noise
from mammokit.views import needs_flip
from tests.helpers.workdir import make_workdir

TINY = PRESETS["tiny"]


def _png(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32)


def test_load_view_flips_right_views_and_yes_inverts(tmp_path):
    wd, exams = make_workdir(tmp_path, exam_ids=("a", "b"), horizontal_flip={"b": "YES"})
    for exam in exams:
        for view in ("L-CC", "R-MLO"):
            arr = load_view(wd, exam, view)
            raw = _png(wd / "cropped" / f"{exam[view][0]}.png")
            assert arr.shape == (1, *raw.shape) and arr.dtype == np.float32
            expected = raw[:, ::-1] if needs_flip(view, exam["horizontal_flip"]) else raw
            np.testing.assert_array_equal(arr[0], expected)
            # In the model's frame the bright blob (chest wall) is on the left.
            assert arr[0, :, : arr.shape[2] // 4].mean() > arr[0, :, -arr.shape[2] // 4 :].mean()


def test_load_view_heatmap_channels_and_flip(tmp_path):
    wd, exams = make_workdir(tmp_path, exam_ids=("a",), heatmaps=True)
    exam = exams[0]
    arr = load_view(wd, exam, "R-CC", heatmaps=True)
    raw = _png(wd / "cropped" / "a_R_CC.png")
    benign = _png(wd / exam["heatmap_benign"]["R-CC"][0]) / 65535
    malignant = _png(wd / exam["heatmap_malignant"]["R-CC"][0]) / 65535
    assert arr.shape == (3, *raw.shape)
    np.testing.assert_array_equal(arr[0], raw[:, ::-1])
    np.testing.assert_allclose(arr[1], benign[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(arr[2], malignant[:, ::-1], atol=1e-6)


def test_missing_heatmaps_clear_error(tmp_path):
    wd, exams = make_workdir(tmp_path, exam_ids=("x7",))
    with pytest.raises(MissingHeatmapsError, match=r"exam x7 view L-CC.*mammokit heatmaps"):
        load_view(wd, exams[0], "L-CC", heatmaps=True)
    wd2, exams2 = make_workdir(tmp_path / "w2", exam_ids=("x8",), heatmaps=True)
    (wd2 / exams2[0]["heatmap_malignant"]["R-MLO"][0]).unlink()
    with pytest.raises(MissingHeatmapsError, match=r"x8_R_MLO\.png.*exam x8 view R-MLO"):
        load_view(wd2, exams2[0], "R-MLO", heatmaps=True)


def test_cache_hits_and_is_bytes_bounded(tmp_path):
    wd, exams = make_workdir(tmp_path, exam_ids=("a",))
    one = load_view(wd, exams[0], "L-CC").nbytes
    cache = ImageCache(max_bytes=int(one * 2.5))
    a1 = load_view(wd, exams[0], "L-CC", cache=cache)
    a2 = load_view(wd, exams[0], "L-CC", cache=cache)
    assert a1 is a2 and cache.hits == 1 and cache.misses == 1 and not a1.flags.writeable
    load_view(wd, exams[0], "R-CC", cache=cache)
    load_view(wd, exams[0], "L-MLO", cache=cache)  # MLO is larger: something is evicted
    assert cache.nbytes <= cache.max_bytes
    assert load_view(wd, exams[0], "L-CC", cache=cache) is not a1  # L-CC was the oldest


def _standardise(x):
    return (x - x.mean()) / max(x.std(), 1e-5)


def test_deterministic_inputs_equal_numpy_computation(tmp_path):
    wd, exams = make_workdir(tmp_path, exam_ids=("a",), heatmaps=True)
    exam = exams[0]
    views = {v: load_view(wd, exam, v, heatmaps=True) for v in ("L-CC", "R-MLO")}
    got = make_model_inputs(views, exam, TINY, rng=None, n_draws=2, augment=False)
    assert set(got) == {"L-CC", "R-MLO"}
    # L-CC: 350 x 230 image, window 335 x 243 -> padded right (x from 0 to 243), rows centred on
    # best_center and shifted inside the image.
    cy, cx = exam["best_center"]["L-CC"][0]
    top = min(max(cy - 335 // 2, 0), 350 - 335)
    img = np.pad(views["L-CC"], ((0, 0), (0, 0), (0, 13)))[:, top : top + 335, 0:243]
    assert got["L-CC"].shape == (2, 3, 335, 243)
    for d in range(2):
        np.testing.assert_allclose(got["L-CC"][d, 0].numpy(), _standardise(img[0]), atol=1e-4)
        np.testing.assert_array_equal(got["L-CC"][d, 1:].numpy(), img[1:])  # heatmaps untouched
    # R-MLO: 400 x 240 image, window 372 x 218, no padding.
    cy, cx = exam["best_center"]["R-MLO"][0]
    top, left = min(max(cy - 186, 0), 400 - 372), min(max(cx - 109, 0), 240 - 218)
    img = views["R-MLO"][:, top : top + 372, left : left + 218]
    np.testing.assert_allclose(got["R-MLO"][0, 0].numpy(), _standardise(img[0]), atol=1e-4)


def test_random_inputs_seeded_and_choose_among_images(tmp_path):
    wd, exams = make_workdir(tmp_path, exam_ids=("a",), extra_images={"a": {"L-CC": 3}})
    exam = exams[0]
    views = load_exam_views(wd, exam)
    assert len(views["L-CC"]) == 3 and len(views["R-CC"]) == 1

    def run(seed):
        return make_model_inputs(views, exam, TINY, np.random.default_rng(seed), n_draws=6, augment=True)

    a, b, c = run(0), run(0), run(1)
    for v in views:
        assert a[v].shape == (6, 1, *TINY.input_size(v))
        torch.testing.assert_close(a[v], b[v], rtol=0, atol=0)
        assert not torch.equal(a[v], c[v])
        # Every window is standardised.
        flat = a[v][:, 0].reshape(6, -1)
        torch.testing.assert_close(flat.mean(1), torch.zeros(6), atol=1e-4, rtol=0)
        torch.testing.assert_close(flat.std(1, correction=0), torch.ones(6), atol=1e-4, rtol=0)
    # Replay the reference's draw order (draw-major, views in VIEWS order, per view the image
    # index then the window's draws) and cut each window from the image picked.
    rng = np.random.default_rng(0)
    picks = []
    for d in range(6):
        for v in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            i = int(rng.integers(0, len(views[v])))
            img = views[v][i]
            win = sample_window(img.shape[1:], v, exam["best_center"][v][i], TINY.input_size(v), rng, **window_noise(TINY))
            x = crop_windows(torch.from_numpy(img), [win], TINY.input_size(v))[0, 0].numpy()
            np.testing.assert_allclose(a[v][d, 0].numpy(), _standardise(x), atol=1e-4)
            if v == "L-CC":
                picks.append(i)
    assert len(set(picks)) > 1
    assert make_model_inputs(views, exam, TINY, None, 1, augment=False)["L-CC"].shape[0] == 1


def test_make_model_inputs_errors(tmp_path):
    wd, exams = make_workdir(tmp_path, exam_ids=("a",))
    views = {"L-CC": load_view(wd, exams[0], "L-CC")}
    with pytest.raises(ValueError, match="needs an rng"):
        make_model_inputs(views, exams[0], TINY, None, 2, augment=True)
    with pytest.raises(InputFileError, match="no best_center.*mammokit preprocess"):
        make_model_inputs(views, {"exam_id": "a"}, TINY, None, 1, augment=False)


def test_collate_concatenates_exams():
    a = {"L-CC": torch.zeros(2, 1, 4, 3), "R-CC": torch.zeros(2, 1, 4, 3)}
    b = {"L-CC": torch.ones(3, 1, 4, 3), "R-CC": torch.ones(3, 1, 4, 3)}
    out = collate([a, b])
    assert out["L-CC"].shape == (5, 1, 4, 3) and out["L-CC"][2:].eq(1).all()
