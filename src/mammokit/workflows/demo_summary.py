"""The demo's figures (``summary.json``), its printed table, and the README's claims decided by
paired bootstrap CIs (:mod:`mammokit.evaluation.paired`), not by point differences.

Each claim: ``{"claim", "kind", "delta" (or "value"), "ci", "verdict"}`` with verdict ``holds``
(the 95 % CI of the difference lies above 0, or the metric's CI above the threshold), ``within
noise`` (the CI contains 0 / the threshold) or ``does not hold``.
"""

from __future__ import annotations

import csv
import os
import platform
import time
from pathlib import Path

import numpy as np

from mammokit.evaluation.paired import (
    HOLDS,
    DOES_NOT_HOLD,
    breast_rows,
    claim_verdict,
    paired_auc_difference,
    threshold_verdict,
)
from mammokit.utils.seed import derive_seed

SUMMARY_FORMAT = "mammokit.demo.summary"
MODEL_ROWS = (
    ("image_only_single", "image-only", "view-wise", "single"),
    ("image_only_ensemble", "image-only", "view-wise", "ensemble"),
    ("image_heatmaps_single", "image+heatmaps", "view-wise", "single"),
    ("image_heatmaps_ensemble", "image+heatmaps", "view-wise", "ensemble"),
)
MALIGNANT_FLOOR = 0.90  # README: image+heatmaps ensemble malignant AUC at least this
BENIGN_FLOOR = 0.70  # README: image+heatmaps ensemble benign AUC at least this
LOCALISATION_FLOOR = 3.0  # README: benign heatmap inside benign masks >= 3x elsewhere


def _metric(task_result) -> dict:
    m = task_result.roc_auc
    return {"auc": m.value, "ci": [m.ci_low, m.ci_high], "n_positive": task_result.n_positive,
            "n_breasts": task_result.n_breasts}


def _paired(pred_dir: Path, labels: Path, a: str, b: str, task: str, n_boot: int, seed: int) -> dict:
    _, y, sa, groups = breast_rows(pred_dir / f"{a}.csv", labels, task)
    _, _, sb, _ = breast_rows(pred_dir / f"{b}.csv", labels, task)
    d = paired_auc_difference(y, sa, sb, groups, n_boot=n_boot, seed=derive_seed(seed, "paired", task))
    return {"delta": d.delta, "ci": [d.low, d.high], "verdict": d.verdict}


