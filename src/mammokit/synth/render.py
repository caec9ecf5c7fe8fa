"""Rendering one view of a planned exam: tissue, pectoral muscle, skin, findings, burned-in label.

Intensities are 12-bit (0-4095) display values of a FOR PRESENTATION image: background exactly 0,
fat dark grey, fibroglandular tissue and muscle brighter, calcifications nearly white. Everything
is computed in the left-breast frame (chest wall at x = 0); right-breast views are mirrored at the
end, and the view label is burned in afterwards on the side away from the chest wall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from mammokit.synth.anatomy import (
    BreastShape,
    distance_to_skin,
    jitter_shape,
    project_position,
    sample_breast_shape,
    view_geometry,
)
from mammokit.synth.config import MAX_12BIT, SynthConfig
from mammokit.synth.findings import render_finding
from mammokit.synth.plan import ExamPlan
from mammokit.synth.texture import dense_tissue_map, power_law_noise
from mammokit.views import View, chest_wall_side

LABEL_LEVEL = 3900  # burned-in text is bright, as on real images
TISSUE_MAX = 3400  # tissue stays below this so a finding always changes the pixels it covers


@dataclass
class ViewRender:
    """One rendered view, in display orientation (horizontal_flip NO).

    Attributes:
        image: ``[H, W]`` uint16, 12-bit values (0-4095), 0 = background.
        malignant / benign: ``[H, W]`` bool lesion masks.
        breast: ``[H, W]`` bool breast region.
        label: ``[H, W]`` bool burned-in label / marker pixels.
        findings: per finding index -> {"center": [row, col], "pixels": n} for drawn findings.
    """

    image: np.ndarray
    malignant: np.ndarray
    benign: np.ndarray
    breast: np.ndarray
    label: np.ndarray
    findings: dict[int, dict] = field(default_factory=dict)


def breast_shapes(plan: ExamPlan) -> dict[str, BreastShape]:
    """The woman's left and right breast shapes (right = left with a few per cent of jitter)."""
    left = sample_breast_shape(np.random.default_rng([plan.anatomy_seed, 0]))
    right = jitter_shape(left, np.random.default_rng([plan.anatomy_seed, 1]))
    return {"L": left, "R": right}


def exam_tissue(plan: ExamPlan) -> dict[str, float]:
    """Per-exam grey levels (12-bit) and skin thickness."""
    rng = np.random.default_rng([plan.seed, 0])
    fat = float(rng.uniform(550, 800))
    return {
        "fat": fat,
        "gland": fat + float(rng.uniform(1300, 1700)),
        "muscle": float(rng.uniform(2500, 2900)),
        "skin_mm": float(rng.uniform(1.0, 2.2)),
        "beta_base": float(rng.normal(0, 1)),  # standardised draw, mapped to beta per config
    }


def texture_beta(plan: ExamPlan, view_kind: str, cfg: SynthConfig) -> float:
    z = exam_tissue(plan)["beta_base"]
    beta = float(np.clip(cfg.texture_beta_mean + cfg.texture_beta_std * z, *cfg.texture_beta_range))
    return beta + (cfg.mlo_beta_offset if view_kind == "MLO" else 0.0)


