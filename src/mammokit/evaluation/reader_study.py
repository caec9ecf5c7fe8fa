"""`mammokit reader-study`: readers vs the model vs reader-model hybrids (paper Section VI, Figs 8-9).

Every reader gave each breast a probability of malignancy. The hybrid of a reader and the model is
``y = lambda * reader + (1 - lambda) * model`` on the same 0-1 scale (readers reporting 0-100%
are divided by 100 first). The paper reports per-reader and model ROC AUC / PR AUC, the hybrids at
lambda = 0.5 (mean and std across readers) and the sweep of lambda over [0, 1] per reader.

Inputs, three ways:

* readers CSV ``reader_id,exam_id,breast,probability`` (breast L/R; probability 0-1 or 0-100),
  model predictions (the predictions CSV, malignant columns, or ``exam_id,breast,probability``)
  and a labels CSV (``exam_id,left_malignant,right_malignant``, benign columns optional);
* the paper's published wide format (``case_ID,side,label,Reader01_POM,...,AI_DMVCNN_POM``):
  ``nyu_csv=`` with ``model_column=``.

The study's breasts are those read by at least one reader; each reader is scored on the breasts
they read, the model on all the study's breasts.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mammokit.errors import MissingFileError, UsageError
from mammokit.evaluation.metrics import UndefinedMetricError, pr_auc, roc_auc
from mammokit.evaluation.tables_io import (
    EvaluationInputError,
    read_labels,
    read_predictions,
)
from mammokit.utils.log import get_logger

log = get_logger(__name__)

Breast = tuple[str, str]  # (exam_id, "L" | "R")
DEFAULT_LAMBDAS = np.round(np.linspace(0.0, 1.0, 21), 4)
NYU_MODEL_COLUMN = "AI_DMVCNN_POM"
_READER_COL = re.compile(r"^(Reader\d+)_POM$")


@dataclass
class ReaderStudyData:
    """Breast-level inputs of a reader study, all on a 0-1 scale.

    Attributes:
        labels: malignancy label per breast.
        model: model probability per breast.
        readers: per reader id, probability per breast read.
        scale: the readers' original scale (1 or 100) and how it was chosen.
    """

    labels: dict[Breast, int]
    model: dict[Breast, float]
    readers: dict[str, dict[Breast, float]]
    scale: float = 1.0
    scale_source: str = "given"


@dataclass
class ReaderResult:
    """One reader: own metrics and those of the hybrid with the model at ``lam``."""

    reader: str
    n_breasts: int
    n_positive: int
    roc_auc: float | None
    pr_auc: float | None
    hybrid_roc_auc: float | None
    hybrid_pr_auc: float | None
    model_roc_auc: float | None  # the model on this reader's breasts (= overall when all read)
    model_pr_auc: float | None


@dataclass
class ReaderStudyResult:
    """What :func:`reader_study` computed (and wrote, when ``out_dir`` was given)."""

    model_name: str
    n_exams: int
    n_breasts: int
    n_positive: int
    scale: float
    scale_source: str
    model_roc_auc: float
    model_pr_auc: float
    lam: float
    readers: list[ReaderResult]
    summary: dict[str, float]
    lambdas: list[float]
    sweep: dict[str, dict[str, list[float | None]]]
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- input reading


def detect_scale(values: Sequence[float], path: str | Path = "readers") -> tuple[float, str]:
    """The readers' probability scale: 100 if any value exceeds 1; 1 if some value lies strictly
    between 0 and 1 (a 0-100 study where every breast got at most 1% is implausible); otherwise
    (only 0 and 1 present) ambiguous: raise and ask for ``scale``."""
    arr = np.asarray(values, dtype=float)
    if arr.size and arr.max() > 1:
        return 100.0, "detected: values above 1"
    if np.any((arr > 0) & (arr < 1)):
        return 1.0, "detected: all values in [0, 1] with fractional values"
    raise EvaluationInputError(
        f"{path}: cannot tell whether reader probabilities are on a 0-1 or 0-100 scale (values are "
        f"only 0 and 1); give --scale 1 or --scale 100"
    )


def _open_rows(path: Path, required: tuple[str, ...], what: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise MissingFileError(f"{path}: {what} file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise EvaluationInputError(
                f"{path}: {what} file lacks column(s) {', '.join(missing)} (found {', '.join(header) or 'no header'})"
            )
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def _side(value: str, path: Path, row: int) -> str:
    v = value.strip().upper()
    if v in ("L", "LEFT"):
        return "L"
    if v in ("R", "RIGHT"):
        return "R"
    raise EvaluationInputError(f"{path}: row {row}: breast must be L or R, got {value!r}")


def _prob(value: str, path: Path, row: int, col: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise EvaluationInputError(f"{path}: row {row}, column {col}: {value!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise EvaluationInputError(f"{path}: row {row}, column {col}: probability must be finite and >= 0, got {value!r}")
    return v


def read_readers(path: str | Path) -> dict[str, dict[Breast, float]]:
    """Readers CSV ``reader_id,exam_id,breast,probability`` -> reader -> breast -> probability
    (original scale)."""
    path = Path(path)
    rows = _open_rows(path, ("reader_id", "exam_id", "breast", "probability"), "readers")
    out: dict[str, dict[Breast, float]] = {}
    for i, r in enumerate(rows, start=2):
        key = (r["exam_id"], _side(r["breast"], path, i))
        reads = out.setdefault(r["reader_id"], {})
        if key in reads:
            raise EvaluationInputError(f"{path}: row {i}: reader {r['reader_id']} scores breast {key} twice")
        reads[key] = _prob(r["probability"], path, i, "probability")
    if not out:
        raise EvaluationInputError(f"{path}: readers file has no rows")
    return out


def read_breast_scores(path: str | Path) -> dict[Breast, float]:
    """Model scores from a predictions CSV (malignant columns) or ``exam_id,breast,probability``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: model predictions file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = [h.strip() for h in (next(csv.reader(f), []))]
    if "left_malignant" in header:
        pred = read_predictions(path)
        out = {}
        for i, e in enumerate(pred.exam_ids):
            for side, col in (("L", "left_malignant"), ("R", "right_malignant")):
                if pred.values[col][i] == pred.values[col][i]:  # a breast without any view has none
                    out[(e, side)] = pred.values[col][i]
        return out
    rows = _open_rows(path, ("exam_id", "breast", "probability"), "model predictions (breast-level)")
    out = {}
    for i, r in enumerate(rows, start=2):
        key = (r["exam_id"], _side(r["breast"], path, i))
        v = _prob(r["probability"], path, i, "probability")
        if v > 1:
            raise EvaluationInputError(f"{path}: row {i}: model probability must be in [0, 1], got {r['probability']}")
        if key in out:
            raise EvaluationInputError(f"{path}: row {i}: breast {key} appears twice")
        out[key] = v
    return out


