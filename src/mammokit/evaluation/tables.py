"""Markdown tables of evaluation and reader-study results (Table III style)."""

from __future__ import annotations

from mammokit.evaluation.results import EvaluationResult, MetricResult, TaskResult


def fmt_metric(m: MetricResult) -> str:
    """``0.876 (0.842-0.905)``, ``0.876`` without CI, or ``undefined`` (reason in a footnote)."""
    if m.value is None:
        return "undefined"
    if m.ci_low is None:
        return f"{m.value:.3f}"
    return f"{m.value:.3f} ({m.ci_low:.3f}-{m.ci_high:.3f})"


def _row(name: str, tasks: dict[str, TaskResult], notes: list[str]) -> str:
    cells = [name]
    for task in ("malignant", "benign"):
        t = tasks[task]
        for metric in (t.roc_auc, t.pr_auc):
            cells.append(fmt_metric(metric))
            if metric.undefined and f"{name}, {task}: {metric.undefined}" not in notes:
                notes.append(f"{name}, {task}: {metric.undefined}")
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| model | malignant ROC AUC | malignant PR AUC | benign ROC AUC | benign PR AUC |\n"
    "|---|---|---|---|---|"
)


def evaluation_markdown(result: EvaluationResult) -> str:
    """Markdown summary: one Table III-like table per population (rows = models), then strata."""
    ci = f"95% CI from {result.bootstrap} exam-level bootstrap replicates (seed {result.seed})"
    lines = [
        "# mammokit evaluation",
        "",
        f"Labels: `{result.labels_path}`. Breast-level metrics; {ci if result.bootstrap else 'no CIs'}.",
        "Research use only; not for clinical decisions.",
        "",
    ]
    for pop in result.populations:
        notes: list[str] = []
        first = result.models[0].populations[pop]
        lines += [
            f"## {pop.capitalize()} population",
            "",
            f"{result.population_sizes[pop]} exams ({result.population_notes[pop]}); "
            f"{first['malignant'].n_positive} malignant and {first['benign'].n_positive} benign breasts "
            f"of {first['malignant'].n_breasts}.",
            "",
            HEADER,
        ]
        lines += [_row(m.name, m.populations[pop], notes) for m in result.models]
        lines.append("")
        for m in result.models:
            t = m.populations[pop]["malignant"]
            if t.n_unscored or t.n_fewer_views:
                lines += [f"{m.name}: {t.n_fewer_views} breast(s) scored from fewer than their two views; "
                          f"{t.n_unscored} without any view, left out of the metrics.", ""]
        if result.by:
            lines += [f"### {pop.capitalize()} population by `{result.by}`", ""]
            lines.append(
                "| model | " + result.by + " | exams | malignant ROC AUC | malignant PR AUC | benign ROC AUC | benign PR AUC |"
            )
            lines.append("|---|---|---|---|---|---|---|")
            for m in result.models:
                for s in m.strata[pop]:
                    row = _row(f"{m.name} | {s.value} | {s.n_exams}", s.tasks, notes)
                    lines.append(row)
            lines.append("")
        if notes:
            lines += ["Undefined values:", ""] + [f"- {n}" for n in notes] + [""]
        for task in ("malignant", "benign"):
            key = f"curves_{pop}_{task}"
            if key in result.outputs:
                from pathlib import Path

                lines.append(f"![{task}, {pop}]({Path(result.outputs[key]).name})")
        lines.append("")
    return "\n".join(lines)
