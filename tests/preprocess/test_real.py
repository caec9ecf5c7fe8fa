"""Crop + optimal centre on the 4 real sample mammograms, against the reference implementation.

Expected values: the reference's own code (nyukat/breast_cancer_classifier,
src/cropping/crop_mammogram.py ``crop_img_from_largest_connected`` and
src/optimal_centers/{get_optimal_centers,calc_optimal_centers}.py ``extract_center``) copied
outside this repository, adapted only to run (pandas idxmax -> max, scipy.ndimage.morphology ->
scipy.ndimage, imageio -> cv2), run on these PNGs with its defaults (100 iterations, buffer 50,
CC window 2677 x 1942, horizontal_flip NO).
"""

from __future__ import annotations

import numpy as np
import pytest

from mammokit.data.images import read_image
from mammokit.preprocess.pipeline import preprocess_image

pytestmark = pytest.mark.real

REFERENCE = {
    "1_L_CC": {
        "window_location": [233, 2825, 0, 1263],
        "rightmost_points": [[1336, 1356], 1212],
        "bottommost_points": [2541, [100, 103]],
        "distance_from_starting_side": 0,
        "best_center": [1296, 240],
    },
    "1_R_CC": {
        "window_location": [587, 3011, 1398, 2560],
        "rightmost_points": [[1215, 1221], 1112],
        "bottommost_points": [2373, [101, 101]],
        "distance_from_starting_side": 0,
        "best_center": [1212, 140],
    },
    "2_L_CC": {
        "window_location": [290, 3154, 0, 1203],
        "rightmost_points": [[1406, 1410], 1152],
        "bottommost_points": [2813, [100, 100]],
        "distance_from_starting_side": 0,
        "best_center": [1429, 180],
    },
    "2_R_CC": {
        "window_location": [73, 2895, 1358, 2560],
        "rightmost_points": [[1518, 1519], 1152],
        "bottommost_points": [2771, [101, 102]],
        "distance_from_starting_side": 0,
        "best_center": [1418, 180],
    },
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_real_image_matches_reference(real_data_dir, name):
    import cv2

    image = read_image(real_data_dir / f"{name}.png")
    assert image.shape == (3328, 2560)
    view = f"{name.split('_')[1]}-{name.split('_')[2]}"
    result = preprocess_image(image, view, "NO", "paper")
    expected = REFERENCE[name]
    for key in ("window_location", "rightmost_points", "bottommost_points", "distance_from_starting_side"):
        assert result.geometry[key] == expected[key], key
    (y, x), (ey, ex) = result.geometry["best_center"], expected["best_center"]
    assert abs(y - ey) <= 2 and abs(x - ex) <= 2
    assert result.warnings == ()
    t, b, l, r = expected["window_location"]
    np.testing.assert_array_equal(result.cropped, image[t:b, l:r])

    # The burned-in view label is its own connected component, away from the breast: it is not in
    # the crop's breast mask. The crop box without its far-side buffer excludes it; the reference's
    # 50-px buffer may still include a sliver of the label box, never more than those columns.
    n, labels, stats, _ = cv2.connectedComponentsWithStats((image > 0).astype(np.uint8), connectivity=8)
    assert n - 1 == 2
    label = 1 + int(np.argmin(stats[1:, cv2.CC_STAT_AREA]))
    lx0 = stats[label, cv2.CC_STAT_LEFT]
    lx1 = lx0 + stats[label, cv2.CC_STAT_WIDTH]
    if view.startswith("L"):  # chest wall left: buffer on the right
        assert r - 50 <= lx0
    else:
        assert lx1 <= l + 50
    inside = labels[t:b, l:r] == label
    cols = np.flatnonzero(inside.any(axis=0))
    if cols.size:
        far_buffer = range(r - l - 50, r - l) if view.startswith("L") else range(0, 50)
        assert set(cols.tolist()) <= set(far_buffer)
