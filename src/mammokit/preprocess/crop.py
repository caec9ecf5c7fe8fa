"""Crop a mammogram to the breast, exactly as the reference implementation does.

Algorithm (paper-facts.md, "Preprocessing" step 1; reference ``src/cropping/crop_mammogram.py``):

1. ``mask = image > background_threshold`` (the reference: ``> 0``).
2. Binary erosion, ``preset.erosion_iterations`` iterations of the 3x3 cross, pixels outside the
   image counting as background (scipy's ``border_value=0``). This cuts thin lines and detaches the
   burned-in view label from the breast.
3. Keep the largest 4-connected component (ties: the one whose first pixel in raster order comes
   first, which is scipy's lowest label, as the reference's ``idxmax``).
4. Binary dilation, same iterations, to recover the breast outline.
5. Bounding box of that mask; extend it by up to ``preset.crop_buffer`` pixels at the top and the
   bottom, and on the side away from the chest wall only (clipped to the image).

Iterated erosion / dilation with the cross is the same as thresholding the city-block (L1)
distance transform, which OpenCV computes exactly in two raster passes: a pixel survives ``n``
erosions iff its L1 distance to the nearest background pixel (the outside included) is > ``n``, and
it is set by ``n`` dilations iff its L1 distance to the component is <= ``n`` (an L1-shortest
path between two pixels of a rectangle stays inside it, so clipping to the image changes nothing).
That makes crop + centre ~3x faster than the reference's scipy code (0.12-0.18 s vs 0.39-0.50 s
per 3328 x 2560 image on one loaded CPU core) with identical output (tests compare the morphology
with scipy; the real-image tests with the reference's numbers).

Like the reference, the far-side buffer can take in a sliver of the burned-in view label when it
lies within ``crop_buffer`` pixels of the breast (on the 4 real sample images: ~30 columns of the
label box); the label is never part of the breast mask, and the CC / MLO window, pinned to the
breast's rightmost pixel, excludes it.

Coordinate frames. ``window_location`` = (top, bottom, left, right) in the original image
(bottom / right exclusive). ``rightmost_points`` = ((y_start, y_end), x) and ``bottommost_points``
= (y, (x_start, x_end)) are in the *flipped* frame of the cropped image (chest wall on the left).
For images whose chest wall is on the right the reference mirrors x as ``width - x`` (not
``width - 1 - x``); that off-by-one is kept on purpose, because downstream windows (and stored
reference exam lists) depend on these exact numbers.

"Chest wall side": with ``horizontal_flip = NO`` left-breast images have the chest wall on the
left, right-breast images on the right; ``horizontal_flip = YES`` swaps that.

Failures raise :class:`CropError` (a ``ValueError``) with the reason. A breast that does not
start at the chest-wall edge (``distance_from_starting_side > 0``) is *not* a failure, as in the
reference (which records the distance and crops anyway): it is returned in
:attr:`CropResult.warnings` because it usually means a wrong ``horizontal_flip`` or side label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from mammokit.config import Preset, get_preset
from mammokit.errors import InputFileError, UsageError
from mammokit.views import chest_wall_side

# The reference searches the rightmost breast pixels below the top third of the cropped image
# (the nipple side of a CC breast, the lower part of an MLO breast, not the axilla).
FIND_RIGHTMOST_FROM_RATIO = 1 / 3


class CropError(InputFileError):
    """An image that cannot be cropped; the message states the reason."""


@dataclass(frozen=True)
class CropResult:
    """Result of :func:`crop_mammogram`.

    Attributes:
        cropped: ``[h, w]`` crop of the input (same dtype, original orientation, a copy); with a
            ``background_threshold`` > 0 the pixels at or below it are set to 0.
        window_location: (top, bottom, left, right) of the crop in the original image, end-exclusive.
        rightmost_points: ((y_start, y_end), x), flipped frame of the crop (chest wall left).
        bottommost_points: (y, (x_start, x_end)), flipped frame of the crop.
        distance_from_starting_side: empty columns between the chest-wall edge and the breast
            (0 for a correctly oriented image).
        chest_wall: "left" or "right": the chest-wall side in the original image.
        warnings: human-readable warnings (e.g. a likely wrong flip).
    """

    cropped: np.ndarray
    window_location: tuple[int, int, int, int]
    rightmost_points: tuple[tuple[int, int], int]
    bottommost_points: tuple[int, tuple[int, int]]
    distance_from_starting_side: int
    chest_wall: str
    warnings: tuple[str, ...] = field(default=())

    def geometry(self) -> dict:
        """The per-image exam-list fields (JSON-ready lists, as stored in ``exams.json``)."""
        (y0, y1), x = self.rightmost_points
        y, (x0, x1) = self.bottommost_points
        return {
            "window_location": list(self.window_location),
            "rightmost_points": [[y0, y1], x],
            "bottommost_points": [y, [x0, x1]],
            "distance_from_starting_side": self.distance_from_starting_side,
        }


def erode_mask(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, iterations=iterations)`` (cross, outside = 0).

    Args:
        mask: bool ``[H, W]``.
    Returns:
        bool ``[H, W]``.
    """
    if iterations <= 0:
        return mask.copy()
    # One pixel of zero padding stands for scipy's border_value=0 (the outside is background).
    padded = np.pad(mask, 1).view(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L1, 3)
    return dist[1:-1, 1:-1] > iterations