def render_view(plan: ExamPlan, view: str, cfg: SynthConfig, draw_findings: bool = True) -> ViewRender:
    """Render ``view`` ("L-CC", "R-MLO", ...) of ``plan``.

    ``draw_findings=False`` renders the same view without its findings (same random streams):
    the pixels that differ are exactly the mask pixels.
    """
    v = View.parse(view)
    side, kind = v.laterality, v.kind
    shape = breast_shapes(plan)[side]
    geo = view_geometry(shape, kind, cfg)
    tissue = exam_tissue(plan)
    rng = np.random.default_rng([plan.seed, 1, 0 if side == "L" else 1, 0 if kind == "CC" else 1])
    h, w = cfg.shape
    mask = geo.mask
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:  # cannot happen with the sampled shapes; guard against bad parameters
        raise RuntimeError(f"exam {plan.exam_id} {view}: empty breast outline")
    r0, r1, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
    inside = mask[r0:r1, :c1]

    # Tissue: power-law texture thresholded to the woman's dense-area fraction, glands away from
    # the skin; texture also modulates the fat so no region is flat.
    texture = power_law_noise((r1 - r0, c1), texture_beta(plan, kind, cfg), rng)
    dist_mm = distance_to_skin(inside, kind) / np.float32(cfg.px_per_mm)
    prior = np.clip(dist_mm / np.float32(25.0), 0, 1) * np.float32(1.5)
    dense = dense_tissue_map(texture, prior, inside, plan.dense_fraction)
    img = tissue["fat"] + (tissue["gland"] - tissue["fat"]) * dense + np.float32(90.0) * texture
    pect = geo.pectoral[r0:r1, :c1]
    if pect.any():
        img = img * (1 - pect) + pect * (tissue["muscle"] + np.float32(60.0) * texture)
    # Thinner tissue near the skin line: darker periphery; the skin itself a thin brighter rim.
    img *= np.float32(0.45) + np.float32(0.55) * (1 - np.exp(-dist_mm / np.float32(6.0)))
    skin = np.clip((tissue["skin_mm"] - dist_mm) / np.float32(0.5) + 0.5, 0, 1)
    img += np.float32(250.0) * skin
    img += rng.normal(0, 12.0, img.shape).astype(np.float32)  # quantum noise
    base = np.zeros((h, w), np.int32)
    base[r0:r1, :c1] = np.where(inside, np.clip(np.rint(img), 1, TISSUE_MAX), 0).astype(np.int32)

    malignant = np.zeros((h, w), bool)
    benign = np.zeros((h, w), bool)
    drawn: dict[int, dict] = {}
    contrast = tissue["gland"] - tissue["fat"]
    for idx, finding in enumerate(plan.findings):
        if finding.side != side:
            continue
        row, col = project_position(finding.position, geo, kind)
        entry = {"center": [round(row, 1), round(col if side == "L" else w - 1 - col, 1)], "pixels": 0}
        drawn[idx] = entry
        if finding.occult or not draw_findings:
            continue
        increment = render_finding(finding, cfg.px_per_mm, contrast, kind)
        if finding.cls == "malignant" and finding.kind != "calcification" and cfg.malignant_contrast != 1.0:
            increment = increment * np.float32(cfg.malignant_contrast)
        patch = np.rint(increment).astype(np.int32)
        changed = _add_patch(base, patch, int(round(row)), int(round(col)), mask)
        (malignant if finding.cls == "malignant" else benign)[changed] = True
        entry["pixels"] = int(changed.sum())
    image = np.clip(base, 0, MAX_12BIT).astype(np.uint16)
    if side == "R":  # display orientation: the right breast's chest wall on the right edge
        image, malignant, benign, mask = image[:, ::-1], malignant[:, ::-1], benign[:, ::-1], mask[:, ::-1]
    image = np.ascontiguousarray(image)
    label = burn_label(image, view, mask, cfg)
    return ViewRender(
        image, np.ascontiguousarray(malignant), np.ascontiguousarray(benign), np.ascontiguousarray(mask), label, drawn
    )


def _add_patch(base: np.ndarray, patch: np.ndarray, row: int, col: int, mask: np.ndarray) -> np.ndarray:
    """Add an increment patch centred at (row, col), inside the breast only. Returns the bool
    image of changed pixels."""
    h, w = base.shape
    ph, pw = patch.shape
    top, left = row - ph // 2, col - pw // 2
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(h, top + ph), min(w, left + pw)
    changed = np.zeros(base.shape, bool)
    if y0 >= y1 or x0 >= x1:
        return changed
    sub = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    hit = (sub > 0) & mask[y0:y1, x0:x1]
    base[y0:y1, x0:x1][hit] += sub[hit]
    changed[y0:y1, x0:x1] = hit
    return changed


def burn_label(image: np.ndarray, view: str, breast: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """Burn the view label ("LCC", "RMLO") and a square marker into ``image`` (in place), in the
    top or bottom corner away from the chest wall, whichever is farther from the breast.

    The label is kept at least ``2 * 100 * scale + 20 * scale`` pixels from the breast so the
    crop's erosion / dilation (100 iterations at full scale) cannot merge the two. Returns the
    bool mask of the label pixels.
    """
    h, w = image.shape
    s = cfg.scale
    text = view.replace("-", "")
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = 3.0 * s
    thickness = max(1, int(round(8 * s)))
    (tw, th), base = cv2.getTextSize(text, font, font_scale, thickness)
    margin = int(round(60 * s)) + 2
    marker = max(2, int(round(40 * s)))
    block_w, block_h = tw, th + base + marker + margin // 2
    far_right = chest_wall_side(view) == "left"  # the label goes on the side away from the chest wall
    x = w - margin - block_w if far_right else margin
    # Clearance from the breast for each candidate corner: choose the larger one.
    free = cv2.distanceTransform((~breast).astype(np.uint8), cv2.DIST_L2, 5)
    candidates = []
    for y in (margin + th, h - margin - block_h + th):
        region = free[max(0, y - th) : y - th + block_h, max(0, x) : x + block_w]
        candidates.append((float(region.min()) if region.size else 0.0, y))
    clearance, y = max(candidates)
    needed = 2 * 100 * s + 20 * s
    if clearance < needed:
        raise RuntimeError(
            f"{view}: no room for the view label {needed:.0f} px away from the breast (best {clearance:.0f} px)"
        )
    canvas = np.zeros((h, w), np.uint8)
    cv2.putText(canvas, text, (x, y), font, font_scale, 255, thickness, cv2.LINE_8)
    my = y + base + margin // 2
    mx = x if far_right else x + block_w - marker
    canvas[my : my + marker, mx : mx + marker] = 255
    label = canvas > 0
    image[label] = LABEL_LEVEL
    return label
