"""`mammokit evaluate`: breast-level ROC AUC / PR AUC with exam-bootstrap CIs, per population,
per model, optionally per stratum of a labels column (the paper's Section V and Table III).

Populations (Section V of the paper):

* ``screening``: every exam of the labels file (the whole test population);
* ``biopsied``: exams with ``biopsied == 1``; when the labels file has no ``biopsied`` column,
  exams with at least one positive label (benign or malignant), since in the paper's data every
  benign or malignant label comes from a biopsy;
* ``all``: both of the above, reported separately.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mammokit.errors import UsageError
from mammokit.evaluation.bootstrap import bootstrap_ci, draw_group_resamples
from mammokit.evaluation.metrics import (
    METRICS,
    TASKS,
    UndefinedMetricError,
    check_two_classes,
    flatten_breasts,
)
from mammokit.evaluation.results import (
    EvaluationResult,
    MetricResult,
    ModelResult,
    StratumResult,
    TaskResult,
)
from mammokit.evaluation.tables_io import (
    EvaluationInputError,
    ExamTable,
    check_same_exams,
    read_labels,
    read_predictions,
    subset_labels,
)
from mammokit.utils.log import get_logger
from mammokit.utils.seed import derive_seed

log = get_logger(__name__)

POPULATIONS = ("screening", "biopsied")


def select_population(labels: ExamTable, population: str) -> tuple[list[bool], str]:
    """Which exams belong to ``population`` and a sentence saying how they were chosen."""
    n = len(labels.exam_ids)
    if population == "screening":
        return [True] * n, "all exams of the labels file"
    if population == "biopsied":
        if "biopsied" in labels.extra:
            keep = [v == "1" for v in labels.extra["biopsied"]]
            return keep, "exams with biopsied == 1"
        keep = [any(labels.values[c][i] == 1 for c in labels.values) for i in range(n)]
        return keep, "exams with at least one positive (benign or malignant) label (no 'biopsied' column)"
    raise UsageError(f"unknown population {population!r}; choose screening, biopsied or all")


def _metric(y_true, y_score, groups, name, n_boot, resamples) -> MetricResult:
    fn = METRICS[name]
    try:
        value = fn(y_true, y_score)
    except UndefinedMetricError as exc:
        return MetricResult(None, undefined=str(exc))
    ci = bootstrap_ci(y_true, y_score, groups, fn, n_boot=n_boot, resamples=resamples)
    return MetricResult(value, ci.low, ci.high, ci.n_valid)


def score_tasks(
    labels: ExamTable, pred: ExamTable, n_boot: int, seed_parts: tuple, tasks: Sequence[str] = TASKS
) -> dict[str, TaskResult]:
    """Breast-level metrics of every task on the exams of ``labels`` (``pred`` may hold more)."""
    pidx = pred.index()
    rows = [pidx[e] for e in labels.exam_ids]
    n = len(labels.exam_ids)
    # The same exam draws for every model and task of this set of exams (paired comparison).
    resamples = draw_group_resamples(n, n_boot, derive_seed(*seed_parts)) if n_boot > 0 and n > 0 else None
    fewer = _fewer_views(labels.exam_ids, pred, rows)
    out = {}
    for task in tasks:
        lc, rc = f"left_{task}", f"right_{task}"
        breasts = flatten_breasts(
            labels.exam_ids,
            labels.values[lc],
            labels.values[rc],
            [pred.values[lc][r] for r in rows],
            [pred.values[rc][r] for r in rows],
        )
        scored = np.isfinite(breasts.y_score)
        y_true, y_score, groups = breasts.y_true[scored], breasts.y_score[scored], breasts.groups[scored]
        metrics = {name: _metric(y_true, y_score, groups, name, n_boot, resamples) for name in METRICS}
        out[task] = TaskResult(task, n, int(scored.sum()), int(y_true.sum()), **metrics,
                               n_unscored=int((~scored).sum()), n_fewer_views=int((fewer & scored).sum()))
    return out


def _fewer_views(exam_ids: list[str], pred: ExamTable, rows: list[int]) -> np.ndarray:
    """Per breast (``[exam0-L, exam0-R, ...]``): scored from fewer than its two views, read from
    the predictions' ``views`` column (all False without one)."""
    views = pred.extra.get("views")
    out = np.zeros(2 * len(exam_ids), dtype=bool)
    if views is None:
        return out
    for i, r in enumerate(rows):
        have = set(filter(None, (views[r] or "").split(";")))
        out[2 * i] = len({"L-CC", "L-MLO"} & have) < 2
        out[2 * i + 1] = len({"R-CC", "R-MLO"} & have) < 2
    return out


def _model_names(paths: list[Path], names: Sequence[str] | None) -> list[str]:
    if names:
        if len(names) != len(paths):
            raise UsageError(f"got {len(names)} name(s) for {len(paths)} predictions file(s); give one per file")
        out = list(names)
    else:
        out = [p.stem for p in paths]
        if len(set(out)) != len(out):
            # Same file stem in different folders (run1/predictions.csv, run2/predictions.csv).
            out = [f"{p.parent.name}/{p.stem}" for p in paths]
    dups = sorted({n for n in out if out.count(n) > 1})
    if dups:
        raise UsageError(f"model names must be unique; repeated: {', '.join(dups)} (give names / --name)")
    return out


