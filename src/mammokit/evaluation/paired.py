"""Paired bootstrap of an AUC difference, and the verdict of a claim made from it.

A claim such as "heatmaps help" compares two score sets *on the same breasts*. Their AUCs are
strongly correlated (same exams, same hard cases), so two separate CIs that overlap say little;
the paired bootstrap resamples exams once per replicate, scores both models on that replicate and
takes the percentile interval of the difference ``AUC(a) - AUC(b)``. The draws are those of
:func:`mammokit.evaluation.bootstrap.draw_group_resamples` (exams with replacement, both breasts of
a drawn exam kept), and every replicate is computed at once (:func:`replicate_roc_aucs`).

Verdict of a claim "a beats b" (:func:`claim_verdict`): the 95 % CI of the difference lies
entirely above 0 -> ``holds``; it contains 0 -> ``within noise``; entirely below 0 -> ``does
not hold``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mammokit.errors import UsageError
from mammokit.evaluation.bootstrap import draw_group_resamples, replicate_roc_aucs
from mammokit.evaluation.metrics import flatten_breasts, roc_auc

HOLDS, WITHIN_NOISE, DOES_NOT_HOLD, UNDETERMINED = "holds", "within noise", "does not hold", "undetermined"
VERDICTS = (HOLDS, WITHIN_NOISE, DOES_NOT_HOLD, UNDETERMINED)


@dataclass(frozen=True)
class PairedDifference:
    """``AUC(a) - AUC(b)`` on the same breasts, with its paired bootstrap percentile CI.

    Attributes:
        auc_a, auc_b: the two AUCs on all breasts.
        delta: ``auc_a - auc_b``.
        low, high: percentile CI of the replicate differences (None without valid replicates).
        n_valid, n_boot: replicates with both classes / replicates drawn.
        level: coverage level.
    """

    auc_a: float
    auc_b: float
    delta: float
    low: float | None
    high: float | None
    n_valid: int
    n_boot: int
    level: float = 0.95

    @property
    def verdict(self) -> str:
        return claim_verdict(self.low, self.high)

    def to_dict(self) -> dict:
        return {"auc_a": self.auc_a, "auc_b": self.auc_b, "delta": self.delta, "ci": [self.low, self.high],
                "n_valid": self.n_valid, "n_boot": self.n_boot, "level": self.level, "verdict": self.verdict}


def claim_verdict(low: float | None, high: float | None) -> str:
    """Verdict of the claim "a > b" from the CI ``[low, high]`` of ``a - b``.

    ``holds`` when ``low > 0``, ``does not hold`` when ``high < 0``, ``within noise`` when the
    interval contains 0 (a bound exactly at 0 included), ``undetermined`` without an interval.
    """
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return UNDETERMINED
    if low > high:
        raise ValueError(f"CI bounds in the wrong order: [{low}, {high}]")
    if low > 0:
        return HOLDS
    if high < 0:
        return DOES_NOT_HOLD
    return WITHIN_NOISE


def paired_auc_difference(
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    resamples: np.ndarray | None = None,
) -> PairedDifference:
    """Paired exam-bootstrap CI of ``ROC AUC(score_a) - ROC AUC(score_b)``.

    Args:
        y_true: ``[n]`` 0/1 per breast.
        score_a, score_b: ``[n]`` scores of the two models on the same breasts, or ``[k, n]``
            for a set of models whose *mean AUC* is compared (K single models against their
            ensemble; 14 readers against their hybrids), on the same replicates.
        groups: ``[n]`` exam index per breast (0 .. n_exams - 1), the resampling unit.
        resamples: ``[n_boot, n_exams]`` shared draws (default: drawn from ``seed``).
    """
    y_true = np.asarray(y_true).astype(int)
    score_a, score_b = np.atleast_2d(np.asarray(score_a, float)), np.atleast_2d(np.asarray(score_b, float))
    groups = np.asarray(groups)
    if not (len(y_true) == score_a.shape[1] == score_b.shape[1] == len(groups)):
        raise ValueError("y_true, score_a, score_b and groups must have the same length")
    auc_a = float(np.mean([roc_auc(y_true, s) for s in score_a]))
    auc_b = float(np.mean([roc_auc(y_true, s) for s in score_b]))
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if resamples is None:
        resamples = draw_group_resamples(n_groups, n_boot, seed) if n_boot > 0 else np.zeros((0, n_groups), int)
    n_boot = len(resamples)
    # Which replicates are valid depends on y_true and the draws only, so both arrays drop the
    # same replicates and stay aligned.
    ra = _mean_replicates(y_true, score_a, groups, resamples)
    rb = _mean_replicates(y_true, score_b, groups, resamples)
    diff = ra - rb
    if not len(diff):
        return PairedDifference(auc_a, auc_b, auc_a - auc_b, None, None, 0, n_boot, level)
    alpha = (1 - level) / 2
    low, high = np.quantile(diff, [alpha, 1 - alpha])
    return PairedDifference(auc_a, auc_b, auc_a - auc_b, float(low), float(high), len(diff), n_boot, level)


def _mean_replicates(y_true, scores: np.ndarray, groups, resamples) -> np.ndarray:
    """``[n_valid]`` mean over the rows of ``scores`` of each replicate's ROC AUC."""
    if not len(resamples):
        return np.zeros(0)
    return np.mean([replicate_roc_aucs(y_true, s, groups, resamples) for s in scores], axis=0)


