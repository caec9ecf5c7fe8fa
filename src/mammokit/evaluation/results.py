"""Result records of :func:`mammokit.evaluation.evaluate.evaluate` (plain dataclasses, JSON-ready
through :meth:`EvaluationResult.to_dict`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["MetricResult", "TaskResult", "StratumResult", "ModelResult", "EvaluationResult"]


@dataclass
class MetricResult:
    """One metric with its bootstrap interval, or the reason it is undefined."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n_boot_valid: int = 0
    undefined: str | None = None


@dataclass
class TaskResult:
    """Breast-level results of one task (malignant or benign) on one set of exams."""

    task: str
    n_exams: int
    n_breasts: int
    n_positive: int
    roc_auc: MetricResult
    pr_auc: MetricResult
    n_unscored: int = 0  # breasts without a prediction (the exam had no view of them): left out
    n_fewer_views: int = 0  # scored breasts with fewer than their two views (CC, MLO)


@dataclass
class StratumResult:
    """Results on the exams whose ``column`` equals ``value``."""

    column: str
    value: str
    n_exams: int
    tasks: dict[str, TaskResult]


@dataclass
class ModelResult:
    """All results of one predictions file."""

    name: str
    path: str
    populations: dict[str, dict[str, TaskResult]]
    strata: dict[str, list[StratumResult]] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """What :func:`evaluate` computed (and wrote, when ``out_dir`` was given)."""

    labels_path: str
    populations: list[str]
    population_notes: dict[str, str]
    population_sizes: dict[str, int]
    bootstrap: int
    seed: int
    by: str | None
    models: list[ModelResult]
    outputs: dict[str, str] = field(default_factory=dict)

    def model(self, name: str) -> ModelResult:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"no model named {name!r}; have {[m.name for m in self.models]}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
