"""Optimal window centre: hand-computed cases and a brute-force check of the CC search."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mammokit.config import PRESETS
from mammokit.preprocess.center import optimal_center

WIN = (20, 10)  # (H, W) for CC and MLO in these tests
PRESET = dataclasses.replace(PRESETS["tiny"], name="test", cc_input_size=WIN, mlo_input_size=WIN)


def test_cc_best_window_nearest_image_centre():
    img = np.zeros((40, 30), np.uint16)
    img[25:35, 5:25] = 1000  # 10 rows of breast
    # x pinned: rightmost_x - W//2 - 1 = 24 - 5 - 1 = 18. Candidates y in [10, 30]; a window
    # [y-10, y+10) holds all 10 rows for y in [25, 35] -> 25..30 tie; nearest to 40//2 = 20: 25.
    assert optimal_center(img, "L-CC", "NO", ((25, 34), 24), (34, (5, 24)), PRESET) == (25, 18)


def test_cc_right_breast_is_flipped_first():
    flipped_frame = np.zeros((40, 30), np.uint16)
    flipped_frame[25:35, 5:25] = 1000
    original = flipped_frame[:, ::-1]
    assert optimal_center(original, "R-CC", "NO", ((25, 34), 24), (34, (5, 24)), PRESET) == (25, 18)
    assert optimal_center(original, "L-CC", "YES", ((25, 34), 24), (34, (5, 24)), PRESET) == (25, 18)
    # Unflipped (L-CC, NO), the same array puts the breast in the other rows of the band.
    other = np.zeros((40, 30), np.uint16)
    other[0:10, 20:30] = 1000  # flipped frame: x 0..9, outside the band [13, 23)
    other[12:22, 0:10] = 1000  # flipped frame: x 20..29 -> 3 columns in the band
    # R-CC: rows 12..21 in the band; windows [y-10, y+10) holding them: y in 12..22 -> nearest 20.
    # L-CC (no flip): rows 0..9 in the band (x 20..22); only y = 10 holds them.
    assert optimal_center(other, "R-CC", "NO", ((12, 21), 24), (21, (20, 29)), PRESET) == (20, 18)
    assert optimal_center(other, "L-CC", "NO", ((12, 21), 24), (21, (20, 29)), PRESET) == (10, 18)


def test_cc_image_shorter_than_window_uses_image_centre():
    img = np.ones((15, 30), np.uint16)
    assert optimal_center(img, "L-CC", "NO", ((0, 14), 29), (14, (0, 29)), PRESET) == (7, 29 - 5 - 1)


def test_mlo_bottom_right_rule():
    img = np.zeros((50, 30), np.uint16)
    img[5:40, 0:20] = 1000
    img[5:26, 20:30] = 1000  # in the rightmost 10 columns the breast ends at row 25
    # y = min(last non-empty row of the rightmost W columns = 25, bottommost_y = 39) - 10 - 1 = 14
    assert optimal_center(img, "L-MLO", "NO", ((10, 20), 29), (39, (0, 19)), PRESET) == (14, 29 - 5 - 1)
    # Rightmost columns empty: the recorded bottommost row is used.
    img[:, 20:] = 0
    assert optimal_center(img, "L-MLO", "NO", ((10, 20), 19), (39, (0, 19)), PRESET) == (39 - 11, 19 - 6)


def _brute_force_cc(flipped: np.ndarray, rightmost_x: int, win: tuple[int, int]) -> tuple[int, int]:
    """The documented rule, written out window by window."""
    h, w = flipped.shape
    wh, ww = win
    cx = rightmost_x - ww // 2 - 1
    lo, hi = wh // 2, h - (wh - wh // 2)
    ys = list(range(lo, hi + 1)) if lo < hi else [h // 2]

    def span(c, n, size):
        start = c - size // 2
        shift = max(-start, 0)
        return max(start, 0), min(c + size - size // 2 + shift, n)

    x0, x1 = span(cx, w, ww)
    best, best_key = None, None
    for y in ys:
        y0, y1 = span(y, h, wh)
        score = int(np.count_nonzero(flipped[y0:y1, x0:x1]))
        key = (-score, (y - h // 2) ** 2 + (cx - w // 2) ** 2)
        if best_key is None or key < best_key:
            best, best_key = (y, cx), key
    return best


@pytest.mark.parametrize("seed", range(8))
def test_cc_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(12, 60)), int(rng.integers(8, 40))
    img = (rng.random((h, w)) < rng.uniform(0.05, 0.6)).astype(np.uint16) * 100
    rightmost_x = int(rng.integers(0, w))
    win = (int(rng.integers(4, 40)), int(rng.integers(2, 30)))
    preset = dataclasses.replace(PRESET, cc_input_size=win)
    got = optimal_center(img, "L-CC", "NO", ((0, 0), rightmost_x), (0, (0, 0)), preset)
    assert got == _brute_force_cc(img, rightmost_x, win)
