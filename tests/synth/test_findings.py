"""Pixel content of synthetic views: texture spectrum, exact masks, calcification sizes, labels
statistics and learnability."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from mammokit.config import VIEWS
from mammokit.synth import SynthConfig, plan_dataset, render_view
from mammokit.synth.findings import fine_calcification_cluster
from mammokit.synth.texture import power_law_noise


def _radial_slope(field: np.ndarray, fmin: float = 0.02, fmax: float = 0.2) -> float:
    """Log-log slope of the radially averaged power spectrum over mid frequencies (numpy only)."""
    h, w = field.shape
    power = np.abs(np.fft.fft2(field - field.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    f = np.hypot(fy, fx)
    edges = np.geomspace(fmin, fmax, 16)
    centres, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (f >= lo) & (f < hi)
        centres.append(np.sqrt(lo * hi))
        means.append(power[sel].mean())
    return float(np.polyfit(np.log(centres), np.log(means), 1)[0])


@pytest.mark.parametrize("beta", [2.5, 3.1, 3.5])
def test_texture_power_law_slope(beta):
    field = power_law_noise((384, 320), beta, np.random.default_rng(0))
    assert field.dtype == np.float32 and abs(field.mean()) < 1e-3 and abs(field.std() - 1) < 1e-3
    slope = _radial_slope(field)
    assert abs(-slope - beta) < 0.15, slope


def test_rendered_breast_texture_slope():
    # Inside the breast of a rendered view (a square well inside the outline).
    cfg = SynthConfig(scale=0.25, cancer_rate=0, benign_rate=0)
    slopes = []
    for plan in plan_dataset(3, 2, cfg):
        r = render_view(plan, "L-CC", cfg)
        rows = np.flatnonzero(r.breast[:, 10])
        mid = (rows[0] + rows[-1]) // 2
        patch = r.image[mid - 64 : mid + 64, 20:148].astype(np.float64)
        assert r.breast[mid - 64 : mid + 64, 20:148].all()
        slopes.append(-_radial_slope(patch, 0.03, 0.2))
    assert 2.5 <= float(np.median(slopes)) <= 3.6, slopes


@pytest.mark.parametrize("kind", ["mass", "calcification", "asymmetry", "distortion"])
@pytest.mark.parametrize("cls", ["malignant", "benign"])
def test_masks_are_exactly_the_changed_pixels(kind, cls):
    scale = 0.25
    cfg = SynthConfig(
        scale=scale,
        cancer_rate=1.0 if cls == "malignant" else 0.0,
        benign_rate=1.0 if cls == "benign" else 0.0,
        occult_rate_malignant=0.0,
        occult_rate_benign=0.0,
        malignant_mix={kind: 1},
        benign_mix={kind: 1},
    )
    plan = plan_dataset(1, 4, cfg)[0]
    side = plan.findings[0].side
    for view in (f"{side}-CC", f"{side}-MLO"):
        with_f = render_view(plan, view, cfg)
        without = render_view(plan, view, cfg, draw_findings=False)
        changed = with_f.image != without.image
        mask = with_f.malignant | with_f.benign
        assert changed.any()
        assert np.array_equal(changed, mask)
        assert not getattr(with_f, "benign" if cls == "malignant" else "malignant").any()
        assert (with_f.image[changed] > without.image[changed]).all()


def test_occult_findings_leave_no_trace():
    cfg = SynthConfig(scale=0.125, cancer_rate=1, benign_rate=0, occult_rate_malignant=1.0)
    plan = plan_dataset(1, 9, cfg)[0]
    assert plan.findings[0].occult and plan.labels["left_malignant"] + plan.labels["right_malignant"] == 1
    for view in VIEWS:
        a, b = render_view(plan, view, cfg), render_view(plan, view, cfg, draw_findings=False)
        assert np.array_equal(a.image, b.image) and not a.malignant.any()


def test_fine_calcification_particles_full_scale():
    px_per_mm = 1 / 0.085
    for seed in range(4):
        patch = np.rint(fine_calcification_cluster(np.random.default_rng(seed), 20.0, px_per_mm)) > 0
        n, lab, stats, _ = cv2.connectedComponentsWithStats(patch.astype(np.uint8), connectivity=8)
        assert 5 <= n - 1 <= 30
        ys, xs = np.nonzero(patch)
        assert np.hypot(ys[:, None] - ys[None], xs[:, None] - xs[None]).max() <= 20 / 0.085 + 12
        for k in range(1, n):
            comp = np.pad((lab == k).astype(np.uint8), 2)
            # width across the particle: inscribed-disc diameter in pixels (2 d - 1 pixel rows)
            d = cv2.distanceTransform(comp, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).max()
            width = 2 * d - 1
            assert 1 <= width <= 6.3, (seed, k, width)


def test_birads_noise_and_prevalence():
    cfg = SynthConfig(scale=0.125, cancer_rate=0.25, benign_rate=0.25)
    plans = plan_dataset(6000, 1, cfg)
    cancer = [p for p in plans if p.labels["left_malignant"] or p.labels["right_malignant"]]
    benign_only = [
        p for p in plans if not (p.labels["left_malignant"] or p.labels["right_malignant"])
        and (p.labels["left_benign"] or p.labels["right_benign"])
    ]
    normal = [p for p in plans if not p.findings]
    assert abs(len(cancer) / len(plans) - 0.25) < 0.02
    assert abs(len(benign_only) / len(plans) - 0.75 * 0.25) < 0.02

    def share(group, value):
        return sum(p.birads == value for p in group) / len(group)

    assert abs(share(cancer, 0) - 0.87) < 0.03
    assert abs(share(normal, 0) - (0.10 + 0.90 * 0.03)) < 0.02  # recall noise + FP biopsies
    assert share(normal, 2) == 0
    assert share(benign_only, 2) > 0.7
    findings = [f for p in plans for f in p.findings]
    occ_m = np.mean([f.occult for f in findings if f.cls == "malignant"])
    occ_b = np.mean([f.occult for f in findings if f.cls == "benign"])
    assert abs(occ_m - 0.13) < 0.03 and abs(occ_b - 0.43) < 0.04
    assert all(p.biopsied == 1 for p in cancer + benign_only)
    assert 0.01 < np.mean([p.biopsied for p in normal]) < 0.05
    density = Counter(p.density for p in plans)
    assert abs(density["B"] / len(plans) - 0.47) < 0.05 and density["D"] < density["A"] < density["C"]
    splits = Counter(p.split for p in plans)
    assert abs(splits["train"] / len(plans) - 0.6) < 0.04
