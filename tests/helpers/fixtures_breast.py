"""Shared pieces of the data-set fixtures (VinDr-Mammo, RSNA, EMBED): breast pixels with lesions
at known places, stable hex ids, CSV files written exactly as given.

The pixels are simple on purpose (a noisy half-ellipse against the chest wall, background 0, a
bright disc for a malignant lesion, a dark disc for a benign one): the importers only read
headers, and the end-to-end tests need a breast the crop finds and a lesion a small model sees.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Lesion:
    """A disc lesion in *display* pixels of its image (chest wall left for L, right for R)."""

    kind: str  # "malignant" or "benign"
    cy: float
    cx: float
    r: float

    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) around the disc."""
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)


def hexid(*parts: object, n: int = 32) -> str:
    """A stable lower-case hex id from ``parts`` (VinDr-style 32 hex digits by default)."""
    return hashlib.md5("|".join(map(str, parts)).encode()).hexdigest()[:n]


def numeric_id(*parts: object, digits: int = 9) -> str:
    """A stable decimal id with ``digits`` digits and no leading zero (RSNA ids)."""
    value = int(hashlib.md5("|".join(map(str, parts)).encode()).hexdigest(), 16)
    return str(10 ** (digits - 1) + value % (9 * 10 ** (digits - 1)))


def breast_pixels(
    h: int, w: int, laterality: str, lesions: list[Lesion] = (), bits: int = 12, seed: int = 0
) -> np.ndarray:
    """Display values ``uint16`` ``[h, w]`` in ``0..2**bits-1``: background exactly 0, breast
    tissue around 45 % of the range (15-80 %), malignant discs at 95 %, benign discs at 20 %."""
    top = 2**bits - 1
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = ((yy - h / 2) / (h * 0.46)) ** 2 + (xx / (w * 0.88)) ** 2 <= 1.0  # chest wall at x = 0
    img = np.where(inside, 0.45 * top + 0.06 * top * rng.standard_normal((h, w)), 0.0)
    img = np.clip(img, 0.15 * top, 0.8 * top) * inside  # tissue stays above the fixtures' window floor
    if laterality == "R":
        img = img[:, ::-1]
        inside = inside[:, ::-1]
    for lesion in lesions:
        disc = (yy - lesion.cy) ** 2 + (xx - lesion.cx) ** 2 <= lesion.r**2
        img[disc & inside] = (0.95 if lesion.kind == "malignant" else 0.20) * top
    return np.ascontiguousarray(np.rint(img)).astype(np.uint16)


def write_rows(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> None:
    """A CSV with exactly ``header`` and ``rows`` (None -> empty field), as pandas would write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])


def lesion_pair(kind: str, h: int, w: int, laterality: str, slot: int = 0) -> Lesion:
    """A lesion well inside a breast of an ``h`` x ``w`` image (``slot`` moves it down)."""
    cx = w * (0.35 + 0.1 * (slot % 2))
    if laterality == "R":
        cx = w - 1 - cx
    return Lesion(kind, h * (0.35 + 0.2 * (slot % 2)), cx, max(3.0, 0.07 * min(h, w)))


# A window of 12-bit display values whose LINEAR floor (PS3.3 C.11.2.1.2) is 400: the air (0)
# maps to exactly 0 and every tissue value (>= 15 % = 614) stays above it.
WINDOW_12BIT = {"center": 2100.0, "width": 3400.0}
