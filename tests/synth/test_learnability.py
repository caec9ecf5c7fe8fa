"""The synthetic data must be learnable at the CPU demo's scales: a logistic regression on a few
hand-made features of lesion-centred vs normal patches separates them well above chance."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mammokit.config import VIEWS
from mammokit.synth import SynthConfig, plan_dataset, render_view


def patch_features(patch: np.ndarray, reference: float) -> np.ndarray:
    """Intensity, contrast and edge statistics of a patch (relative to the breast's median)."""
    p = patch.astype(np.float64) / reference
    n = p.shape[0]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(yy, xx)
    centre, ring = p[r < n / 6], p[(r >= n / 4) & (r < n / 2)]
    grad = np.hypot(*np.gradient(p))
    log = -ndi.gaussian_laplace(p, sigma=max(n / 10, 1.0))[n // 2, n // 2]
    top = ndi.white_tophat(p, size=3)
    return np.array([
        p.mean(), p.std(), p.max(), np.percentile(p, 99), centre.mean() - ring.mean(), grad.mean(),
        log, top.max(), (top > 0.15).mean(),
    ])


def lesion_and_normal_patches(scale: float, n_exams: int, seed: int):
    """(features, class) with class "malignant", "benign" or "normal"; patches of the preset's
    patch size (256 px at full scale) centred on visible findings or on random breast pixels of
    finding-free breasts."""
    cfg = SynthConfig(scale=scale, cancer_rate=0.6, benign_rate=0.6, occult_rate_malignant=0, occult_rate_benign=0)
    size = max(8, int(round(256 * scale)))
    half = size // 2
    rng = np.random.default_rng(seed)
    feats, classes = [], []
    for plan in plan_dataset(n_exams, seed, cfg):
        for view in VIEWS:
            r = render_view(plan, view, cfg)
            img = np.pad(r.image, half)
            reference = float(np.median(r.image[r.breast]))
            sides = {f.side for f in plan.findings}
            if view[0] in sides:
                for idx, entry in r.findings.items():
                    y, x = (int(round(v)) + half for v in entry["center"])
                    feats.append(patch_features(img[y - half : y + half, x - half : x + half], reference))
                    classes.append(plan.findings[idx].cls)
            else:
                inner = ndi.binary_erosion(r.breast, iterations=half // 2 + 1)
                ys, xs = np.nonzero(inner)
                k = rng.integers(len(ys))
                y, x = ys[k] + half, xs[k] + half
                feats.append(patch_features(img[y - half : y + half, x - half : x + half], reference))
                classes.append("normal")
    return np.array(feats), np.array(classes)


def cv_auc(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    folds = StratifiedKFold(n_splits=4, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def test_lesion_patches_are_learnable_at_quarter_scale():
    x, cls = lesion_and_normal_patches(0.25, n_exams=14, seed=3)
    assert (cls == "normal").sum() >= 8 and (cls == "malignant").sum() >= 8
    auc_lesion = cv_auc(x, (cls != "normal").astype(int))
    assert auc_lesion > 0.8, auc_lesion
    # Malignant against everything else (benign and normal), the demo's primary task.
    auc_malignant = cv_auc(x, (cls == "malignant").astype(int))
    assert auc_malignant > 0.75, auc_malignant