def read_nyu_csv(path: str | Path, model_column: str = NYU_MODEL_COLUMN) -> tuple[dict, dict, dict]:
    """The paper's published wide CSV -> (labels, model scores, readers' scores (original scale)).

    Readers are the ``ReaderNN_POM`` columns; an empty reader cell means not read.
    """
    path = Path(path)
    rows = _open_rows(path, ("case_ID", "side", "label", model_column), "reader study (wide)")
    reader_cols = [c for c in rows[0] if _READER_COL.match(c)] if rows else []
    if not reader_cols:
        raise EvaluationInputError(f"{path}: no ReaderNN_POM columns found")
    labels, model, readers = {}, {}, {c: {} for c in reader_cols}
    for i, r in enumerate(rows, start=2):
        key = (r["case_ID"], _side(r["side"], path, i))
        if key in labels:
            raise EvaluationInputError(f"{path}: row {i}: breast {key} appears twice")
        if r["label"] not in ("0", "1"):
            raise EvaluationInputError(f"{path}: row {i}: label must be 0 or 1, got {r['label']!r}")
        labels[key] = int(r["label"])
        model[key] = _prob(r[model_column], path, i, model_column)
        for c in reader_cols:
            if r[c] != "":
                readers[c][key] = _prob(r[c], path, i, c)
    names = {c: _READER_COL.match(c).group(1) for c in reader_cols}
    return labels, model, {names[c]: v for c, v in readers.items()}


