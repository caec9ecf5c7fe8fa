"""Window sampling (reference augmentation) and the torch crop/resize."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mammokit.config import PRESETS
from mammokit.transforms.window import Window, crop_windows, sample_window, window_noise

TINY = PRESETS["tiny"]


# ------------------------------------------------------------------ deterministic windows


@pytest.mark.parametrize(
    "view, shape, center, size, expected",
    [
        # Inside the image: top = 200 - 335 // 2, left = 150 - 243 // 2.
        ("L-CC", (400, 300), (200, 150), (335, 243), (33, 368, 29, 272)),
        # Off the top and the right: shifted inside (top to 0, right edge to the image's 300).
        ("R-CC", (400, 300), (10, 280), (335, 243), (0, 335, 57, 300)),
        # CC shorter than the window: padded top and bottom equally (35 rows -> 17 above), and
        # narrower than it: padded on the right, window from x = 0.
        ("L-CC", (300, 200), (150, 100), (335, 243), (-17, 318, 0, 243)),
        # MLO shorter than the window: padded at the bottom only.
        ("L-MLO", (300, 200), (150, 100), (372, 218), (0, 372, 0, 218)),
    ],
)
def test_deterministic_window_is_hand_computed_box(view, shape, center, size, expected):
    win = sample_window(shape, view, center, size, rng=None, max_crop_noise=12, max_crop_size_noise=12)
    assert win.box == expected
    assert (win.height, win.width) == size


# Expected windows from the reference implementation's augmentation (run on a copy outside this
# repository) with numpy.random.RandomState(seed), three consecutive draws each, converted from its
# padded-image coordinates to image coordinates.
REFERENCE_DRAWS = [
    ("L-CC", (2900, 1800), (1500, 1000), (2677, 1942), 100, 100, 0,
     [(131, 2803, 38, 1994), (172, 2759, 111, 2023), (53, 2733, 26, 2068)]),
    ("R-MLO", (3200, 1900), (2000, 1100), (2974, 1748), 100, 100, 1,
     [(192, 3176, 37, 1784), (157, 3139, 28, 1786), (111, 3161, 70, 1828)]),
    ("L-CC", (300, 200), (160, 120), (335, 243), 12, 12, 2,
     [(-18, 315, 10, 251), (-25, 310, 3, 246), (-26, 309, 0, 243)]),
    ("L-MLO", (420, 260), (250, 150), (372, 218), 12, 12, 3,
     [(47, 419, 42, 260), (32, 410, 29, 252), (45, 417, 34, 254)]),
]


@pytest.mark.parametrize("view, shape, center, size, noise, size_noise, seed, expected", REFERENCE_DRAWS)
def test_random_windows_match_reference_draws(view, shape, center, size, noise, size_noise, seed, expected):
    rs = np.random.RandomState(seed)
    got = [
        sample_window(shape, view, center, size, rs, max_crop_noise=(noise, noise), max_crop_size_noise=size_noise).box
        for _ in range(3)
    ]
    assert got == expected


def test_random_windows_stay_within_documented_bounds():
    shape, center, size = (500, 400), (250, 200), TINY.cc_input_size  # room for all noise
    det = sample_window(shape, "L-CC", center, size)
    n, s = TINY.max_crop_noise, TINY.max_crop_size_noise
    s_h = int(np.round(s * size[1] / size[0]))
    rng = np.random.default_rng(0)
    wins = [sample_window(shape, "L-CC", center, size, rng, **window_noise(TINY)) for _ in range(300)]
    for w in wins:
        assert 0 <= w.top and w.bottom <= shape[0] and 0 <= w.left and w.right <= shape[1]
        assert abs(w.top - det.top) <= n + s and abs(w.bottom - det.bottom) <= n + s
        assert abs(w.left - det.left) <= n + s_h and abs(w.right - det.right) <= n + s_h
        assert size[0] - 2 * s <= w.height <= size[0] + 2 * s
        assert size[1] - 2 * s_h <= w.width <= size[1] + 2 * s_h
    # The noise is actually used, in both directions.
    tops = {w.top - det.top for w in wins}
    assert min(tops) < -n // 2 and max(tops) > n // 2


def test_window_noise_only_towards_the_side_with_room():
    # Window pinned to the top-left corner: the shift can only go down / right.
    rng = np.random.default_rng(1)
    for _ in range(100):
        w = sample_window((500, 400), "L-CC", (0, 0), (335, 243), rng, max_crop_noise=12, max_crop_size_noise=0)
        assert w.top >= 0 and w.left >= 0 and (w.height, w.width) == (335, 243)


def test_same_seed_same_windows_and_different_seed_differs():
    def draws(seed):
        rng = np.random.default_rng(seed)
        return [sample_window((400, 300), "R-MLO", (200, 150), TINY.mlo_input_size, rng, 12, 12).box for _ in range(5)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_zero_noise_with_rng_equals_deterministic_window():
    rng = np.random.default_rng(3)
    for center in [(200, 150), (10, 10), (390, 290)]:
        det = sample_window((400, 300), "L-CC", center, (335, 243))
        assert sample_window((400, 300), "L-CC", center, (335, 243), rng, 0, 0) == det


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown view"):
        sample_window((10, 10), "L-XX", (5, 5), (4, 4))
    with pytest.raises(ValueError, match="noise must be >= 0"):
        sample_window((10, 10), "L-CC", (5, 5), (4, 4), np.random.default_rng(0), -1, 0)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        crop_windows(torch.zeros(5, 5), [Window(0, 2, 0, 2)], (2, 2))


# ------------------------------------------------------------------ crop + resize


def _numpy_cv2_crop(image_chw: np.ndarray, win: Window, out_size) -> np.ndarray:
    """Independent computation: explicit zero padding, slicing, cv2 INTER_CUBIC (as the reference)."""
    C, H, W = image_chw.shape
    pt, pl = max(0, -win.top), max(0, -win.left)
    pb, pr = max(0, win.bottom - H), max(0, win.right - W)
    padded = np.pad(image_chw.transpose(1, 2, 0), ((pt, pb), (pl, pr), (0, 0)))
    crop = padded[win.top + pt : win.bottom + pt, win.left + pl : win.right + pl]
    if crop.shape[:2] != tuple(out_size):
        crop = cv2.resize(crop, (out_size[1], out_size[0]), interpolation=cv2.INTER_CUBIC)
        if crop.ndim == 2:
            crop = crop[:, :, None]
    return crop.transpose(2, 0, 1)


def test_crop_windows_matches_cv2_bicubic():
    rng = np.random.default_rng(0)
    image = (rng.random((3, 40, 30)) * 4000).astype(np.float32)
    out_size = (24, 17)
    windows = [
        Window(5, 29, 4, 21),  # exact size: plain copy
        Window(3, 33, 2, 24),  # larger: downsample
        Window(10, 30, 8, 22),  # smaller: upsample
        Window(-6, 20, -3, 16),  # past the top-left: zero padding
        Window(25, 47, 20, 36),  # past the bottom-right
    ]
    got = crop_windows(torch.from_numpy(image), windows, out_size).numpy()
    assert got.shape == (5, 3, 24, 17) and got.dtype == np.float32
    for i, win in enumerate(windows):
        expected = _numpy_cv2_crop(image, win, out_size)
        np.testing.assert_allclose(got[i], expected, rtol=0, atol=4000 * 1e-5)
    # The exact-size window is copied bit for bit.
    np.testing.assert_array_equal(got[0], image[:, 5:29, 4:21])


def test_crop_windows_batched_images():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((2, 1, 20, 20)).astype(np.float32))
    windows = [Window(0, 10, 0, 10), Window(5, 15, 5, 15)]
    got = crop_windows(images, windows, (10, 10))
    torch.testing.assert_close(got[0], images[0, :, 0:10, 0:10])
    torch.testing.assert_close(got[1], images[1, :, 5:15, 5:15])
    with pytest.raises(ValueError, match="2 images for 1 windows"):
        crop_windows(images, windows[:1], (10, 10))