def dilate_mask(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, iterations=iterations)`` (cross, outside = 0).

    Only the mask's bounding box grown by ``iterations`` is transformed (nothing farther can be
    reached), which keeps the cost proportional to the breast, not the detector.

    Args:
        mask: bool ``[H, W]`` (non-empty).
    Returns:
        bool ``[H, W]``.
    """
    if iterations <= 0 or not mask.any():
        return mask.copy()
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    y0, y1 = max(rows[0] - iterations, 0), min(rows[-1] + iterations + 1, h)
    x0, x1 = max(cols[0] - iterations, 0), min(cols[-1] + iterations + 1, w)
    inverse = np.ascontiguousarray(~mask[y0:y1, x0:x1]).view(np.uint8)
    dist = cv2.distanceTransform(inverse, cv2.DIST_L1, 3)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = dist <= iterations
    return out


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Mask of the largest 4-connected component of ``mask`` (bool ``[H, W]``, non-empty).

    Ties go to the component whose first pixel in raster order comes first (scipy.ndimage.label
    numbers components in that order and the reference takes the first maximum).
    """
    # Label only the mask's bounding box: raster order inside it is the image's raster order.
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    sub = np.ascontiguousarray(mask[y0:y1, x0:x1]).view(np.uint8)
    # Plain labelling + bincount is ~4x faster than connectedComponentsWithStats here.
    _, labels = cv2.connectedComponents(sub, connectivity=4, ltype=cv2.CV_32S)
    flat = labels.ravel()
    areas = np.bincount(flat)
    areas[0] = 0  # background
    best = np.flatnonzero(areas == areas.max())
    # First pixel in raster order decides ties (flat index of the first occurrence).
    k = best[0] if len(best) == 1 else min(best, key=lambda j: int(np.argmax(flat == j)))
    out = np.zeros(mask.shape, dtype=bool)
    out[y0:y1, x0:x1] = labels == k
    return out


