"""Findings: what they are (sampled per breast) and how they look (rendered per view).

Each renderer returns an intensity *increment* patch (float32, 12-bit units) centred on the
finding; the generator rounds it to integers, adds it inside the breast, and the pixels whose
rounded increment is > 0 are exactly the finding's mask pixels (spicules and every calcification
particle included). Occult findings are labelled but never rendered, so they have no mask pixels.

Appearance (sizes from docs/synthetic-mammograms.md):
- malignant mass: irregular body (Gaussian-random-sphere-like radius, log-normal harmonics) plus
  6-20 tapered spicules; dense (1.0-1.1 x the gland contrast); median 14 mm (5-25 mm).
- benign mass: round/oval circumscribed (smooth, sharp margin), fainter; 5-30 mm.
- malignant calcifications: 5-30 fine pleomorphic / linear particles 0.1-0.5 mm wide within a
  region of at most 2 cm; rasterised by pixel centre so at full scale each particle is 1-6 px
  wide; sub-pixel particles at small scales light one pixel in proportion to their area.
- benign calcifications: 1-10 coarse round / rim / popcorn particles 0.5-3 mm, scattered.
- architectural distortion: 8-20 straight radiating lines 10-30 mm, no central mass (benign
  "scar" variant: fewer, shorter, fainter lines).
- focal asymmetry: a lumpy focal density 15-40 mm with soft borders, present in one breast only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FINDING_KINDS = ("mass", "calcification", "asymmetry", "distortion")
_SUPERSAMPLE = 4  # sub-pixel rendering of lines, rims and margins (partial-volume effect)


@dataclass(frozen=True)
class Finding:
    """One finding in one breast.

    Attributes:
        kind: mass, calcification, asymmetry or distortion.
        cls: malignant or benign.
        side: L or R.
        position: 3-D position (t, m, z): depth fraction from the chest wall, medio-lateral and
            cranio-caudal positions in [-1, 1] (see ``anatomy.project_position``).
        size_mm: diameter (mass, asymmetry), cluster extent (calcifications), line length
            (distortion).
        occult: labelled but not visible (not drawn, no mask pixels).
        seed: seed of the finding's shape (shared by its two views).
    """

    kind: str
    cls: str
    side: str
    position: tuple[float, float, float]
    size_mm: float
    occult: bool
    seed: int

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "class": self.cls,
            "side": self.side,
            "position_3d": [round(v, 4) for v in self.position],
            "size_mm": round(self.size_mm, 2),
            "occult": self.occult,
        }


def sample_finding(
    rng: np.random.Generator, cls: str, side: str, kind: str, occult_rate: float, seed: int
) -> Finding:
    """Draw a finding's kind-specific size and 3-D position."""
    if kind == "mass":
        median = 14.0 if cls == "malignant" else 12.0
        low, high = (5.0, 25.0) if cls == "malignant" else (5.0, 30.0)
        size = float(np.clip(median * np.exp(rng.normal(0, 0.35)), low, high))
    elif kind == "calcification":
        size = float(rng.uniform(5, 20)) if cls == "malignant" else float(rng.uniform(10, 40))
    elif kind == "asymmetry":
        size = float(rng.uniform(15, 40))
    elif kind == "distortion":
        size = float(rng.uniform(10, 30)) if cls == "malignant" else float(rng.uniform(8, 15))
    else:
        raise ValueError(f"unknown finding kind {kind!r}")
    position = (float(rng.uniform(0.3, 0.8)), float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8)))
    return Finding(kind, cls, side, position, size, bool(rng.random() < occult_rate), int(seed))


# ------------------------------------------------------------------------------- rendering