def load_reader_study(
    readers: str | Path | None = None,
    model_predictions: str | Path | None = None,
    labels: str | Path | None = None,
    nyu_csv: str | Path | None = None,
    model_column: str = NYU_MODEL_COLUMN,
    scale: float | None = None,
) -> ReaderStudyData:
    """Read and cross-check the inputs; readers converted to 0-1."""
    if nyu_csv is not None:
        if readers or model_predictions or labels:
            raise UsageError("give either nyu_csv or readers + model predictions + labels, not both")
        lab, model, reads = read_nyu_csv(nyu_csv, model_column)
        src = Path(nyu_csv)
        model_src, labels_src = src, src
    else:
        if not (readers and model_predictions and labels):
            raise UsageError("a reader study needs readers, model predictions and labels (or nyu_csv)")
        reads = read_readers(readers)
        model = read_breast_scores(model_predictions)
        table = read_labels(labels, columns=("left_malignant", "right_malignant"))
        lab = {}
        for i, e in enumerate(table.exam_ids):
            lab[(e, "L")] = int(table.values["left_malignant"][i])
            lab[(e, "R")] = int(table.values["right_malignant"][i])
        src, model_src, labels_src = Path(readers), Path(model_predictions), Path(labels)

    all_values = [v for r in reads.values() for v in r.values()]
    if scale is None:
        scale, how = detect_scale(all_values, src)
    else:
        if scale not in (1, 100):
            raise UsageError(f"scale must be 1 or 100, got {scale}")
        how = "given"
    over = [(rid, k, v) for rid, r in reads.items() for k, v in r.items() if v > scale]
    if over:
        rid, k, v = over[0]
        raise EvaluationInputError(
            f"{src}: {len(over)} reader probabilities exceed the scale {scale:g} (e.g. reader {rid}, breast {k}: {v:g})"
        )
    reads01 = {rid: {k: v / scale for k, v in r.items()} for rid, r in reads.items()}

    study = sorted({k for r in reads01.values() for k in r})
    if not study:
        raise EvaluationInputError(f"{src}: the readers scored no breasts")
    for what, table, path in (("labels", lab, labels_src), ("model predictions", model, model_src)):
        missing = [k for k in study if k not in table]
        if missing:
            eg = ", ".join(f"{e}/{s}" for e, s in missing[:5])
            raise EvaluationInputError(
                f"{path}: {what} lack {len(missing)} of the {len(study)} breasts the readers scored (e.g. {eg})"
            )
    return ReaderStudyData(
        labels={k: lab[k] for k in study},
        model={k: model[k] for k in study},
        readers=reads01,
        scale=float(scale),
        scale_source=how,
    )


# ----------------------------------------------------------------------------- analysis


def _safe(fn, y, s) -> float | None:
    try:
        return fn(y, s)
    except UndefinedMetricError:
        return None


def hybrid(reader: np.ndarray, model: np.ndarray, lam: float) -> np.ndarray:
    """``lam * reader + (1 - lam) * model`` (both on a 0-1 scale)."""
    return lam * np.asarray(reader, dtype=float) + (1.0 - lam) * np.asarray(model, dtype=float)


def _stats(values: list[float | None], prefix: str) -> dict[str, float]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {}
    # Population standard deviation (ddof=0): it reproduces the paper's readers std 0.0435.
    return {
        f"{prefix}_mean": float(v.mean()),
        f"{prefix}_std": float(v.std(ddof=0)),
        f"{prefix}_min": float(v.min()),
        f"{prefix}_max": float(v.max()),
    }


