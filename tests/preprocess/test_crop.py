"""Crop to the breast: synthetic images with crop boxes derived from their geometry, the
scipy-equivalence of the fast morphology, and every failure reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.ndimage as ndi

from mammokit.config import PRESETS
from mammokit.preprocess.crop import (
    CropError,
    crop_mammogram,
    dilate_mask,
    erode_mask,
    largest_component,
)
from mammokit.views import chest_wall_side

R = 3  # erosion / dilation iterations of the test preset
BUF = 5  # crop buffer
PRESET = dataclasses.replace(PRESETS["tiny"], name="test", erosion_iterations=R, crop_buffer=BUF)
H, W = 160, 120
CY, A, B = 85, 40, 45  # breast core: half-ellipse centred on row CY, semi-axes A (x), B (y)
LABEL_VALUE = 999
BREAST_VALUE = 20000


def synthetic(chest: str = "left", thin_line: bool = True) -> np.ndarray:
    """A breast on a zero background, chest wall on ``chest``, plus a separate view label.

    The breast is a half-ellipse core (x >= R) dilated by a diamond of radius R: such a set is
    unchanged by R erosions + R dilations, so the crop's mask is the breast itself and its bounding
    box follows from the geometry: rows [CY-B-R, CY+B+R], columns [0, 2R+A]. The label is a 9x9
    square near the far top corner (survives erosion, smaller component); a 1-px line from the
    breast to the far edge is removed by the erosion.
    """
    yy, xx = np.mgrid[:H, :W]
    core = (xx >= R) & (((xx - R) / A) ** 2 + ((yy - CY) / B) ** 2 <= 1)
    breast = ndi.binary_dilation(core, iterations=R)
    img = np.where(breast, BREAST_VALUE, 0).astype(np.uint16)
    img[2:11, W - 11 : W - 2] = LABEL_VALUE
    if thin_line:
        img[CY + 20, 2 * R + A - 5 :] = 7
    return img[:, ::-1].copy() if chest == "right" else img


TOP = CY - B - R - BUF
BOTTOM = CY + B + R + 1 + BUF
FAR = 2 * R + A + 1 + BUF  # crop width (chest wall edge + breast + buffer)


@pytest.mark.parametrize(
    "view,flip,chest",
    [
        ("L-CC", "NO", "left"),
        ("R-CC", "NO", "right"),
        ("L-MLO", "NO", "left"),
        ("R-MLO", "NO", "right"),
        ("L-CC", "YES", "right"),
        ("R-MLO", "YES", "left"),
    ],
)
def test_crop_box_and_points_from_geometry(view, flip, chest):
    assert chest_wall_side(view, flip) == chest
    res = crop_mammogram(synthetic(chest), view, flip, PRESET)
    if chest == "left":
        assert res.window_location == (TOP, BOTTOM, 0, FAR)
    else:
        assert res.window_location == (TOP, BOTTOM, W - FAR, W)
    assert res.distance_from_starting_side == 0 and res.warnings == ()
    # The bottom row of the breast holds one pixel, x = R from the chest wall (core tip + R down).
    # The farthest column (2R+A from the wall) holds one pixel, on row CY. In the flipped frame the
    # reference maps x -> width - x for chest-right images (not width - 1 - x): hence the +1.
    off = 0 if chest == "left" else 1
    assert res.bottommost_points == (CY + B + R - TOP, (R + off, R + off))
    assert res.rightmost_points == ((CY - TOP, CY - TOP), 2 * R + A + off)
    # Cropped pixels are the original's, original orientation; the label and the line are gone.
    t, b, l, r = res.window_location
    np.testing.assert_array_equal(res.cropped, synthetic(chest)[t:b, l:r])
    assert not (res.cropped == LABEL_VALUE).any()
    assert res.cropped.dtype == np.uint16


def test_thin_line_does_not_extend_crop():
    with_line = crop_mammogram(synthetic(thin_line=True), "L-CC", preset=PRESET)
    without = crop_mammogram(synthetic(thin_line=False), "L-CC", preset=PRESET)
    assert with_line.window_location == without.window_location


def test_buffers_clipped_at_image_edges():
    img = synthetic()
    # Shift the breast up so its top touches row 1: top buffer clipped at 0.
    shifted = np.zeros_like(img)
    shift = CY - B - R - 1
    shifted[: H - shift] = img[shift:]
    shifted[shifted == LABEL_VALUE] = 0
    res = crop_mammogram(shifted, "L-CC", preset=PRESET)
    assert res.window_location[0] == 0
    assert res.window_location[1] == (CY + B + R + 1 - shift) + BUF


def test_wrong_flip_is_a_warning_with_distance():
    # An L-CC whose breast sits at the right edge: the reference records the gap and crops anyway.
    img = synthetic("right", thin_line=False)
    res = crop_mammogram(img, "L-CC", "NO", PRESET)
    assert res.distance_from_starting_side == W - (2 * R + A + 1)
    assert len(res.warnings) == 1 and "horizontal_flip" in res.warnings[0]
    # Buffer goes away from the (assumed) chest wall, i.e. to the right, clipped at the edge.
    assert res.window_location[2:] == (W - (2 * R + A + 1), W)


def test_background_threshold_option():
    img = synthetic(thin_line=False)
    noisy = img.copy()
    noisy[noisy == 0] = 5  # near-zero background
    noisy[H // 2, W - 30] = 0  # one true zero: the "no zero pixel" check passes, the crop cannot
    with pytest.raises(CropError, match="all four image edges"):
        crop_mammogram(noisy, "L-CC", preset=PRESET)
    res = crop_mammogram(noisy, "L-CC", preset=PRESET, background_threshold=5)
    expected = crop_mammogram(img, "L-CC", preset=PRESET)
    assert res.window_location == expected.window_location
    assert res.rightmost_points == expected.rightmost_points
    np.testing.assert_array_equal(res.cropped, expected.cropped)  # background pixels set to 0


@pytest.mark.parametrize(
    "image,match",
    [
        (np.zeros((0, 0), np.uint16), "non-empty 2-D"),
        (np.zeros((40, 40, 3), np.uint16), "non-empty 2-D"),
        (np.zeros((40, 40), np.uint16), "all background"),
        (np.full((40, 40), 9, np.uint16), "no background pixels"),
        (np.ones((6, 50), np.uint16), "too small for preset 'test'"),
    ],
)
def test_failure_reasons(image, match):
    with pytest.raises(CropError, match=match):
        crop_mammogram(image, "L-CC", preset=PRESET)


def test_nothing_survives_erosion():
    img = np.zeros((50, 50), np.uint16)
    img[10:15, 5:40] = 100  # 5 rows thick: gone after 3 erosions (needs >= 7)
    with pytest.raises(CropError, match="nothing is left after 3 erosion"):
        crop_mammogram(img, "L-CC", preset=PRESET)


def test_paper_preset_rejects_small_images():
    with pytest.raises(CropError, match="too small for preset 'paper'"):
        crop_mammogram(synthetic(), "L-CC")  # 160x120 < 2 x 100 erosions


def test_crop_error_is_value_error_and_bad_view():
    assert issubclass(CropError, ValueError)
    with pytest.raises(ValueError, match="unknown view"):
        crop_mammogram(synthetic(), "X-CC", preset=PRESET)
    with pytest.raises(ValueError, match="horizontal_flip"):
        crop_mammogram(synthetic(), "L-CC", "maybe", preset=PRESET)


@pytest.mark.parametrize("seed", range(6))
def test_morphology_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    mask = ndi.binary_dilation(rng.random((45, 37)) < 0.04, iterations=2) | (rng.random((45, 37)) < 0.5)
    for it in (1, 2, 5):
        np.testing.assert_array_equal(erode_mask(mask, it), ndi.binary_erosion(mask, iterations=it))
        sparse = rng.random((45, 37)) < 0.01
        sparse[0, 0] = True
        np.testing.assert_array_equal(dilate_mask(sparse, it), ndi.binary_dilation(sparse, iterations=it))


def test_largest_component_tie_break_is_scipy_first_label():
    mask = np.zeros((20, 20), bool)
    mask[12:15, 1:4] = True  # 9 px, first pixel later in raster order
    mask[2:5, 15:18] = True  # 9 px, first in raster order -> scipy label 1
    mask[8, 8] = True
    labels, _ = ndi.label(mask)
    np.testing.assert_array_equal(largest_component(mask), labels == 1)