def crop_mammogram(
    image: np.ndarray,
    view: str,
    horizontal_flip: str = "NO",
    preset: Preset | str = "paper",
    background_threshold: int = 0,
) -> CropResult:
    """Crop a mammogram to its breast (the reference's ``crop_img_from_largest_connected``).

    Args:
        image: ``[H, W]`` grayscale mammogram (uint16 in the pipeline), display orientation.
        view: ``"L-CC"``, ``"R-CC"``, ``"L-MLO"`` or ``"R-MLO"``.
        horizontal_flip: the exam's ``horizontal_flip`` ("NO": L chest wall left, R right).
        preset: supplies ``erosion_iterations`` and ``crop_buffer`` (paper: 100 and 50).
        background_threshold: pixels <= this are background (reference: 0). Use a small value for
            images whose background is near zero rather than exactly zero.

    Returns:
        :class:`CropResult`.

    Raises:
        CropError: empty / all-background image, no background at all, an image too small for
            the preset, or nothing left after erosion.
        ValueError: bad ``view`` / ``horizontal_flip``.
    """
    preset = get_preset(preset)
    chest = chest_wall_side(view, horizontal_flip)
    iterations, buffer = int(preset.erosion_iterations), int(preset.crop_buffer)
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise CropError(f"expected a non-empty 2-D grayscale image, got shape {image.shape}")
    if background_threshold < 0:
        raise UsageError(f"background_threshold must be >= 0, got {background_threshold}")
    h, w = image.shape
    if min(h, w) <= 2 * iterations:
        raise CropError(
            f"image {h}x{w} is too small for preset {preset.name!r} (its {iterations}-pixel erosion "
            f"needs more than {2 * iterations} pixels per side); use a preset matching the image "
            f"resolution (paper expects ~3328x2560)"
        )

    mask = image > background_threshold
    n_fg = int(np.count_nonzero(mask))
    if n_fg == 0:
        raise CropError(f"image is all background (no pixel > {background_threshold})")
    if n_fg == mask.size:
        raise CropError(
            f"no background pixels (none <= {background_threshold}): the background is not zero; "
            f"set a background threshold (e.g. --background-threshold) above the background level"
        )

    eroded = erode_mask(mask, iterations)
    if not eroded.any():
        raise CropError(
            f"nothing is left after {iterations} erosion iterations: no breast region thicker than "
            f"{2 * iterations} pixels (image too small for preset {preset.name!r}, or mostly noise)"
        )
    breast = dilate_mask(largest_component(eroded), iterations)

    rows = np.flatnonzero(breast.any(axis=1))
    cols = np.flatnonzero(breast.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    if top == 0 and left == 0 and bottom == h and right == w:
        raise CropError(
            "the breast region touches all four image edges: the background is probably not zero "
            "(set a background threshold, e.g. --background-threshold, above the background level)"
        )

    # Bottommost mask pixels, taken before the buffers (original frame).
    bottom_row = bottom - 1
    bottom_xs = np.flatnonzero(breast[bottom_row])

    # Buffers: top and bottom always, in x only away from the chest wall (clipped to the image).
    top -= min(top, buffer)
    bottom += min(h - bottom, buffer)
    distance = (w - right) if chest == "right" else left
    if chest == "right":
        left -= min(left, buffer)
    else:
        right += min(w - right, buffer)

    # Bottommost points in the flipped frame of the crop (reference: x -> right - x when the
    # chest wall is on the right).
    bottommost_y = bottom_row - top
    if chest == "right":
        bx = right - bottom_xs[::-1]
    else:
        bx = bottom_xs - left
    bottommost = (int(bottommost_y), (int(bx[0]), int(bx[-1])))

    # Rightmost points: the breast column farthest from the chest wall, searched below the top
    # third of the crop, then mirrored (width - x) when the chest wall is on the right.
    crop_mask = breast[top:bottom, left:right]
    ignore = int(crop_mask.shape[0] * FIND_RIGHTMOST_FROM_RATIO)
    area = crop_mask[ignore:]
    area_cols = np.flatnonzero(area.any(axis=0))
    if area_cols.size == 0:
        raise CropError("the breast lies entirely in the top third of the crop; cannot place the window")
    rx = int(area_cols[0] if chest == "right" else area_cols[-1])
    ry = np.flatnonzero(area[:, rx]) + ignore
    if chest == "right":
        rx = crop_mask.shape[1] - rx
    rightmost = ((int(ry[0]), int(ry[-1])), rx)

    cropped = image[top:bottom, left:right].copy()
    if background_threshold > 0:
        cropped[cropped <= background_threshold] = 0

    warnings: list[str] = []
    if distance > 0:
        warnings.append(
            f"breast starts {distance} px from the {chest} (chest-wall) edge expected for {view} with "
            f"horizontal_flip={horizontal_flip}: wrong side label or horizontal_flip?"
        )
    return CropResult(
        cropped=cropped,
        window_location=(top, bottom, left, right),
        rightmost_points=rightmost,
        bottommost_points=bottommost,
        distance_from_starting_side=int(distance),
        chest_wall=chest,
        warnings=tuple(warnings),
    )