def render_finding(
    finding: Finding, px_per_mm: float, contrast: float, view_kind: str
) -> np.ndarray:
    """Render a visible finding's increment patch ``[P, P]`` (float32, 12-bit units), centred on
    the finding's projected position (the patch side P is odd).

    ``contrast`` is the breast's gland-minus-fat intensity; the shape comes from
    ``finding.seed`` (identical in both views) and the view kind adds the projection's rotation.
    """
    shape_rng = np.random.default_rng(finding.seed)
    view_rng = np.random.default_rng([finding.seed, 0 if view_kind == "CC" else 1])
    rotation = 0.0 if view_kind == "CC" else float(view_rng.uniform(0.3, 0.8))
    if finding.kind == "mass" and finding.cls == "malignant":
        return _spiculated_mass(shape_rng, finding.size_mm * px_per_mm, px_per_mm, contrast, rotation)
    if finding.kind == "mass":
        return _circumscribed_mass(shape_rng, finding.size_mm * px_per_mm, contrast, rotation)
    if finding.kind == "calcification" and finding.cls == "malignant":
        return fine_calcification_cluster(shape_rng, finding.size_mm, px_per_mm, rotation)
    if finding.kind == "calcification":
        return _coarse_calcifications(shape_rng, finding.size_mm, px_per_mm, rotation)
    if finding.kind == "distortion":
        return _distortion(shape_rng, finding, px_per_mm, contrast, rotation)
    if finding.kind == "asymmetry":
        strength = 0.55 if finding.cls == "malignant" else 0.35
        return _asymmetry(shape_rng, finding.size_mm * px_per_mm, contrast * strength, view_rng)
    raise ValueError(f"unknown finding kind {finding.kind!r}")


