"""Breast anatomy: outline per woman and view, pectoral muscle, and 3-D -> view projection.

All geometry is computed in the *left-breast* display frame (chest wall on the left edge, x grows
towards the nipple); right-breast views are the mirror image (see ``generator.render_view``).

Shape model: a superellipse ``(u^n + |v|^n)^(1/n) <= rho(theta)`` attached to the chest-wall edge,
``u = x / depth`` and ``v = (y - y_c) / half_height``, whose radius is perturbed by a few low-order
harmonics (``rho = 1 + sum a_k cos(k theta + phi_k)``) so outlines differ between women. The two
sides of a woman share the parameters up to a small jitter; the MLO view adds the axillary tail
(which reaches the top edge) and the pectoral-muscle triangle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from mammokit.synth.config import SynthConfig


@dataclass(frozen=True)
class BreastShape:
    """One breast's shape parameters (sizes in mm, positions as fractions of the image height)."""

    cc_depth_mm: float  # nipple-to-chest-wall distance on CC (7-9 cm typical)
    cc_height_mm: float  # breast width seen on CC (15-20 cm)
    cc_center: float  # row of the nipple axis on CC, fraction of H
    exponent: float  # superellipse exponent (2 = ellipse; larger = boxier)
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) for k = 2, 3, ...
    mlo_depth_factor: float  # MLO shows more posterior tissue
    mlo_height_mm: float
    mlo_center: float
    axilla_width_mm: float  # width of the axillary tail at the top edge (MLO)
    axilla_end: float  # row (fraction of H) where the axillary tail merges into the breast
    pectoral_width_mm: float  # pectoral triangle width at the top edge (MLO)
    pectoral_height: float  # pectoral lower tip row, fraction of H
    cc_sliver: tuple[float, float] | None  # (width_mm, height_mm) of the CC pectoral sliver, or None


def sample_breast_shape(rng: np.random.Generator) -> BreastShape:
    """A woman's (left) breast shape."""
    harmonics = tuple((float(rng.normal(0, 0.035 / k**0.5)), float(rng.uniform(0, 2 * np.pi))) for k in range(2, 6))
    axilla_width = float(rng.uniform(50, 70))
    return BreastShape(
        cc_depth_mm=float(np.clip(rng.normal(86, 10), 65, 110)),
        cc_height_mm=float(rng.uniform(150, 200)),
        cc_center=float(rng.uniform(0.46, 0.54)),
        exponent=float(rng.uniform(1.7, 2.3)),
        harmonics=harmonics,
        mlo_depth_factor=float(rng.uniform(1.08, 1.2)),
        mlo_height_mm=float(rng.uniform(190, 235)),
        mlo_center=float(rng.uniform(0.52, 0.57)),
        axilla_width_mm=axilla_width,
        axilla_end=float(rng.uniform(0.42, 0.5)),
        pectoral_width_mm=float(axilla_width * rng.uniform(0.55, 0.8)),
        pectoral_height=float(rng.uniform(0.3, 0.42)),
        cc_sliver=(float(rng.uniform(3, 10)), float(rng.uniform(20, 40))) if rng.random() < 0.3 else None,
    )


def jitter_shape(shape: BreastShape, rng: np.random.Generator, amount: float = 0.03) -> BreastShape:
    """The contralateral breast: the same woman's shape with a few per cent of jitter."""

    def j(value: float) -> float:
        return float(value * (1 + rng.normal(0, amount)))

    return dataclasses.replace(
        shape,
        cc_depth_mm=j(shape.cc_depth_mm),
        cc_height_mm=j(shape.cc_height_mm),
        cc_center=float(shape.cc_center + rng.normal(0, 0.005)),
        harmonics=tuple((a + float(rng.normal(0, 0.008)), p) for a, p in shape.harmonics),
        mlo_height_mm=j(shape.mlo_height_mm),
        axilla_width_mm=j(shape.axilla_width_mm),
        pectoral_width_mm=j(shape.pectoral_width_mm),
        pectoral_height=float(shape.pectoral_height + rng.normal(0, 0.01)),
    )


@dataclass
class ViewGeometry:
    """A view's breast region in the left-breast frame.

    Attributes:
        mask: ``[H, W]`` bool, the breast (touches the chest-wall edge, x = 0).
        pectoral: ``[H, W]`` float32 in [0, 1], pectoral-muscle fraction (soft edge).
        depth_px: nipple distance from the chest wall (pixels).
        center_row: row of the nipple axis.
        half_height_px: half the breast's extent along the chest wall at x = 0.
        exponent: superellipse exponent (to place findings inside the outline).
    """

    mask: np.ndarray
    pectoral: np.ndarray
    depth_px: float
    center_row: float
    half_height_px: float
    exponent: float


