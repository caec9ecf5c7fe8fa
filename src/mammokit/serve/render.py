"""PNGs for the web viewer: a view windowed as its DICOM says, and heatmap overlays.

Both are in the display orientation of :func:`mammokit.data.dicom.read_dicom_pixels` (L breasts
chest wall left, R breasts chest wall right), so that placed as RCC | LCC over RMLO | LMLO the
breasts meet back to back in the middle, as radiologists hang them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

__all__ = ["dicom_window", "display_png", "overlay_png", "COLORS"]

COLORS = {"malignant": (255, 40, 40), "benign": (40, 220, 80)}


def dicom_window(ds) -> tuple[float, float] | None:
    """``(center, width)`` of the first window in the dataset, or None."""
    c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
    if c in (None, "") or w in (None, ""):
        return None
    try:
        return _first(c), max(_first(w), 1.0)
    except (TypeError, ValueError, IndexError):
        return None


def _first(value) -> float:
    """The first value of a possibly multi-valued DS."""
    if isinstance(value, (str, bytes, float, int)):
        return float(value)
    return float(value[0])


@functools.lru_cache(maxsize=16)
def _modality_values(path: str, mtime: float) -> tuple[np.ndarray, object]:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)
    values.setflags(write=False)
    del ds.PixelData
    return values, ds


def _encode(array: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def display_png(path: str | Path, mirrored: bool, center: float | None = None, width: float | None = None,
                max_side: int | None = None) -> bytes:
    """8-bit PNG of a stored view: the DICOM's own window (or ``center``/``width``; linear, as
    PS3.3 C.11.2.1.2), MONOCHROME1 inverted, mirrored like the reader when ``mirrored``; without
    any window, the reader's display values (VOI LUT applied). ``max_side`` shrinks it."""
    import cv2

    from mammokit.data.dicom import read_dicom_pixels

    path = str(path)
    values, ds = _modality_values(path, Path(path).stat().st_mtime)
    window = (center, width) if center is not None and width is not None else dicom_window(ds)
    if window is None:
        out = (read_dicom_pixels(path) >> 8).astype(np.uint8)
    else:
        c, w = float(window[0]), max(float(window[1]), 1.0)
        y = np.clip((values - (c - 0.5)) / max(w - 1, 1.0) + 0.5, 0.0, 1.0)
        if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
            y = 1.0 - y
        out = np.rint(y * 255).astype(np.uint8)
        if mirrored:
            out = np.ascontiguousarray(out[:, ::-1])
    if max_side and max(out.shape) > max_side:
        f = max_side / max(out.shape)
        out = cv2.resize(out, (max(1, round(out.shape[1] * f)), max(1, round(out.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
    return _encode(out)


def overlay_png(probability: np.ndarray, kind: str) -> bytes:
    """RGBA PNG of a ``[H, W]`` probability map: the kind's colour, alpha = probability."""
    p = np.clip(np.asarray(probability, dtype=np.float32), 0.0, 1.0)
    r, g, b = COLORS[kind]
    alpha = np.rint(p * 255).astype(np.uint8)
    # OpenCV writes BGRA
    rgba = np.stack([np.full_like(alpha, b), np.full_like(alpha, g), np.full_like(alpha, r), alpha], axis=-1)
    return _encode(rgba)
