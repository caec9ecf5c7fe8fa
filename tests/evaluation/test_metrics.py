"""Breast-level metrics, flattening and the exam bootstrap (expected values computed by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from mammokit.evaluation.bootstrap import (
    bootstrap_ci,
    draw_group_resamples,
    rows_for_groups,
)
from mammokit.evaluation.metrics import (
    UndefinedMetricError,
    flatten_breasts,
    pr_auc,
    roc_auc,
)

# Six breasts: positives score .9 and .4; negatives .3, .8, .1, .4.
Y = [1, 0, 0, 0, 1, 0]
S = [0.9, 0.3, 0.8, 0.1, 0.4, 0.4]


def test_roc_auc_by_hand():
    # Pairs (pos, neg): .9 beats all 4 negatives (4); .4 beats .3 and .1, loses to .8, ties .4 (2.5).
    # AUC = 6.5 / 8.
    assert roc_auc(Y, S) == pytest.approx(6.5 / 8)


def test_average_precision_by_hand():
    # Descending thresholds: .9 -> TP1 FP0 (P=1, R=.5); .8 -> TP1 FP1 (P=.5, R=.5);
    # .4 (tie of a positive and a negative) -> TP2 FP2 (P=.5, R=1).
    # AP = sum (R_k - R_{k-1}) P_k = .5 * 1 + 0 * .5 + .5 * .5 = 0.75.
    assert pr_auc(Y, S) == pytest.approx(0.75)


def test_perfect_and_inverted_rankings():
    assert roc_auc([0, 0, 1], [0.1, 0.2, 0.3]) == 1.0
    assert roc_auc([1, 0, 0], [0.1, 0.2, 0.3]) == 0.0
    # Inverted: the positive comes last: P = 1/3 at R = 1.
    assert pr_auc([1, 0, 0], [0.1, 0.2, 0.3]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("y", [[0, 0, 0], [1, 1]])
def test_single_class_is_undefined(y):
    with pytest.raises(UndefinedMetricError, match="AUC undefined"):
        roc_auc(y, [0.5] * len(y))
    with pytest.raises(UndefinedMetricError):
        pr_auc(y, [0.5] * len(y))


def test_flatten_breasts_two_rows_per_exam():
    b = flatten_breasts(["a", "b"], [1, 0], [0, 1], [0.9, 0.2], [0.3, 0.7])
    assert list(b.exam_ids) == ["a", "a", "b", "b"]
    assert list(b.sides) == ["L", "R", "L", "R"]
    assert list(b.y_true) == [1, 0, 0, 1]
    assert list(b.y_score) == [0.9, 0.3, 0.2, 0.7]
    assert list(b.groups) == [0, 0, 1, 1]


def test_rows_for_groups_keeps_both_breasts_and_repeats():
    groups = np.array([0, 0, 1, 1, 2, 2])
    assert list(rows_for_groups(groups, np.array([2, 0, 2]))) == [4, 5, 0, 1, 4, 5]
    # Unequal, unordered groups (a reader study where some breasts were not read).
    groups = np.array([1, 0, 1, 2, 1])
    assert list(rows_for_groups(groups, np.array([1, 2, 0]))) == [0, 2, 4, 3, 1]


def _data(n_exams=40, seed=3):
    rng = np.random.default_rng(seed)
    y = (rng.random(2 * n_exams) < 0.3).astype(int)
    s = np.clip(0.5 * y + rng.random(2 * n_exams) * 0.8, 0, 1)
    return y, s, np.repeat(np.arange(n_exams), 2)


def test_bootstrap_reproducible_and_contains_estimate():
    y, s, g = _data()
    a = bootstrap_ci(y, s, g, roc_auc, n_boot=100, seed=7)
    b = bootstrap_ci(y, s, g, roc_auc, n_boot=100, seed=7)
    c = bootstrap_ci(y, s, g, roc_auc, n_boot=100, seed=8)
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low < roc_auc(y, s) < a.high
    assert a.n_valid == 100 and a.n_boot == 100


def test_bootstrap_resamples_exams():
    # One replicate recomputed by hand from the exam draw: both breasts of every drawn exam.
    y, s, g = _data(n_exams=12)
    draw = draw_group_resamples(12, 1, seed=5)
    rows = [r for e in draw[0] for r in (2 * e, 2 * e + 1)]
    expected = roc_auc(y[rows], s[rows])
    ci = bootstrap_ci(y, s, g, roc_auc, resamples=draw)
    assert ci.low == pytest.approx(expected) and ci.high == pytest.approx(expected)


def test_vectorised_roc_replicates_equal_scikit_learn_per_replicate():
    """replicate_roc_aucs (all replicates at once, weighted Mann-Whitney) gives, in order, the
    roc_auc_score of every replicate with both classes: ties, groups of 1-3 rows, replicates
    with one class dropped; bootstrap_ci's fast path equals the generic loop."""
    from sklearn.metrics import roc_auc_score

    from mammokit.evaluation.bootstrap import replicate_roc_aucs, rows_for_groups

    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(15), rng.integers(1, 4, 15))
    rng.shuffle(groups)
    y = (rng.random(len(groups)) < 0.15).astype(int)
    s = np.round(rng.random(len(groups)), 1)  # many ties
    draws = draw_group_resamples(15, 300, seed=2)
    expected = []
    for chosen in draws:
        rows = rows_for_groups(groups, chosen)
        if 0 < y[rows].sum() < len(rows):
            expected.append(roc_auc_score(y[rows], s[rows]))
    got = replicate_roc_aucs(y, s, groups, draws)
    assert 0 < len(expected) < 300  # some replicates had a single class
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    fast = bootstrap_ci(y, s, groups, roc_auc, resamples=draws)
    loop = bootstrap_ci(y, s, groups, lambda a, b: roc_auc(a, b), resamples=draws)
    assert fast.n_valid == loop.n_valid == len(expected)
    assert fast.low == pytest.approx(loop.low, abs=1e-12) and fast.high == pytest.approx(loop.high, abs=1e-12)


def test_vectorised_pr_replicates_equal_scikit_learn_per_replicate():
    from sklearn.metrics import average_precision_score

    from mammokit.evaluation.bootstrap import replicate_pr_aucs, rows_for_groups

    rng = np.random.default_rng(9)
    groups = np.repeat(np.arange(20), rng.integers(1, 4, 20))
    y = (rng.random(len(groups)) < 0.25).astype(int)
    s = np.round(rng.random(len(groups)) + 0.3 * y, 1)  # ties, some signal
    draws = draw_group_resamples(20, 300, seed=6)
    expected = []
    for chosen in draws:
        rows = rows_for_groups(groups, chosen)
        if 0 < y[rows].sum() < len(rows):
            expected.append(average_precision_score(y[rows], s[rows]))
    got = replicate_pr_aucs(y, s, groups, draws)
    assert len(expected) > 100
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    fast = bootstrap_ci(y, s, groups, pr_auc, resamples=draws)
    loop = bootstrap_ci(y, s, groups, lambda a, b: pr_auc(a, b), resamples=draws)
    assert fast.n_valid == loop.n_valid
    assert fast.low == pytest.approx(loop.low, abs=1e-12) and fast.high == pytest.approx(loop.high, abs=1e-12)