def view_geometry(shape: BreastShape, view_kind: str, cfg: SynthConfig) -> ViewGeometry:
    """Rasterise a breast's outline and pectoral muscle for ``view_kind`` ("CC" or "MLO")."""
    h, w = cfg.shape
    px = cfg.px
    if view_kind == "CC":
        depth, half, center = px(shape.cc_depth_mm), px(shape.cc_height_mm) / 2, shape.cc_center * h
    elif view_kind == "MLO":
        depth = px(shape.cc_depth_mm * shape.mlo_depth_factor)
        half, center = px(shape.mlo_height_mm) / 2, shape.mlo_center * h
    else:
        raise ValueError(f"unknown view kind {view_kind!r}; expected 'CC' or 'MLO'")
    # Work on the columns the breast can reach only: the FFT texture and every map below are
    # sized by this box, which is what keeps full-scale generation fast.
    width = min(w, int(np.ceil(depth * 1.25)) + 2)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :] + np.float32(0.5)
    u = x / np.float32(depth)
    v = (y - np.float32(center)) / np.float32(half)
    n = np.float32(shape.exponent)
    r = np.power(np.power(u, n) + np.power(np.abs(v), n), np.float32(1.0) / n)
    theta = np.arctan2(v, u)
    rho = np.ones_like(theta)
    for k, (amp, phase) in enumerate(shape.harmonics, start=2):
        rho += np.float32(amp) * np.cos(np.float32(k) * theta + np.float32(phase))
    field = r / rho
    pect = np.zeros((h, width), np.float32)
    if view_kind == "MLO":
        # Axillary tail: a band along the chest wall from the top edge, narrowing to nothing at
        # ``axilla_end``; merged with the body by a soft minimum so the junction is rounded.
        y_end = np.float32(shape.axilla_end * h)
        taper = np.clip(1.0 - y / y_end, 1e-3, None)
        axilla = (x / np.float32(px(shape.axilla_width_mm))) / taper
        k = np.float32(0.2)
        field = -k * np.logaddexp(-field / k, -axilla / k)
        pw, ph = px(shape.pectoral_width_mm), shape.pectoral_height * h
        edge = x / np.float32(pw) + y / np.float32(ph)
        pect = _soft_inside(edge, transition=np.float32(px(1.0) / max(pw, 1.0)))
    elif shape.cc_sliver is not None:
        sw, sh = px(shape.cc_sliver[0]), px(shape.cc_sliver[1]) / 2
        edge = np.sqrt((x / np.float32(sw)) ** 2 + ((y - np.float32(center)) / np.float32(sh)) ** 2)
        pect = _soft_inside(edge, transition=np.float32(px(0.7) / max(sw, 1.0)))
    inside_box = field <= 1.0
    mask = np.zeros((h, w), bool)
    mask[:, :width] = inside_box
    pect_full = np.zeros((h, w), np.float32)
    pect_full[:, :width] = pect * inside_box
    return ViewGeometry(mask, pect_full, float(depth), float(center), float(half), float(shape.exponent))


def _soft_inside(edge: np.ndarray, transition: np.float32) -> np.ndarray:
    """1 inside ``edge < 1``, 0 outside, with a linear ramp of width ``transition``."""
    return np.clip((1.0 - edge) / max(float(transition), 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)


def distance_to_skin(mask: np.ndarray, view_kind: str) -> np.ndarray:
    """Distance (pixels, float32) of each breast pixel to the skin outline.

    The chest-wall edge (and, on MLO, the top edge where the axilla leaves the image) is not
    skin, so the mask is extended past those edges before the distance transform.
    """
    pad = max(8, mask.shape[0] // 8)
    top = pad if view_kind == "MLO" else 0
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), top, 0, pad, 0, cv2.BORDER_REPLICATE)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)
    return dist[top:, pad:]


def project_position(position: tuple[float, float, float], geo: ViewGeometry, view_kind: str) -> tuple[float, float]:
    """Project a 3-D position in the breast onto a view (left-breast frame).

    ``position = (t, m, z)``: ``t`` depth from the chest wall (fraction of the nipple distance),
    ``m`` medio-lateral and ``z`` cranio-caudal position in [-1, 1]. CC shows the medio-lateral
    axis vertically; MLO (about 45 degrees) mixes the two axes. The row is scaled by the outline's
    half-height at that depth (times 0.8) so the finding lies inside the breast on both views.
    Returns (row, col) in pixels.
    """
    t, m, z = position
    extent = (1.0 - min(t, 0.99) ** geo.exponent) ** (1.0 / geo.exponent)
    v = m if view_kind == "CC" else 0.5 * (m + z)
    row = geo.center_row + 0.8 * extent * v * geo.half_height_px
    return float(row), float(t * geo.depth_px)
