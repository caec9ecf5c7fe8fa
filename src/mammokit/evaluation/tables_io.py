"""Reading the CSV files the evaluation consumes: predictions, labels, readers.

One reader per format, built on the ``csv`` module (no pandas dependency). Every error names the
file and the problem, so a user can fix the CSV without reading a traceback.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from mammokit.config import LABEL_COLUMNS
from mammokit.errors import InputFileError, MissingFileError


class EvaluationInputError(InputFileError):
    """A malformed or inconsistent evaluation input (the message names the file and problem)."""


@dataclass
class ExamTable:
    """Exam-level values read from a predictions or labels CSV.

    Attributes:
        path: the file read.
        exam_ids: exam ids in file order.
        values: per label column (LABEL_COLUMNS), one float per exam, aligned with ``exam_ids``.
        extra: per other column (birads, biopsied, split, density, ...), one string per exam.
    """

    path: Path
    exam_ids: list[str]
    values: dict[str, list[float]]
    extra: dict[str, list[str]] = field(default_factory=dict)

    def index(self) -> dict[str, int]:
        return {e: i for i, e in enumerate(self.exam_ids)}


def _read_rows(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: {what} file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise EvaluationInputError(f"{path}: empty {what} file (no header)")
        header = [h.strip() for h in reader.fieldnames]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise EvaluationInputError(f"{path}: {what} file has a header but no rows")
    return header, rows


def _require_columns(path: Path, header: list[str], required: tuple[str, ...], what: str) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise EvaluationInputError(
            f"{path}: {what} file lacks column(s) {', '.join(missing)} "
            f"(expected {', '.join(required)}; found {', '.join(header)})"
        )


def _unique_ids(path: Path, ids: list[str], what: str) -> None:
    seen: set[str] = set()
    dups = []
    for e in ids:
        if e in seen:
            dups.append(e)
        seen.add(e)
    if dups:
        raise EvaluationInputError(
            f"{path}: {what} file repeats {len(dups)} exam id(s), e.g. {', '.join(sorted(set(dups))[:5])}"
        )
    if "" in seen:
        raise EvaluationInputError(f"{path}: {what} file has a row with an empty exam_id")


def _parse_float(path: Path, value: str, row: int, col: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise EvaluationInputError(f"{path}: row {row}, column {col}: {value!r} is not a number") from None


def read_predictions(path: str | Path) -> ExamTable:
    """Read a predictions CSV (``exam_id`` + the four LABEL_COLUMNS probabilities in [0, 1]).

    An empty cell is a breast without a prediction (``mammokit predict`` writes one for a breast
    of an exam that has no view of it) and reads as NaN; the other columns (e.g. ``views``) are
    kept in ``extra``. Raises EvaluationInputError for missing columns, non-numeric / NaN /
    out-of-range values and repeated exam ids.
    """
    path = Path(path)
    header, rows = _read_rows(path, "predictions")
    _require_columns(path, header, ("exam_id",) + LABEL_COLUMNS, "predictions")
    ids = [r["exam_id"] for r in rows]
    _unique_ids(path, ids, "predictions")
    values: dict[str, list[float]] = {c: [] for c in LABEL_COLUMNS}
    bad: list[str] = []
    for i, r in enumerate(rows, start=2):  # row 1 is the header
        for c in LABEL_COLUMNS:
            if (r[c] or "").strip() == "":
                values[c].append(math.nan)
                continue
            v = _parse_float(path, r[c], i, c)
            if not math.isfinite(v) or not 0.0 <= v <= 1.0:
                bad.append(f"{r['exam_id']}/{c}={r[c] or 'empty'}")
            values[c].append(v)
    if bad:
        raise EvaluationInputError(
            f"{path}: {len(bad)} prediction(s) are NaN, infinite or outside [0, 1], e.g. {', '.join(bad[:5])}"
        )
    extra = {c: [r[c] for r in rows] for c in header if c not in LABEL_COLUMNS and c != "exam_id"}
    return ExamTable(path, ids, values, extra)


def read_labels(path: str | Path, columns: tuple[str, ...] = LABEL_COLUMNS) -> ExamTable:
    """Read a labels CSV with the project's labels reader (:func:`mammokit.data.manifest.read_labels`:
    0/1 labels, optional ``birads`` / ``biopsied``, other columns kept) and lay it out by column.

    ``columns``: the label columns needed (default all four). A file whose label columns hold
    fractional values is most likely a predictions file given as labels; the error says so.
    """
    from mammokit.data.manifest import ManifestError
    from mammokit.data.manifest import read_labels as read_label_records

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: labels file not found")
    try:
        records = read_label_records(path, required=columns)
    except ManifestError as exc:
        message = str(exc)
        if "must be 0 or 1" in message:
            try:
                if 0 < float(message.rsplit("got ", 1)[-1].strip("'\"")) < 1:
                    message += " (this looks like a predictions file; pass the labels file with --labels)"
            except ValueError:
                pass
        raise EvaluationInputError(message) from None
    ids = list(records)
    values = {c: [float(records[e][c]) for e in ids] for c in columns}
    extra_columns: list[str] = []
    for record in records.values():
        extra_columns += [c for c in record if c not in columns and c not in extra_columns]
    extra = {c: ["" if records[e].get(c) is None else str(records[e][c]) for e in ids] for c in extra_columns}
    return ExamTable(path, ids, values, extra)


def check_same_exams(pred: ExamTable, labels: ExamTable) -> None:
    """Raise a clear error when predictions and labels do not cover the same exams."""
    p, lab = set(pred.exam_ids), set(labels.exam_ids)
    if p == lab:
        return
    parts = []
    only_lab = sorted(lab - p)
    only_pred = sorted(p - lab)
    if only_lab:
        parts.append(
            f"{len(only_lab)} exam(s) of {labels.path} have no prediction (e.g. {', '.join(only_lab[:5])}"
            f"; exams inference could not score are listed in its .skipped.csv)"
        )
    if only_pred:
        parts.append(f"{len(only_pred)} predicted exam(s) are not in the labels (e.g. {', '.join(only_pred[:5])})")
    raise EvaluationInputError(
        f"{pred.path}: exam ids do not match {labels.path}: " + "; ".join(parts)
        + " (use split= / --split to evaluate one split of the labels)"
    )


def subset_labels(labels: ExamTable, keep: list[bool]) -> ExamTable:
    """The rows of ``labels`` where ``keep`` is true."""
    idx = [i for i, k in enumerate(keep) if k]
    return ExamTable(
        labels.path,
        [labels.exam_ids[i] for i in idx],
        {c: [v[i] for i in idx] for c, v in labels.values.items()},
        {c: [v[i] for i in idx] for c, v in labels.extra.items()},
    )
