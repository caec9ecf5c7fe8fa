"""Paired bootstrap of AUC differences and the claim verdicts."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mammokit.evaluation.bootstrap import draw_group_resamples, rows_for_groups
from mammokit.evaluation.paired import (
    DOES_NOT_HOLD,
    HOLDS,
    UNDETERMINED,
    WITHIN_NOISE,
    claim_verdict,
    compare_predictions,
    paired_auc_difference,
)


def test_verdicts():
    assert claim_verdict(0.01, 0.05) == HOLDS
    assert claim_verdict(-0.02, 0.04) == WITHIN_NOISE  # a CI crossing 0 is noise, whatever the point
    assert claim_verdict(0.0, 0.04) == WITHIN_NOISE
    assert claim_verdict(-0.05, -0.001) == DOES_NOT_HOLD
    assert claim_verdict(None, 0.1) == UNDETERMINED
    with pytest.raises(ValueError):
        claim_verdict(0.2, 0.1)


def _data(n_exams=60, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(2 * n_exams) < 0.25).astype(int)
    y[:2] = [1, 0]
    a = y * 1.2 + rng.normal(0, 1, y.size)  # the better model
    b = y * 0.3 + rng.normal(0, 1, y.size) + 0.3 * a  # correlated with a, worse
    return y, a, b, np.repeat(np.arange(n_exams), 2)


def test_paired_ci_matches_a_slow_loop():
    y, a, b, groups = _data()
    res = draw_group_resamples(60, 300, 7)
    got = paired_auc_difference(y, a, b, groups, resamples=res)
    diffs = []
    for chosen in res:  # independent computation: scikit-learn per replicate
        rows = rows_for_groups(groups, chosen)
        if y[rows].min() == y[rows].max():
            continue
        diffs.append(roc_auc_score(y[rows], a[rows]) - roc_auc_score(y[rows], b[rows]))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert got.n_valid == len(diffs)
    assert got.low == pytest.approx(lo, abs=1e-12) and got.high == pytest.approx(hi, abs=1e-12)
    assert got.delta == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))


def test_paired_verdicts_on_clear_cases():
    y, a, b, groups = _data(n_exams=300, seed=1)
    d = paired_auc_difference(y, a, b, groups, n_boot=500, seed=0)
    assert d.verdict == HOLDS and d.low > 0
    # The same scores against themselves: a zero-width interval at 0, within noise.
    same = paired_auc_difference(y, a, a, groups, n_boot=200, seed=0)
    assert (same.low, same.high, same.verdict) == (0.0, 0.0, WITHIN_NOISE)
    assert paired_auc_difference(y, b, a, groups, n_boot=500, seed=0).verdict == DOES_NOT_HOLD


def _write(path, rows, header):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_compare_prediction_files(tmp_path):
    y, a, b, _ = _data(n_exams=40, seed=3)
    ids = [f"e{i:03d}" for i in range(40)]
    cols = ["left_benign", "right_benign", "left_malignant", "right_malignant"]
    _write(tmp_path / "labels.csv", [[e, 0, 0, y[2 * i], y[2 * i + 1]] for i, e in enumerate(ids)], ["exam_id", *cols])
    for name, s in (("a", a), ("b", b)):
        p = 1 / (1 + np.exp(-s))  # predictions are probabilities; the order (and AUC) is kept
        rows = [[e, 0.1, 0.2, p[2 * i], p[2 * i + 1]] for i, e in enumerate(ids)]
        _write(tmp_path / f"{name}.csv", rows[::-1], ["exam_id", *cols])  # another row order than the labels
    got = compare_predictions(tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "labels.csv", n_boot=200, seed=5)
    direct = paired_auc_difference(y, a, b, np.repeat(np.arange(40), 2), n_boot=200, seed=5)
    assert (got.low, got.high, got.delta) == pytest.approx((direct.low, direct.high, direct.delta))


def test_mean_of_several_models_matches_a_slow_loop():
    y, a, b, groups = _data(n_exams=50, seed=4)
    rng = np.random.default_rng(9)
    members = np.stack([b + rng.normal(0, 0.5, b.size) for _ in range(3)])
    res = draw_group_resamples(50, 100, 2)
    got = paired_auc_difference(y, a, members, groups, resamples=res)
    diffs = []
    for chosen in res:
        rows = rows_for_groups(groups, chosen)
        if y[rows].min() == y[rows].max():
            continue
        diffs.append(roc_auc_score(y[rows], a[rows]) - np.mean([roc_auc_score(y[rows], m[rows]) for m in members]))
    assert (got.low, got.high) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])), abs=1e-12)
    assert got.auc_b == pytest.approx(np.mean([roc_auc_score(y, m) for m in members]))


def test_threshold_verdict():
    from mammokit.evaluation.paired import threshold_verdict

    assert threshold_verdict(0.91, 0.97, 0.90) == HOLDS
    assert threshold_verdict(0.88, 0.95, 0.90) == WITHIN_NOISE
    assert threshold_verdict(0.60, 0.85, 0.90) == DOES_NOT_HOLD