def _grid(half: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(-half, half + 1, dtype=np.float32)
    return c[:, None], c[None, :]


def _spiculated_mass(
    rng: np.random.Generator, diameter: float, px_per_mm: float, contrast: float, rotation: float
) -> np.ndarray:
    radius = max(diameter / 2, 1.0)
    # Gaussian-random-sphere-like outline: log-radius = sum of random low-order harmonics.
    ks = np.arange(2, 9)
    amps = rng.normal(0, 0.22, ks.size) / ks**0.8
    phases = rng.uniform(0, 2 * np.pi, ks.size)
    n_spic = int(rng.integers(6, 21))
    spic_angles = rng.uniform(0, 2 * np.pi, n_spic)
    spic_len = rng.uniform(0.6, 1.6, n_spic) * radius
    spic_width = np.maximum(rng.uniform(0.6, 1.4, n_spic) * px_per_mm, 0.6)
    amplitude = float(rng.uniform(1.0, 1.1)) * 0.8 * contrast

    half = int(np.ceil(radius * (1 + 1.7 * 1.3))) + 2
    y, x = _grid(half)
    rho = np.hypot(x, y)
    theta = np.arctan2(y, x) - rotation
    log_r = np.zeros_like(theta)
    for k, a, p in zip(ks, amps, phases):
        log_r += np.float32(a) * np.cos(np.float32(k) * theta + np.float32(p))
    boundary = radius * np.exp(log_r)
    body = np.clip(1.0 - (rho / boundary) ** 2, 0.0, None) ** 0.35  # dense plateau, steep margin
    # Spicules: thin triangles from inside the margin outwards, drawn supersampled.
    ss = _SUPERSAMPLE
    side = 2 * half + 1
    canvas = np.zeros((side * ss, side * ss), np.uint8)
    for ang, length, width in zip(spic_angles + rotation, spic_len, spic_width):
        log_b = sum(a * np.cos(k * (ang - rotation) + p) for k, a, p in zip(ks, amps, phases))
        r0 = 0.8 * radius * np.exp(log_b)
        r1 = r0 + length
        d = np.array([np.cos(ang), np.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        base = d * r0
        pts = np.array([base + nrm * width / 2, base - nrm * width / 2, d * r1])
        pts = (pts + half + 0.5) * ss - 0.5
        cv2.fillConvexPoly(canvas, np.round(pts * 16).astype(np.int32), 255, cv2.LINE_AA, shift=4)
    spicules = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    # Spicule intensity fades with distance from the body, like tapering strands.
    fade = np.clip(1.3 - 0.6 * rho / (radius * 2.0), 0.3, 1.0)
    return (amplitude * np.maximum(body, 0.55 * spicules * fade)).astype(np.float32)


def _circumscribed_mass(rng: np.random.Generator, diameter: float, contrast: float, rotation: float) -> np.ndarray:
    a = max(diameter / 2, 1.0)
    b = a * float(rng.uniform(0.65, 1.0))
    angle = float(rng.uniform(0, np.pi)) + rotation
    amplitude = float(rng.uniform(0.45, 0.65)) * contrast
    half = int(np.ceil(a)) + 2
    ss = _SUPERSAMPLE
    c = (np.arange(-half * ss, (half + 1) * ss, dtype=np.float32) + 0.5 - ss / 2) / ss
    y, x = c[:, None], c[None, :]
    u = (x * np.cos(angle) + y * np.sin(angle)) / a
    v = (-x * np.sin(angle) + y * np.cos(angle)) / b
    # Sphere-like thickness profile: smooth, convex, sharp circumscribed margin.
    profile = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, None)) ** 0.5
    side = 2 * half + 1
    return (amplitude * cv2.resize(profile, (side, side), interpolation=cv2.INTER_AREA)).astype(np.float32)


def _place_particles(
    rng: np.random.Generator, count: int, region_radius: float, spacing: np.ndarray
) -> list[tuple[float, float]]:
    """Positions inside a disc, at least ``spacing[i] + spacing[j]`` apart (rejection sampling)."""
    placed: list[tuple[float, float, float]] = []
    for i in range(count):
        for _ in range(100):
            r = region_radius * np.sqrt(rng.random())
            a = rng.uniform(0, 2 * np.pi)
            p = (r * np.cos(a), r * np.sin(a))
            if all(np.hypot(p[0] - q[0], p[1] - q[1]) >= spacing[i] + q[2] for q in placed):
                placed.append((p[0], p[1], spacing[i]))
                break
    return [(p[0], p[1]) for p in placed]


def fine_calcification_cluster(
    rng: np.random.Generator, extent_mm: float, px_per_mm: float, rotation: float = 0.0
) -> np.ndarray:
    """5-30 fine pleomorphic / linear particles, 0.1-0.5 mm wide, within ``extent_mm`` (<= 20).

    A pixel belongs to a particle when its centre lies inside the particle's ellipse, so at full
    scale a particle of width w mm lights ``round(w / 0.085)`` = 1-6 pixels across. A particle
    too small to contain any pixel centre (small scales) brightens the pixel nearest to it in
    proportion to its area (partial volume). Particles do not touch each other.
    """
    count = int(rng.integers(5, 31))
    widths = rng.uniform(0.1, 0.5, count)  # mm
    elong = np.where(rng.random(count) < 0.4, rng.uniform(1.5, 3.0, count), rng.uniform(1.0, 1.4, count))
    lengths = widths * elong
    angles = rng.uniform(0, np.pi, count)
    brightness = rng.uniform(0.7, 1.0, count) * 1700.0
    # Keep particles apart by their half-lengths plus a gap of >= 2 px so each stays one component.
    spacing = lengths / 2 + max(0.3, 1.0 / px_per_mm)
    positions = _place_particles(rng, count, extent_mm / 2, spacing)
    half = int(np.ceil((extent_mm / 2 + lengths.max()) * px_per_mm)) + 4
    patch = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    pixel_area = 1.0  # in px^2
    for (py, pxx), w, ln, ang, bright in zip(positions, widths, lengths, angles, brightness):
        cy, cx = py * px_per_mm, pxx * px_per_mm
        cy, cx = np.cos(rotation) * cy - np.sin(rotation) * cx, np.sin(rotation) * cy + np.cos(rotation) * cx
        a, b = ln * px_per_mm / 2, w * px_per_mm / 2  # semi-axes (px)
        r = int(np.ceil(a)) + 1
        iy, ix = int(np.floor(cy)), int(np.floor(cx))
        ys = np.arange(iy - r, iy + r + 2, dtype=np.float64)[:, None]
        xs = np.arange(ix - r, ix + r + 2, dtype=np.float64)[None, :]
        dy, dx = ys - cy, xs - cx
        u = (dx * np.cos(ang) + dy * np.sin(ang)) / a
        v = (-dx * np.sin(ang) + dy * np.cos(ang)) / b
        inside = u * u + v * v <= 1.0
        area = np.pi * a * b
        if inside.sum() == 0 or area < pixel_area:
            # Sub-pixel particle: one pixel, brightened by the particle's share of it.
            patch[int(round(cy)) + half, int(round(cx)) + half] += bright * min(1.0, area / pixel_area)
        else:
            sub = patch[iy - r + half : iy + r + 2 + half, ix - r + half : ix + r + 2 + half]
            sub[inside] += bright
    return patch


def _coarse_calcifications(
    rng: np.random.Generator, extent_mm: float, px_per_mm: float, rotation: float
) -> np.ndarray:
    count = int(rng.integers(1, 11))
    sizes = rng.uniform(0.5, 3.0, count)  # diameters, mm
    kinds = rng.choice(["round", "rim", "popcorn"], size=count, p=[0.5, 0.25, 0.25])
    positions = _place_particles(rng, count, extent_mm / 2, sizes / 2 + 0.5)
    half = int(np.ceil((extent_mm / 2 + 3.0) * px_per_mm)) + 2
    ss = _SUPERSAMPLE
    side = 2 * half + 1
    canvas = np.zeros((side * ss, side * ss), np.uint8)
    for (py, pxx), size, kind in zip(positions, sizes, kinds):
        cy, cx = py * px_per_mm, pxx * px_per_mm
        cy, cx = np.cos(rotation) * cy - np.sin(rotation) * cx, np.sin(rotation) * cy + np.cos(rotation) * cx
        centre = (int(round((cx + half + 0.5) * ss * 16)), int(round((cy + half + 0.5) * ss * 16)))
        rad = max(size / 2 * px_per_mm * ss, 1.0)
        level = int(rng.integers(200, 256))
        if kind == "round":
            cv2.circle(canvas, centre, int(rad * 16), level, -1, cv2.LINE_AA, shift=4)
        elif kind == "rim":
            cv2.circle(canvas, centre, int(rad * 0.8 * 16), level, max(1, int(round(rad * 0.35))), cv2.LINE_AA, shift=4)
        else:  # popcorn: a few overlapping lobes
            for _ in range(3):
                off = rng.normal(0, rad * 0.35, 2)
                c2 = (centre[0] + int(off[0] * 16), centre[1] + int(off[1] * 16))
                cv2.circle(canvas, c2, int(rad * 0.6 * 16), level, -1, cv2.LINE_AA, shift=4)
    cover = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return cover * np.float32(2000.0)


def _distortion(
    rng: np.random.Generator, finding: Finding, px_per_mm: float, contrast: float, rotation: float
) -> np.ndarray:
    malignant = finding.cls == "malignant"
    n_lines = int(rng.integers(8, 21)) if malignant else int(rng.integers(4, 9))
    lengths = finding.size_mm * rng.uniform(0.6, 1.0, n_lines) * px_per_mm
    angles = rng.uniform(0, 2 * np.pi, n_lines) + rotation
    start = float(rng.uniform(1.5, 3.0)) * px_per_mm  # no central mass: lines start off-centre
    width_mm = rng.uniform(0.3, 0.7, n_lines)
    amplitude = (0.5 if malignant else 0.3) * contrast
    half = int(np.ceil(start + lengths.max())) + 2
    ss = _SUPERSAMPLE
    side = 2 * half + 1
    canvas = np.zeros((side * ss, side * ss), np.uint8)
    for ang, length, w in zip(angles, lengths, width_mm):
        d = np.array([np.cos(ang), np.sin(ang)])
        p0 = (d * start + half + 0.5) * ss
        p1 = (d * (start + length) + half + 0.5) * ss
        thick = max(1, int(round(w * px_per_mm * ss)))
        cv2.line(canvas, tuple(np.round(p0 * 16).astype(int)), tuple(np.round(p1 * 16).astype(int)),
                 255, thick, cv2.LINE_AA, shift=4)
    cover = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return (amplitude * cover).astype(np.float32)


def _asymmetry(rng: np.random.Generator, diameter: float, amplitude: float, view_rng: np.random.Generator) -> np.ndarray:
    radius = max(diameter / 2, 2.0)
    half = int(np.ceil(radius)) + 1
    y, x = _grid(half)
    aspect = float(rng.uniform(0.6, 1.0))
    angle = float(view_rng.uniform(0, np.pi))
    u = (x * np.cos(angle) + y * np.sin(angle)) / radius
    v = (-x * np.sin(angle) + y * np.cos(angle)) / (radius * aspect)
    envelope = np.clip(1.0 - u * u - v * v, 0.0, None) ** 2  # compact support, soft border
    # Lumpy interior: smooth noise so the density resembles gland, not a mass.
    lumps = cv2.GaussianBlur(view_rng.standard_normal(envelope.shape).astype(np.float32), (0, 0), max(radius / 4, 1.0))
    lumps /= max(float(lumps.std()), 1e-6)
    return (amplitude * envelope * np.clip(1.0 + 0.3 * lumps, 0.3, 1.7)).astype(np.float32)