def threshold_verdict(low: float | None, high: float | None, threshold: float) -> str:
    """Verdict of "the metric is at least ``threshold``" from the metric's CI: the CI of the
    difference metric - threshold, judged as :func:`claim_verdict` judges a paired difference."""
    if low is None or high is None:
        return UNDETERMINED
    return claim_verdict(low - threshold, high - threshold)


def breast_rows(pred_path: str | os.PathLike, labels_path: str | os.PathLike, task: str,
                population: str = "screening", split: str | None = None):
    """``(exam_ids [n_exams], y_true [2 n], y_score [2 n], groups [2 n])`` of one predictions file
    on the exams of a labels file (``population`` screening / biopsied; ``split`` a labels
    ``split`` value). Breasts are ordered ``[exam0-L, exam0-R, ...]`` so two files' rows align."""
    from mammokit.evaluation.evaluate import select_population
    from mammokit.evaluation.tables_io import check_same_exams, read_labels, read_predictions, subset_labels

    lab = read_labels(labels_path)
    if split is not None:
        lab = subset_labels(lab, [s == split for s in lab.extra.get("split", [""] * len(lab.exam_ids))])
    pred = read_predictions(pred_path)
    check_same_exams(pred, lab)  # against the whole split: the population is a subset of it
    keep, _ = select_population(lab, population)
    lab = subset_labels(lab, keep)
    pidx = pred.index()
    rows = [pidx[e] for e in lab.exam_ids]
    lc, rc = f"left_{task}", f"right_{task}"
    b = flatten_breasts(lab.exam_ids, lab.values[lc], lab.values[rc],
                        [pred.values[lc][r] for r in rows], [pred.values[rc][r] for r in rows])
    return list(lab.exam_ids), b.y_true, b.y_score, b.groups


def compare_predictions(
    pred_a: str | os.PathLike,
    pred_b: str | os.PathLike,
    labels: str | os.PathLike,
    task: str = "malignant",
    population: str = "screening",
    n_boot: int = 2000,
    seed: int = 0,
    split: str | None = None,
) -> PairedDifference:
    """Paired CI of ``AUC(pred_a) - AUC(pred_b)`` over the breasts both files scored."""
    ids_a, y, sa, groups = breast_rows(pred_a, labels, task, population, split)
    ids_b, _, sb, _ = breast_rows(pred_b, labels, task, population, split)
    if ids_a != ids_b:  # cannot happen: both are ordered by the labels file
        raise UsageError(f"{pred_a} and {pred_b}: different exams")
    ok = np.isfinite(sa) & np.isfinite(sb)
    return paired_auc_difference(y[ok], sa[ok], sb[ok], _renumber(groups[ok]), n_boot=n_boot, seed=seed)


def _renumber(groups: np.ndarray) -> np.ndarray:
    """Exam indices made consecutive (0 .. k - 1) after rows were left out."""
    _, inv = np.unique(groups, return_inverse=True)
    return inv.reshape(-1)
