"""Validation metrics of the trainers and the run's metric files.

AUCs are computed here (scikit-learn's ``roc_auc_score``) rather than with the evaluation
package so the trainers have no dependency on report code; a label with a single class in the
validation set has AUC ``nan`` and is left out of means.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mammokit.config import LABEL_COLUMNS
from mammokit.utils.io import write_csv_atomic, write_text_atomic
from mammokit.utils.log import get_logger

log = get_logger(__name__)


def safe_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, ``nan`` when only one class is present or scores are not finite."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    score = np.asarray(score, dtype=np.float64)
    ok = np.isfinite(score)
    y_true, score = y_true[ok], score[ok]
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, score))


def nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if v == v]
    return float(sum(finite) / len(finite)) if finite else float("nan")


def cancer_metrics(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Exam-level probabilities ``[N, 4]`` and targets ``[N, 4]`` (LABEL_COLUMNS order) ->
    AUC per label, their mean (``mean_auc``: the paper's early-stopping score, "mean validation
    AUC over the four tasks"), and breast-level AUCs pooling left and right breasts."""
    out = {f"auc_{c}": safe_auc(targets[:, j], probs[:, j]) for j, c in enumerate(LABEL_COLUMNS)}
    out["mean_auc"] = nanmean([out[f"auc_{c}"] for c in LABEL_COLUMNS])
    lb, rb, lm, rm = (LABEL_COLUMNS.index(c) for c in LABEL_COLUMNS)
    out["breast_auc_malignant"] = safe_auc(
        np.concatenate([targets[:, lm], targets[:, rm]]), np.concatenate([probs[:, lm], probs[:, rm]])
    )
    out["breast_auc_benign"] = safe_auc(
        np.concatenate([targets[:, lb], targets[:, rb]]), np.concatenate([probs[:, lb], probs[:, rb]])
    )
    return out


def multiclass_metrics(probs: np.ndarray, target: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Probabilities ``[N, K]`` and class indices ``[N]`` -> one-vs-rest AUC per class, their
    mean (``mean_auc``: the BI-RADS early-stopping score, and the patch classifier's) and
    accuracy."""
    out = {f"auc_{n}": safe_auc((target == k).astype(int), probs[:, k]) for k, n in enumerate(names)}
    out["mean_auc"] = nanmean([out[f"auc_{n}"] for n in names])
    out["accuracy"] = float((probs.argmax(1) == target).mean()) if len(target) else float("nan")
    return out


class MetricsWriter:
    """``RUN/metrics.jsonl`` + ``RUN/metrics.csv`` (rewritten whole and atomically from the
    history, so a resumed run never duplicates or loses a row) and TensorBoard when installed."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: files only
                self._tb = None

    def write(self, history: list[dict], new_row: dict | None = None) -> None:
        if not self.enabled:
            return
        write_text_atomic(self.run_dir / "metrics.jsonl", "".join(json.dumps(_clean(r)) + "\n" for r in history))
        fields: list[str] = []
        for row in history:
            fields += [k for k in row if k not in fields]
        write_csv_atomic(self.run_dir / "metrics.csv", [_clean(r, blank=True) for r in history], fields)
        if self._tb is not None and new_row is not None:
            step = int(new_row.get("epoch", 0))
            for key, value in new_row.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _clean(row: dict, blank: bool = False) -> dict:
    # JSON has no NaN: write null (CSV: empty).
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = "" if blank else None
        out[k] = v
    return out
