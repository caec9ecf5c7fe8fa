"""Lesion boxes (``boxes.csv``): reading, validation, and mapping into a preprocessed crop.

Format (one row per box; the importers write it for data sets that localise findings by boxes,
e.g. VinDr-Mammo findings and EMBED ROI_coords)::

    exam_id,view,label,x0,y0,x1,y1
    e001,L-CC,malignant,812,1040,1003,1222

Coordinates are in ORIGINAL image pixels (the uncropped image as stored, display orientation),
as pixel edges: the box covers ``x0 <= x < x1``, ``y0 <= y < y1`` (``x1``/``y1`` exclusive;
fractional values allowed); ``label`` is ``malignant`` or ``benign``; ``view`` as in a manifest
(L-CC, R-CC, L-MLO, R-MLO; ``l_cc`` etc. accepted). Every error names the file, the line and the
problem.

Mapping into the preprocessed frame (:func:`box_to_crop_frame`). Preprocessing crops the image to
``window_location`` = (top, bottom, left, right) (recorded per image in ``exams.json``) without
resizing it, and the patch classifier sees the crop mirrored so that the chest wall is on the
left when the view needs it (:meth:`mammokit.views.View.needs_flip`). So a box maps as::

    x0', x1' = x0 - left, x1 - left          y0', y1' = y0 - top, y1 - top
    clip to [0, w] x [0, h]                  (w = right - left, h = bottom - top)
    mirrored: x0', x1' = w - x1', w - x0'    (pixel edges: column c -> w - 1 - c)

:func:`box_mask` rasterises mapped boxes: every pixel a box touches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammokit.errors import InputFileError
from mammokit.views import View, normalise_view_name

BOX_COLUMNS = ("exam_id", "view", "label", "x0", "y0", "x1", "y1")
BOX_LABELS = ("malignant", "benign")

__all__ = ["BOX_COLUMNS", "BOX_LABELS", "Box", "BoxesError", "read_boxes", "box_to_crop_frame", "box_mask"]


class BoxesError(InputFileError):
    """A malformed boxes CSV (names the file, the line and the problem)."""


@dataclass(frozen=True)
class Box:
    """One lesion box in original image pixels (pixel edges; ``x1``, ``y1`` exclusive)."""

    exam_id: str
    view: str
    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    line: int = 0


def read_boxes(path: str | os.PathLike) -> dict[tuple[str, str], list[Box]]:
    """Read and validate ``boxes.csv``: ``{(exam_id, view): [Box, ...]}`` in file order.

    Raises:
        MissingFileError: no such file. BoxesError: a missing column, an unknown view or label, a
        coordinate that is not a number, an empty or inverted box (each naming file and line).
    """
    from mammokit.data.manifest import _check_columns, _read_csv

    path = Path(path)
    header, records = _read_csv(path, "boxes file")
    try:
        _check_columns(path, header, BOX_COLUMNS, "boxes file")
    except InputFileError as exc:
        raise BoxesError(str(exc)) from None
    out: dict[tuple[str, str], list[Box]] = {}
    for line, rec in records:
        where = f"{path}: line {line}"
        if not rec["exam_id"]:
            raise BoxesError(f"{where}: empty exam_id")
        view = normalise_view_name(rec["view"])
        if view is None:
            raise BoxesError(f"{where}: unknown view {rec['view']!r} (expected L-CC, R-CC, L-MLO or R-MLO)")
        label = rec["label"].strip().lower()
        if label not in BOX_LABELS:
            raise BoxesError(f"{where}: label must be malignant or benign, got {rec['label']!r}")
        coords = []
        for key in ("x0", "y0", "x1", "y1"):
            try:
                value = float(rec[key])
            except ValueError:
                raise BoxesError(f"{where}: {key} must be a number (original image pixels), got {rec[key]!r}") from None
            if not math.isfinite(value) or value < 0:
                raise BoxesError(f"{where}: {key} must be a finite number >= 0, got {rec[key]!r}")
            coords.append(value)
        x0, y0, x1, y1 = coords
        if not (x1 > x0 and y1 > y0):
            raise BoxesError(f"{where}: empty box (need x0 < x1 and y0 < y1, got {x0:g},{y0:g},{x1:g},{y1:g})")
        out.setdefault((rec["exam_id"], view), []).append(Box(rec["exam_id"], view, label, x0, y0, x1, y1, line))
    return out


def box_to_crop_frame(
    box: Sequence[float], window_location: Sequence[int], view: str, horizontal_flip: str = "NO"
) -> tuple[float, float, float, float] | None:
    """Map a box ``(x0, y0, x1, y1)`` in original pixels into the preprocessed crop as the
    patch classifier sees it (cropped to ``window_location`` = (top, bottom, left, right),
    mirrored when the view needs it; see the module docstring).

    Returns:
        ``(x0, y0, x1, y1)`` in the crop's model frame, clipped to it; None when the box lies
        entirely outside the crop.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    top, bottom, left, right = (int(v) for v in window_location)
    h, w = bottom - top, right - left
    x0, x1 = min(max(x0 - left, 0.0), w), min(max(x1 - left, 0.0), w)
    y0, y1 = min(max(y0 - top, 0.0), h), min(max(y1 - top, 0.0), h)
    if x1 <= x0 or y1 <= y0:
        return None
    if View.parse(view).needs_flip(horizontal_flip):
        x0, x1 = w - x1, w - x0
    return (x0, y0, x1, y1)


def box_mask(boxes: Iterable[Sequence[float]], shape: Sequence[int]) -> np.ndarray:
    """Bool ``[H, W]`` mask of every pixel the boxes (``(x0, y0, x1, y1)``, pixel edges, already
    in this frame) touch: rows ``floor(y0) .. ceil(y1) - 1``, columns likewise."""
    h, w = (int(v) for v in shape[:2])
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        r0, r1 = max(int(math.floor(y0)), 0), min(int(math.ceil(y1)), h)
        c0, c1 = max(int(math.floor(x0)), 0), min(int(math.ceil(x1)), w)
        if r0 < r1 and c0 < c1:
            mask[r0:r1, c0:c1] = True
    return mask