def _hybrid_vs_readers(readers_csv: Path, pred: Path, labels: Path, lam: float, n_boot: int, seed: int) -> dict:
    """Paired CI of mean hybrid AUC - mean reader AUC over the readers, malignant, per breast."""
    ids, y, model, groups = breast_rows(pred, labels, "malignant")
    pos = {(e, side): 2 * i + k for i, e in enumerate(ids) for k, side in enumerate("LR")}
    by_reader: dict[str, np.ndarray] = {}
    with open(readers_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            arr = by_reader.setdefault(row["reader_id"], np.full(len(y), np.nan))
            arr[pos[(row["exam_id"], row["breast"])]] = float(row["probability"])
    readers = np.stack([by_reader[k] for k in sorted(by_reader)])
    if not np.isfinite(readers).all():
        raise ValueError(f"{readers_csv}: not every reader read every breast of the test split")
    hybrids = lam * readers + (1 - lam) * model[None, :]
    d = paired_auc_difference(y, hybrids, readers, groups, n_boot=n_boot, seed=derive_seed(seed, "paired", "readers"))
    return {"delta": d.delta, "ci": [d.low, d.high], "verdict": d.verdict}


def decide_claims(models: dict, localisation: dict, pred_dir: Path, labels: Path, readers_csv: Path, lam: float,
                  n_boot: int, seed: int) -> dict:
    """Every claim the README makes about the demo, with its CI and verdict."""
    ens = models["image_heatmaps_ensemble"]["screening"]
    claims = {}
    for key, task, floor in (("heatmaps_ensemble_malignant_auc_at_least_0.90", "malignant", MALIGNANT_FLOOR),
                             ("heatmaps_ensemble_benign_auc_at_least_0.70", "benign", BENIGN_FLOOR)):
        m = ens[task]
        claims[key] = {"claim": f"image+heatmaps ensemble {task} AUC >= {floor:.2f}", "kind": "threshold",
                       "value": m["auc"], "ci": m["ci"], "verdict": threshold_verdict(*m["ci"], floor)}
    for key, a, b in (("heatmaps_beat_image_only_ensemble", "image_heatmaps_ensemble", "image_only_ensemble"),
                      ("heatmaps_beat_image_only_single", "image_heatmaps_single", "image_only_single")):
        claims[key] = {"claim": f"malignant AUC: {a} > {b}", "kind": "paired difference",
                       **_paired(pred_dir, labels, a, b, "malignant", n_boot, seed)}
    claims["hybrid_beats_average_reader"] = {
        "claim": f"mean AUC of the reader+model hybrids (lambda {lam:g}) > mean reader AUC", "kind": "paired difference",
        **_hybrid_vs_readers(readers_csv, pred_dir / "image_heatmaps_ensemble.csv", labels, lam, n_boot, seed)}
    ratio = (localisation.get("benign") or {}).get("ratio")
    claims["benign_heatmap_localisation_at_least_3"] = {
        "claim": "benign heatmap mean inside benign masks >= 3x its mean over other breast tissue (test split)",
        "kind": "point value (no CI)", "value": ratio,
        "verdict": "undetermined" if ratio is None else (HOLDS if ratio >= LOCALISATION_FLOOR else DOES_NOT_HOLD)}
    return claims


def build_summary(evaluation, study, s, seed: int, times: dict, started: float, *, pred_dir: Path, labels: Path,
                  readers_csv: Path, localisation: dict) -> dict:
    """The demo's figures (what ``summary.json`` holds)."""
    models = {}
    for key, inputs, variant, kind in MODEL_ROWS:
        m = evaluation.model(key)
        models[key] = {
            "input": inputs, "variant": variant, "kind": kind,
            "screening": {t: _metric(m.populations["screening"][t]) for t in ("malignant", "benign")},
            "biopsied": {t: _metric(m.populations["biopsied"][t]) for t in ("malignant", "benign")},
        }
    rs = study.summary
    readers = {
        "n_readers": len(study.readers), "n_breasts": study.n_breasts, "n_positive": study.n_positive,
        "readers_auc_mean": rs.get("readers_roc_auc_mean"), "readers_auc_min": rs.get("readers_roc_auc_min"),
        "readers_auc_max": rs.get("readers_roc_auc_max"), "model_auc": study.model_roc_auc,
        "hybrid_auc_mean": rs.get("hybrid_roc_auc_mean"), "lambda": study.lam,
        "readers_pr_auc_mean": rs.get("readers_pr_auc_mean"), "model_pr_auc": study.model_pr_auc,
        "hybrid_pr_auc_mean": rs.get("hybrid_pr_auc_mean"),
        "per_reader_auc": {r.reader: r.roc_auc for r in study.readers},
    }
    claims = decide_claims(models, localisation, pred_dir, labels, readers_csv, study.lam, s.bootstrap, seed)
    return {
        "format": SUMMARY_FORMAT, "version": 2,
        "note": "demo settings, not the paper's: synthetic data, small images, few exams and epochs, "
                "higher learning rate; figures measured on the synthetic test split",
        "settings": {**s.to_dict(), "seed": seed, "preset": s.preset().to_dict()},
        "test_split": {"n_exams": evaluation.population_sizes.get("screening"),
                       "n_biopsied_exams": evaluation.population_sizes.get("biopsied")},
        "models": models, "reader_study": readers, "heatmap_localisation": localisation, "claims": claims,
        "stages": times, "seconds": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }


def _fmt_auc(m: dict) -> str:
    if m["auc"] is None:
        return "n/a"
    lo, hi = m["ci"]
    ci = f" ({lo:.3f}-{hi:.3f})" if lo is not None and hi is not None else ""
    return f"{m['auc']:.3f}{ci}"


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_claim(c: dict) -> str:
    """One line: the claim, its figure and CI, the verdict."""
    lo, hi = (c.get("ci") or [None, None])
    ci = f" [{_f(lo)}, {_f(hi)}]" if lo is not None else ""
    fig = f"difference {c['delta']:+.3f}{ci}" if "delta" in c else f"{_f(c.get('value'))}{ci}"
    return f"{c['claim']}: {fig} -> {c['verdict']}"


def format_summary(summary: dict) -> str:
    """A Table-III-like text table of ``summary`` and the claims' verdicts."""
    lines = [
        "Breast-level AUC on the synthetic test split (screening population), 95% bootstrap CI",
        f"({summary['test_split']['n_exams']} test exams; {summary['note']})",
        "",
        f"{'input':<16}{'variant':<11}{'model':<10}{'malignant':<24}{'benign':<24}",
    ]
    for key, inputs, variant, kind in MODEL_ROWS:
        m = summary["models"][key]["screening"]
        lines.append(f"{inputs:<16}{variant:<11}{kind:<10}{_fmt_auc(m['malignant']):<24}{_fmt_auc(m['benign']):<24}")
    r = summary["reader_study"]
    loc = summary.get("heatmap_localisation", {})
    lines += [
        "",
        f"Reader study ({r['n_readers']} synthetic readers, {r['n_breasts']} breasts, {r['n_positive']} malignant):",
        f"  readers' AUC mean {_f(r['readers_auc_mean'])} (range {_f(r['readers_auc_min'])}-{_f(r['readers_auc_max'])})",
        f"  model AUC {_f(r['model_auc'])} (image+heatmaps ensemble)",
        f"  hybrid (lambda {r['lambda']:g}) mean AUC {_f(r['hybrid_auc_mean'])}",
        "",
        "Heatmap localisation (mean inside lesion masks / mean over other tissue, test split): "
        + ", ".join(f"{c} {_f((loc.get(c) or {}).get('ratio'))}" for c in ("benign", "malignant")),
        "",
        "Claims (paired exam-bootstrap 95% CIs):",
    ]
    lines += [f"  {format_claim(c)}" for c in summary["claims"].values()]
    return "\n".join(lines)


__all__ = ["MODEL_ROWS", "SUMMARY_FORMAT", "build_summary", "claim_verdict", "decide_claims", "format_summary"]
