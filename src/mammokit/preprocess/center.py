"""Optimal window centre (``best_center``), exactly as the reference implementation.

Reference: ``src/optimal_centers/get_optimal_centers.py`` (``extract_center``) and
``calc_optimal_centers.py``. In the flipped frame of the cropped image (chest wall on the left):

* Candidate centres: every centre whose window ``preset.input_size(view)`` fits inside the image
  (``half = size // 2``; a centre c covers ``[c - half, c - half + size)``); along an axis where
  none fits, the single candidate is the image centre ``shape // 2``.
* CC: the x coordinate is pinned so the window ends at the rightmost breast pixel:
  ``x = rightmost_x - half_w - 1`` (the reference's exact arithmetic); y is searched (1-D).
* MLO: one candidate, pinned to the bottom-right:
  ``(min(bottommost_y, last non-empty row of the rightmost W columns) - half_h - 1,
  rightmost_x - half_w - 1)``.
* Score = number of non-zero pixels inside the window, where a window reaching past the top /
  left edge is shifted inside and one reaching past the bottom / right edge is clipped (the
  reference's ``get_candidate_topleft_bottomright``). Best score wins; ties go to the candidate
  nearest (squared Euclidean) to the image centre, then the first in y-major order.

The reference scores candidates through a 2-D integral image; a 1-D search only needs one row
profile of the (fixed) column band, so this implementation sums rows once and uses a 1-D
cumulative sum: the same integers, a fraction of the memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mammokit.config import Preset, get_preset
from mammokit.transforms import to_model_frame
from mammokit.views import parse_view


def _candidate_range(com: int, image_dim: int, window_dim: int) -> tuple[int, int]:
    """Candidate centres ``[lo, hi)`` along one axis (reference, step 1)."""
    half = window_dim // 2
    lo, hi = half, image_dim - (window_dim - half)
    if lo >= hi:  # no room to move (also when exactly one position fits): the image centre
        lo = hi = com
    return lo, hi + 1


def _window_span(center: np.ndarray, image_dim: int, window_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Array-indexable [start, end) of windows centred at ``center`` (shift in at 0, clip at end)."""
    half = window_dim // 2
    start = center - half
    offset = np.clip(-start, 0, None)
    start = np.clip(start, 0, None)
    end = np.clip(center + (window_dim - half) + offset, None, image_dim)
    return start, end


def optimal_center(
    cropped: np.ndarray,
    view: str,
    horizontal_flip: str,
    rightmost_points: Sequence,
    bottommost_points: Sequence,
    preset: Preset | str = "paper",
) -> tuple[int, int]:
    """Centre (y, x) of the model-input window covering the most breast, flipped frame.

    Args:
        cropped: ``[h, w]`` cropped image in ORIGINAL orientation (as saved); flipped here.
        view: ``"L-CC"`` ... ``"R-MLO"``.
        horizontal_flip: the exam's "YES" / "NO".
        rightmost_points: ((y_start, y_end), x) from the crop (flipped frame).
        bottommost_points: (y, (x_start, x_end)) from the crop (flipped frame).
        preset: supplies the input window size for the view.

    Returns:
        ``best_center`` (y, x) in the flipped frame of the cropped image; the window may extend
        past the image (the window sampler pads).
    """
    kind = parse_view(view).kind
    preset = get_preset(preset)
    image = np.asarray(cropped)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty 2-D cropped image, got shape {image.shape}")
    image = to_model_frame(image, view, horizontal_flip)
    h, w = image.shape
    win_h, win_w = (int(v) for v in preset.input_size(kind))
    com_y, com_x = h // 2, w // 2
    rightmost_x = int(rightmost_points[1])

    if kind == "MLO":
        bottommost_y = int(bottommost_points[0])
        # The breast may end above the recorded bottom row within the window's column band.
        band_rows = np.flatnonzero((image[:, -win_w:] != 0).any(axis=1))
        if band_rows.size:
            bottommost_y = min(int(band_rows[-1]), bottommost_y)
        # A single candidate: the reference returns its top-left bound, i.e. br - 1.
        return bottommost_y - win_h // 2 - 1, rightmost_x - win_w // 2 - 1

    # CC: x pinned, y searched.
    center_x = rightmost_x - win_w // 2 - 1
    y_lo, y_hi = _candidate_range(com_y, h, win_h)
    ys = np.arange(y_lo, y_hi)
    if ys.size == 1:
        return int(ys[0]), center_x
    x0, x1 = _window_span(np.array(center_x), w, win_w)
    row_counts = np.count_nonzero(image[:, int(x0) : int(x1)], axis=1)
    cum = np.concatenate(([0], np.cumsum(row_counts, dtype=np.int64)))
    y0, y1 = _window_span(ys, h, win_h)
    scores = cum[y1] - cum[y0]
    best = ys[scores == scores.max()]
    if best.size > 1:
        # Nearest to the image centre; x is shared, so the y distance decides (first on ties).
        best = best[[int(np.argmin((best - com_y) ** 2 + (center_x - com_x) ** 2))]]
    return int(best[0]), center_x
