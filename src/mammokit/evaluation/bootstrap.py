"""Bootstrap confidence intervals that resample exams, not breasts.

The two breasts of an exam are correlated (same woman, same reader, same image quality), so
resampling breasts independently would understate the variance. Each replicate draws exams with
replacement and keeps both breasts of every drawn exam. The draws depend only on the seed and the
number of exams, so with the same seed every model and task is scored on the same replicates
(paired comparison), and results are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mammokit.evaluation.metrics import UndefinedMetricError, pr_auc, roc_auc


@dataclass
class ConfidenceInterval:
    """A percentile bootstrap interval.

    Attributes:
        low, high: the 2.5th / 97.5th percentiles (for level 0.95) of the valid replicates.
        n_valid: replicates where the metric was defined (both classes present).
        n_boot: replicates drawn.
        level: coverage level.
    """

    low: float | None
    high: float | None
    n_valid: int
    n_boot: int
    level: float = 0.95


def draw_group_resamples(n_groups: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n_groups]`` group (exam) indices drawn with replacement, from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_groups, size=(n_boot, n_groups))


def rows_for_groups(groups: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Row indices of every row of each chosen group (repeats kept), in draw order.

    ``groups`` is the group index per row (any order, any group size).
    """
    order = np.argsort(groups, kind="stable")
    # Groups may have no row (an exam whose breasts were all left out): they count 0 rows.
    size = max(int(groups.max()) + 1 if len(groups) else 0, int(chosen.max()) + 1 if len(chosen) else 0)
    counts = np.bincount(groups, minlength=size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    c = counts[chosen]
    total = int(c.sum())
    # Position k of the output is offset (k - first position of its group's block) into the block.
    block_start = np.repeat(np.cumsum(c) - c, c)
    offsets = np.arange(total) - block_start
    return order[np.repeat(starts[chosen], c) + offsets]


def bootstrap_ci(
    y_true: np.ndarray,
    y_score: np.ndarray,
    groups: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    resamples: np.ndarray | None = None,
) -> ConfidenceInterval:
    """Percentile bootstrap CI of ``metric`` resampling ``groups`` (exams).

    ``resamples`` (``[n_boot, n_groups]``, from :func:`draw_group_resamples`) can be shared across
    models and tasks; otherwise it is drawn from ``seed``. Replicates where the metric is undefined
    (a single class drawn) are skipped and counted out of ``n_valid``.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=float)
    groups = np.asarray(groups)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_boot <= 0 or n_groups == 0:
        return ConfidenceInterval(None, None, 0, max(n_boot, 0), level)
    if resamples is None:
        resamples = draw_group_resamples(n_groups, n_boot, seed)
    # ROC and PR AUC: every replicate at once (the per-replicate scikit-learn loop costs 1-4 ms each).
    if metric is roc_auc:
        return _interval(replicate_roc_aucs(y_true, y_score, groups, resamples), len(resamples), level)
    if metric is pr_auc:
        return _interval(replicate_pr_aucs(y_true, y_score, groups, resamples), len(resamples), level)
    values = []
    for chosen in resamples:
        rows = rows_for_groups(groups, chosen)
        yt = y_true[rows]
        if yt.min() == yt.max():  # one class in this replicate: metric undefined, skip it
            continue
        try:
            values.append(metric(yt, y_score[rows]))
        except UndefinedMetricError:
            continue
    return _interval(np.asarray(values), len(resamples), level)


def _interval(values: np.ndarray, n_boot: int, level: float) -> ConfidenceInterval:
    if not len(values):
        return ConfidenceInterval(None, None, 0, n_boot, level)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return ConfidenceInterval(float(low), float(high), len(values), n_boot, level)


def _level_weights(y_true: np.ndarray, y_score: np.ndarray, groups: np.ndarray, resamples: np.ndarray):
    """Per chunk of replicates, ``(P, N)`` ``[B, levels]``: the weight of positive / negative rows
    at each distinct score (ascending) when a replicate is the original rows with multiplicities
    ``w[b, i]`` (how often row i's group was drawn). Only replicates with both classes are kept."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=float)
    groups = np.asarray(groups)
    n_boot, n_groups = resamples.shape
    order = np.argsort(y_score, kind="stable")
    sorted_scores = y_score[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # first row of each score
    pos = (y_true[order] == 1).astype(float)
    group_of = groups[order]
    chunk = max(1, 10_000_000 // max(len(y_score), 1))  # bounds the [replicates, rows] weights
    for b0 in range(0, n_boot, chunk):
        res = resamples[b0 : b0 + chunk]
        drawn = np.zeros((len(res), n_groups))
        np.add.at(drawn, (np.arange(len(res))[:, None], res), 1.0)
        w = drawn[:, group_of]  # [B, rows] multiplicities, rows sorted by score
        P = np.add.reduceat(w * pos, starts, axis=1)
        N = np.add.reduceat(w * (1.0 - pos), starts, axis=1)
        valid = (P.sum(1) > 0) & (N.sum(1) > 0)
        yield P[valid], N[valid]


def replicate_roc_aucs(y_true: np.ndarray, y_score: np.ndarray, groups: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    """ROC AUC of every bootstrap replicate with both classes (the others are dropped), in one
    pass: ``[n_valid]``, the values the per-replicate loop would give, in replicate order.

    The weighted Mann-Whitney statistic: AUC = sum_k P[k] (negatives below level k + N[k] / 2)
    / (P_tot N_tot), ties counting half as in ``roc_auc_score``.
    """
    out = [np.zeros(0)]
    for P, N in _level_weights(y_true, y_score, groups, resamples):
        below = np.cumsum(N, axis=1) - N
        out.append((P * (below + 0.5 * N)).sum(1) / (P.sum(1) * N.sum(1)))
    return np.concatenate(out)


def replicate_pr_aucs(y_true: np.ndarray, y_score: np.ndarray, groups: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    """Average precision (:func:`mammokit.evaluation.metrics.pr_auc`) of every replicate with
    both classes, in one pass: sum over score levels k (highest first) of the recall gained at
    k, P[k] / P_tot, times the precision of thresholding at k, TP(>= k) / (TP + FP)(>= k)."""
    out = [np.zeros(0)]
    for P, N in _level_weights(y_true, y_score, groups, resamples):
        tp = np.cumsum(P[:, ::-1], axis=1)[:, ::-1]  # positives scored >= level k
        fp = np.cumsum(N[:, ::-1], axis=1)[:, ::-1]
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
        out.append((P * precision).sum(1) / P.sum(1))
    return np.concatenate(out)