def analyse_reader_study(
    data: ReaderStudyData, lam: float = 0.5, lambdas: Sequence[float] | None = None, model_name: str = "model"
) -> ReaderStudyResult:
    """Per-reader, model and hybrid metrics; the lambda sweep per reader."""
    if not 0 <= lam <= 1:
        raise UsageError(f"lambda must be in [0, 1], got {lam}")
    lambdas = np.asarray(DEFAULT_LAMBDAS if lambdas is None else lambdas, dtype=float)
    keys = list(data.labels)
    y = np.asarray([data.labels[k] for k in keys])
    m = np.asarray([data.model[k] for k in keys])
    try:
        model_roc, model_pr = roc_auc(y, m), pr_auc(y, m)
    except UndefinedMetricError as exc:
        raise EvaluationInputError(f"reader study: {exc} (labels of the breasts the readers scored)") from None
    results, sweep = [], {}
    for rid in sorted(data.readers):
        rk = [k for k in keys if k in data.readers[rid]]
        yr = np.asarray([data.labels[k] for k in rk])
        sr = np.asarray([data.readers[rid][k] for k in rk])
        mr = np.asarray([data.model[k] for k in rk])
        h = hybrid(sr, mr, lam)
        results.append(
            ReaderResult(
                rid, len(rk), int(yr.sum()),
                _safe(roc_auc, yr, sr), _safe(pr_auc, yr, sr),
                _safe(roc_auc, yr, h), _safe(pr_auc, yr, h),
                _safe(roc_auc, yr, mr), _safe(pr_auc, yr, mr),
            )
        )
        sweep[rid] = {
            "roc_auc": [_safe(roc_auc, yr, hybrid(sr, mr, float(a))) for a in lambdas],
            "pr_auc": [_safe(pr_auc, yr, hybrid(sr, mr, float(a))) for a in lambdas],
        }
    summary: dict[str, float] = {}
    summary.update(_stats([r.roc_auc for r in results], "readers_roc_auc"))
    summary.update(_stats([r.pr_auc for r in results], "readers_pr_auc"))
    summary.update(_stats([r.hybrid_roc_auc for r in results], "hybrid_roc_auc"))
    summary.update(_stats([r.hybrid_pr_auc for r in results], "hybrid_pr_auc"))
    n_exams = len({e for e, _ in keys})
    return ReaderStudyResult(
        model_name=model_name,
        n_exams=n_exams,
        n_breasts=len(keys),
        n_positive=int(y.sum()),
        scale=data.scale,
        scale_source=data.scale_source,
        model_roc_auc=model_roc,
        model_pr_auc=model_pr,
        lam=float(lam),
        readers=results,
        summary=summary,
        lambdas=[float(a) for a in lambdas],
        sweep=sweep,
    )


def reader_study(
    readers: str | os.PathLike | None = None,
    model_predictions: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    *,
    nyu_csv: str | os.PathLike | None = None,
    model_column: str = NYU_MODEL_COLUMN,
    scale: float | None = None,
    lam: float = 0.5,
    lambdas: Sequence[float] | None = None,
    out_dir: str | os.PathLike | None = None,
    model_name: str | None = None,
) -> ReaderStudyResult:
    """Run a reader study and, with ``out_dir``, write ``reader_study.json``, ``reader_study.md``,
    ``reader_curves.png`` (Fig. 8) and ``lambda_sweep.png`` (Fig. 9).

    Args:
        readers: readers CSV ``reader_id,exam_id,breast,probability``.
        model_predictions: predictions CSV or ``exam_id,breast,probability``.
        labels: labels CSV with ``left_malignant,right_malignant``.
        nyu_csv: instead of the three above, the paper's published wide CSV.
        model_column: the model column of ``nyu_csv``.
        scale: readers' scale, 1 or 100; None detects it when unambiguous (else an error).
        lam: the hybrid weight reported per reader (paper: 0.5).
        lambdas: the sweep grid (default 0, 0.05, ..., 1).
    """
    data = load_reader_study(readers, model_predictions, labels, nyu_csv, model_column, scale)
    if model_name is None:
        model_name = model_column if nyu_csv is not None else Path(model_predictions).stem
    result = analyse_reader_study(data, lam=lam, lambdas=lambdas, model_name=model_name)
    if out_dir is not None:
        _write_outputs(result, data, Path(out_dir))
    return result