def evaluate(
    predictions: str | os.PathLike | Sequence[str | os.PathLike],
    labels: str | os.PathLike,
    population: str = "screening",
    bootstrap: int = 2000,
    seed: int = 0,
    by: str | None = None,
    out_dir: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
    split: str | None = None,
) -> EvaluationResult:
    """Evaluate one or several predictions files against a labels CSV.

    Args:
        predictions: one predictions CSV or a list of them (one model each).
        labels: labels CSV (0/1 label columns; optional ``biopsied``, ``split``, strata columns).
        population: ``screening``, ``biopsied`` or ``all`` (both, reported separately).
        bootstrap: number of exam-level bootstrap replicates for the 95% CIs (0: no CIs).
        seed: seed of the bootstrap draws.
        by: a labels column to stratify by (density, scanner, ...): per-value results.
        out_dir: where to write ``evaluation.json``, ``evaluation.md`` and curve PNGs.
        names: display names of the models (default: the files' stems).
        split: evaluate only the labels rows whose ``split`` column equals this.

    Raises:
        EvaluationInputError: mismatched exam ids, missing columns, NaN predictions, unknown
            ``by`` column; every message names the file.
    """
    if bootstrap < 0:
        raise UsageError(f"bootstrap must be >= 0, got {bootstrap}")
    paths = [Path(predictions)] if isinstance(predictions, (str, os.PathLike)) else [Path(p) for p in predictions]
    if not paths:
        raise UsageError("no predictions files given")
    model_names = _model_names(paths, names)
    pops = list(POPULATIONS) if population == "all" else [population]
    for p in pops:
        if p not in POPULATIONS:
            raise UsageError(f"unknown population {population!r}; choose screening, biopsied or all")

    lab = read_labels(labels)
    if split is not None:
        if "split" not in lab.extra:
            raise EvaluationInputError(f"{lab.path}: split={split!r} asked but the labels have no 'split' column")
        lab = subset_labels(lab, [s == split for s in lab.extra["split"]])
        if not lab.exam_ids:
            raise EvaluationInputError(f"{lab.path}: no exams with split == {split!r}")
    if by is not None and by not in lab.extra:
        raise EvaluationInputError(
            f"{lab.path}: no column {by!r} to stratify by; available: {', '.join(lab.extra) or 'none'}"
        )
    pop_tables: dict[str, ExamTable] = {}
    notes: dict[str, str] = {}
    for p in pops:
        keep, notes[p] = select_population(lab, p)
        pop_tables[p] = subset_labels(lab, keep)
        if not pop_tables[p].exam_ids:
            raise EvaluationInputError(f"{lab.path}: the {p} population is empty ({notes[p]})")

    preds = [read_predictions(p) for p in paths]
    for pr in preds:
        check_same_exams(pr, lab)

    models = []
    for name, path, pr in zip(model_names, paths, preds):
        log.info("evaluating %s (%d exams, %d bootstrap replicates)", name, len(pr.exam_ids), bootstrap)
        res = ModelResult(name, str(path), {})
        for p, table in pop_tables.items():
            res.populations[p] = score_tasks(table, pr, bootstrap, (seed, "bootstrap", p))
            if by is not None:
                res.strata[p] = _strata(table, pr, by, bootstrap, seed, p)
        models.append(res)

    result = EvaluationResult(
        labels_path=str(lab.path),
        populations=pops,
        population_notes=notes,
        population_sizes={p: len(t.exam_ids) for p, t in pop_tables.items()},
        bootstrap=bootstrap,
        seed=seed,
        by=by,
        models=models,
    )
    for p, table in pop_tables.items():
        for task in TASKS:
            try:
                check_two_classes(np.asarray(table.values[f"left_{task}"] + table.values[f"right_{task}"]))
            except UndefinedMetricError as exc:
                log.warning("%s population, %s: %s", p, task, exc)
    if out_dir is not None:
        _write_outputs(result, pop_tables, preds, Path(out_dir))
    return result


def _strata(table: ExamTable, pred: ExamTable, by: str, n_boot: int, seed: int, pop: str) -> list[StratumResult]:
    values = table.extra[by]
    out = []
    for value in sorted(set(values)):
        sub = subset_labels(table, [v == value for v in values])
        label = value if value != "" else "(missing)"
        tasks = score_tasks(sub, pred, n_boot, (seed, "bootstrap", pop, by, value))
        out.append(StratumResult(by, label, len(sub.exam_ids), tasks))
    return out


def _write_outputs(result: EvaluationResult, pop_tables: dict[str, ExamTable], preds: list[ExamTable], out: Path) -> None:
    from mammokit.evaluation.plots import plot_roc_pr
    from mammokit.evaluation.tables import evaluation_markdown
    from mammokit.utils.io import write_json_atomic, write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    for p, table in pop_tables.items():
        for task in TASKS:
            curves = {}
            for m, pr in zip(result.models, preds):
                pidx = pr.index()
                rows = [pidx[e] for e in table.exam_ids]
                b = flatten_breasts(
                    table.exam_ids,
                    table.values[f"left_{task}"],
                    table.values[f"right_{task}"],
                    [pr.values[f"left_{task}"][r] for r in rows],
                    [pr.values[f"right_{task}"][r] for r in rows],
                )
                ok = np.isfinite(b.y_score)
                if ok.any() and b.y_true[ok].min() != b.y_true[ok].max():
                    curves[m.name] = (b.y_true[ok], b.y_score[ok], m.populations[p][task])
            if curves:
                path = out / f"curves_{p}_{task}.png"
                plot_roc_pr(
                    {k: (v[0], v[1]) for k, v in curves.items()},
                    path,
                    title=f"{task}, {p} population ({len(table.exam_ids)} exams)",
                    aucs={k: (v[2].roc_auc.value, v[2].pr_auc.value) for k, v in curves.items()},
                )
                result.outputs[f"curves_{p}_{task}"] = str(path)
    result.outputs["json"] = str(out / "evaluation.json")
    result.outputs["markdown"] = str(out / "evaluation.md")
    write_text_atomic(out / "evaluation.md", evaluation_markdown(result))
    write_json_atomic(out / "evaluation.json", result.to_dict())
