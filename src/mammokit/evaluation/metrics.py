"""Breast-level metrics: ROC AUC and PR AUC, and the exam -> breast flattening.

The paper scores each breast separately (Section V): an exam gives two breast-level examples per
task, (left_<task>, right_<task>). ROC AUC is scikit-learn's ``roc_auc_score``. PR AUC is the
area under the precision-recall curve summarised as average precision (``average_precision_score``,
the step-wise sum sum_k (R_k - R_{k-1}) P_k), which does not interpolate linearly between points
(linear interpolation of a PR curve is optimistic, most visibly for coarse reader scores with
many ties); the trapezoidal area is available as :func:`pr_auc_trapezoid` for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS: tuple[str, ...] = ("malignant", "benign")
SIDES: tuple[str, ...] = ("L", "R")


class UndefinedMetricError(ValueError):
    """A metric that is undefined on this data (e.g. AUC with one class only)."""


@dataclass
class BreastLevel:
    """Breast-level examples of one task, two rows per exam (left then right).

    Attributes:
        exam_ids: exam id per row, ``[N]``.
        sides: "L" or "R" per row, ``[N]``.
        y_true: 0/1 labels, ``[N]`` int.
        y_score: predicted probabilities, ``[N]`` float (None when only labels were flattened).
        groups: exam index per row (0..n_exams-1), ``[N]``: the bootstrap resamples these.
    """

    exam_ids: np.ndarray
    sides: np.ndarray
    y_true: np.ndarray
    y_score: np.ndarray | None
    groups: np.ndarray


def flatten_breasts(
    exam_ids: list[str], left_true, right_true, left_score=None, right_score=None
) -> BreastLevel:
    """Exam-level left/right columns -> breast rows ``[exam0-L, exam0-R, exam1-L, ...]``."""
    n = len(exam_ids)
    interleave = lambda a, b: np.stack([np.asarray(a), np.asarray(b)], axis=1).reshape(2 * n)  # noqa: E731
    y_true = interleave(left_true, right_true).astype(int)
    y_score = None if left_score is None else interleave(left_score, right_score).astype(float)
    return BreastLevel(
        exam_ids=np.repeat(np.asarray(exam_ids, dtype=object), 2),
        sides=np.tile(np.asarray(SIDES, dtype=object), n),
        y_true=y_true,
        y_score=y_score,
        groups=np.repeat(np.arange(n), 2),
    )


def check_two_classes(y_true: np.ndarray) -> None:
    """Raise UndefinedMetricError unless both classes occur in ``y_true``."""
    n_pos = int(np.sum(y_true == 1))
    n = len(y_true)
    if n == 0:
        raise UndefinedMetricError("AUC undefined: no examples")
    if n_pos == 0 or n_pos == n:
        cls = "positive" if n_pos == n else "negative"
        raise UndefinedMetricError(f"AUC undefined: all {n} breasts are {cls} (need both classes)")


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve (ties count half); raises UndefinedMetricError with one class."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    check_two_classes(y_true)
    return float(roc_auc_score(y_true, np.asarray(y_score, dtype=float)))


def pr_auc(y_true, y_score) -> float:
    """Area under the precision-recall curve as average precision; UndefinedMetricError with one
    class (without positives there is no recall; with no negatives it is trivially 1)."""
    from sklearn.metrics import average_precision_score

    y_true = np.asarray(y_true)
    check_two_classes(y_true)
    return float(average_precision_score(y_true, np.asarray(y_score, dtype=float)))


def pr_auc_trapezoid(y_true, y_score) -> float:
    """Trapezoidal area under the precision-recall curve (``auc(recall, precision)``)."""
    from sklearn.metrics import auc, precision_recall_curve

    y_true = np.asarray(y_true)
    check_two_classes(y_true)
    precision, recall, _ = precision_recall_curve(y_true, np.asarray(y_score, dtype=float))
    return float(auc(recall, precision))


METRICS = {"roc_auc": roc_auc, "pr_auc": pr_auc}
"""The metrics every evaluation reports, by name."""


def roc_curve_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) of the ROC curve, for plotting."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(y_true), np.asarray(y_score, dtype=float))
    return fpr, tpr


def pr_curve_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of the precision-recall curve, for plotting."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(np.asarray(y_true), np.asarray(y_score, dtype=float))
    return recall, precision