def reader_study_markdown(r: ReaderStudyResult) -> str:
    """Markdown summary: the paper's reader-study numbers for these inputs."""
    f = lambda v: "undefined" if v is None else f"{v:.3f}"  # noqa: E731
    s = r.summary
    lines = [
        "# mammokit reader study",
        "",
        "Research use only; not for clinical decisions.",
        "",
        f"{r.n_exams} exams, {r.n_breasts} breasts, {r.n_positive} malignant. Readers' scale: {r.scale:g} "
        f"({r.scale_source}); converted to 0-1. Hybrid = {r.lam:g} x reader + {1 - r.lam:g} x model.",
        "",
        "| | ROC AUC | PR AUC |",
        "|---|---|---|",
        f"| model ({r.model_name}) | {r.model_roc_auc:.3f} | {r.model_pr_auc:.3f} |",
    ]
    if s:
        lines += [
            f"| readers, mean (std) | {s['readers_roc_auc_mean']:.3f} ({s['readers_roc_auc_std']:.3f}) | "
            f"{s['readers_pr_auc_mean']:.3f} ({s['readers_pr_auc_std']:.3f}) |",
            f"| readers, range | {s['readers_roc_auc_min']:.3f}-{s['readers_roc_auc_max']:.3f} | "
            f"{s['readers_pr_auc_min']:.3f}-{s['readers_pr_auc_max']:.3f} |",
            f"| hybrids (lambda={r.lam:g}), mean (std) | {s['hybrid_roc_auc_mean']:.3f} ({s['hybrid_roc_auc_std']:.3f}) | "
            f"{s['hybrid_pr_auc_mean']:.3f} ({s['hybrid_pr_auc_std']:.3f}) |",
        ]
    lines += [
        "",
        "| reader | breasts | malignant | ROC AUC | PR AUC | hybrid ROC AUC | hybrid PR AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r.readers:
        lines.append(
            f"| {x.reader} | {x.n_breasts} | {x.n_positive} | {f(x.roc_auc)} | {f(x.pr_auc)} | "
            f"{f(x.hybrid_roc_auc)} | {f(x.hybrid_pr_auc)} |"
        )
    lines.append("")
    if "fig8" in r.outputs:
        lines += ["![readers, model, hybrids](reader_curves.png)", "", "![AUC vs lambda](lambda_sweep.png)", ""]
    return "\n".join(lines)


def _write_outputs(result: ReaderStudyResult, data: ReaderStudyData, out: Path) -> None:
    from mammokit.evaluation.plots import plot_lambda_sweep, plot_reader_curves
    from mammokit.utils.io import write_json_atomic, write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    keys = list(data.labels)
    y_by, s_by, h_by = {}, {}, {}
    for rid in sorted(data.readers):
        rk = [k for k in keys if k in data.readers[rid]]
        yr = np.asarray([data.labels[k] for k in rk])
        if yr.min() == yr.max():
            continue  # a reader with one class has no curve
        y_by[rid] = yr
        s_by[rid] = np.asarray([data.readers[rid][k] for k in rk])
        h_by[rid] = hybrid(s_by[rid], np.asarray([data.model[k] for k in rk]), result.lam)
    plot_reader_curves(
        y_by, s_by, h_by,
        np.asarray([data.labels[k] for k in keys]), np.asarray([data.model[k] for k in keys]),
        out / "reader_curves.png", model_name=result.model_name, lam=result.lam,
    )
    nan = lambda xs: np.asarray([np.nan if v is None else v for v in xs], dtype=float)  # noqa: E731
    plot_lambda_sweep(
        np.asarray(result.lambdas),
        {k: nan(v["roc_auc"]) for k, v in result.sweep.items()},
        {k: nan(v["pr_auc"]) for k, v in result.sweep.items()},
        out / "lambda_sweep.png",
    )
    result.outputs.update(
        fig8=str(out / "reader_curves.png"),
        fig9=str(out / "lambda_sweep.png"),
        json=str(out / "reader_study.json"),
        markdown=str(out / "reader_study.md"),
    )
    write_text_atomic(out / "reader_study.md", reader_study_markdown(result))
    write_json_atomic(out / "reader_study.json", result.to_dict())
