"""Figures: ROC / PR curves (evaluation, the paper's Fig. 8), AUC vs lambda (Fig. 9) and 2-D
embeddings (Fig. 10). matplotlib with the Agg backend (no display needed); files written
atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mammokit.evaluation.metrics import pr_curve_points, roc_curve_points
from mammokit.utils.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_roc_pr(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "",
    aucs: Mapping[str, tuple[float | None, float | None]] | None = None,
) -> Path:
    """One PNG with a ROC panel and a PR panel, every model (``name -> (y_true, y_score)``) on
    both. ``aucs`` (name -> (ROC AUC, PR AUC)) goes into the legend."""
    plt = _pyplot()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(11, 5))
    for name, (y_true, y_score) in curves.items():
        roc_l, pr_l = name, name
        if aucs and name in aucs:
            r, p = aucs[name]
            roc_l = f"{name} (AUC {r:.3f})" if r is not None else name
            pr_l = f"{name} (PR AUC {p:.3f})" if p is not None else name
        fpr, tpr = roc_curve_points(y_true, y_score)
        ax_roc.plot(fpr, tpr, label=roc_l, lw=1.6)
        recall, precision = pr_curve_points(y_true, y_score)
        ax_pr.step(recall, precision, where="post", label=pr_l, lw=1.6)
    ax_roc.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    _style(ax_roc, "false positive rate", "true positive rate", "ROC")
    _style(ax_pr, "recall", "precision", "precision-recall")
    if title:
        fig.suptitle(title)
    _save(fig, Path(path))
    return Path(path)


def _style(ax, xlabel: str, ylabel: str, title: str, legend: bool = True) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower right" if title == "ROC" else "upper right")


def plot_reader_curves(
    y_true_by_reader: Mapping[str, np.ndarray],
    reader_scores: Mapping[str, np.ndarray],
    hybrid_scores: Mapping[str, np.ndarray],
    model_true: np.ndarray,
    model_score: np.ndarray,
    path: str | Path,
    model_name: str = "model",
    lam: float = 0.5,
) -> Path:
    """The paper's Fig. 8: ROC and PR curves of every reader (thin), the model (bold) and each
    reader's hybrid with the model at ``lam`` (dashed), on one ROC and one PR panel."""
    plt = _pyplot()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(12, 5.5))
    for i, reader in enumerate(reader_scores):
        yt = y_true_by_reader[reader]
        lab_r = "readers" if i == 0 else None
        lab_h = f"hybrids (lambda={lam:g})" if i == 0 else None
        fpr, tpr = roc_curve_points(yt, reader_scores[reader])
        ax_roc.plot(fpr, tpr, c="tab:orange", lw=0.8, alpha=0.7, label=lab_r)
        fpr, tpr = roc_curve_points(yt, hybrid_scores[reader])
        ax_roc.plot(fpr, tpr, c="tab:green", lw=0.8, alpha=0.7, ls="--", label=lab_h)
        rec, prec = pr_curve_points(yt, reader_scores[reader])
        ax_pr.step(rec, prec, where="post", c="tab:orange", lw=0.8, alpha=0.7, label=lab_r)
        rec, prec = pr_curve_points(yt, hybrid_scores[reader])
        ax_pr.step(rec, prec, where="post", c="tab:green", lw=0.8, alpha=0.7, ls="--", label=lab_h)
    fpr, tpr = roc_curve_points(model_true, model_score)
    ax_roc.plot(fpr, tpr, c="tab:blue", lw=2.2, label=model_name)
    rec, prec = pr_curve_points(model_true, model_score)
    ax_pr.step(rec, prec, where="post", c="tab:blue", lw=2.2, label=model_name)
    ax_roc.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    _style(ax_roc, "false positive rate", "true positive rate", "ROC")
    _style(ax_pr, "recall", "precision", "precision-recall")
    fig.suptitle("Readers, model and reader-model hybrids (malignant, breast level)")
    _save(fig, Path(path))
    return Path(path)


def plot_lambda_sweep(
    lambdas: np.ndarray,
    roc_by_reader: Mapping[str, np.ndarray],
    pr_by_reader: Mapping[str, np.ndarray],
    path: str | Path,
) -> Path:
    """The paper's Fig. 9: hybrid ROC AUC and PR AUC vs lambda, one line per reader
    (lambda = 0: the model alone, lambda = 1: the reader alone)."""
    plt = _pyplot()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(12, 5))
    cmap = plt.get_cmap("tab20")
    for i, reader in enumerate(roc_by_reader):
        ax_roc.plot(lambdas, roc_by_reader[reader], c=cmap(i % 20), lw=1.2, label=reader)
        ax_pr.plot(lambdas, pr_by_reader[reader], c=cmap(i % 20), lw=1.2, label=reader)
    for ax, name in ((ax_roc, "ROC AUC"), (ax_pr, "PR AUC")):
        ax.set_xlim(0, 1)
        ax.set_xlabel("lambda (0 = model only, 1 = reader only)")
        ax.set_ylabel(name)
        ax.set_title(f"hybrid {name} vs lambda")
        ax.grid(alpha=0.3)
    ax_pr.legend(fontsize=6, ncol=2, loc="best")
    _save(fig, Path(path))
    return Path(path)


def plot_embedding(
    points: np.ndarray,
    path: str | Path,
    color: np.ndarray,
    color_label: str,
    size: np.ndarray | None = None,
    title: str = "",
    categorical: bool = False,
) -> Path:
    """A 2-D scatter of ``points`` ``[N, 2]`` coloured by ``color`` ``[N]`` (a continuous value
    such as the readers' mean probability, or a category code when ``categorical``) and, as in the
    paper's Fig. 10, sized by ``size`` ``[N]`` in [0, 1] when given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    s = 8.0 if size is None else 6.0 + 60.0 * np.clip(np.asarray(size, dtype=float), 0, 1)
    if categorical:
        for code in np.unique(color):
            m = color == code
            ax.scatter(points[m, 0], points[m, 1], s=s if np.isscalar(s) else s[m], alpha=0.7, label=str(code))
        ax.legend(title=color_label, fontsize=8)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], c=color, s=s, cmap="viridis", alpha=0.75)
        fig.colorbar(sc, ax=ax, label=color_label)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    _save(fig, Path(path))
    return Path(path)
