"""Manifest and labels CSVs: reading, validation, and conversion to exam records.

Manifest (one row per image)::

    exam_id,view,path[,patient_id][,horizontal_flip][,split][,mask_malignant][,mask_benign]
    e001,L-CC,images/e001_L_CC.png,p01,NO,train

``view`` is one of L-CC, R-CC, L-MLO, R-MLO (``l_cc``, ``LCC``, ``L CC`` are accepted and
normalised); ``horizontal_flip`` is YES/NO (default NO, the reference's meaning: YES = the whole
exam is mirrored, L images have the chest wall on the right); relative paths are relative to the
manifest's folder. ``mask_malignant`` / ``mask_benign`` (optional, may be empty) give the image's
lesion mask files, relative paths likewise; patch training requires a named mask to exist unless
the breast's label says it has no such lesion (:mod:`mammokit.training.patches`).

Labels (one row per exam)::

    exam_id,left_benign,right_benign,left_malignant,right_malignant[,birads][,biopsied][,...]

The four label columns are 0/1, ``birads`` 0/1/2 and ``biopsied`` 0/1 (empty = unknown); any
other column (density, finding types, split...) is kept as a string for stratified evaluation.

Every error names the file, the line and the problem.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mammokit.config import LABEL_COLUMNS, VIEWS
from mammokit.errors import InputFileError, MissingFileError
from mammokit.utils.io import write_csv_atomic
from mammokit.utils.text import safe_filename, safe_text
from mammokit.views import View, normalise_view_name

MANIFEST_REQUIRED = ("exam_id", "view", "path")
MANIFEST_OPTIONAL = ("patient_id", "horizontal_flip", "split")
MANIFEST_COLUMNS = MANIFEST_REQUIRED + MANIFEST_OPTIONAL
MASK_COLUMNS = ("mask_malignant", "mask_benign")
"""Optional per-image lesion mask paths (uncropped, the image's size); kept per image in the exam
records as ``mask_malignant`` / ``mask_benign`` ``{view: [path or None]}``."""
LABELS_REQUIRED = ("exam_id",) + LABEL_COLUMNS
_FLIP_VALUES = {"YES": "YES", "NO": "NO"}  # case-insensitive


class ManifestError(InputFileError):
    """A malformed manifest or labels CSV (the message names file, line and problem)."""


@dataclass(frozen=True)
class ManifestRow:
    """One image of a manifest.

    Attributes:
        exam_id: exam identifier as written in the manifest.
        view: one of VIEWS (``L-CC``, ``R-CC``, ``L-MLO``, ``R-MLO``).
        path: image path, resolved against the manifest's folder when relative.
        patient_id: patient identifier or None (used for patient-disjoint splits).
        horizontal_flip: ``"YES"`` or ``"NO"``.
        split: e.g. ``train``/``val``/``test``, or None.
        mask_malignant, mask_benign: lesion mask paths (resolved like ``path``), or None.
        line: line number in the CSV (1 = header), 0 for rows built in code.
    """

    exam_id: str
    view: str
    path: Path
    patient_id: str | None = None
    horizontal_flip: str = "NO"
    split: str | None = None
    line: int = 0
    mask_malignant: Path | None = None
    mask_benign: Path | None = None


def sanitise_id(exam_id: str) -> str:
    """The exam id as used in file names (:func:`mammokit.utils.text.safe_filename`): characters
    outside ``[A-Za-z0-9._-]`` and leading dots become ``_``, ids over 120 characters are cut
    and end in a hash, so no id can name a path outside the work folder (``../../x``)."""
    return safe_filename(exam_id)


def image_name(exam_id: str, view: str, index: int = 0) -> str:
    """``<exam_id>_<L|R>_<CC|MLO>`` (+ ``_<k>`` for the k-th extra image of a view, k >= 1)."""
    name = f"{sanitise_id(exam_id)}_{View.parse(view).stem}"
    return f"{name}_{index}" if index else name


def _read_csv(path: Path, kind: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line, {column: stripped value})`` rows of a CSV.

    Rows end only where the CSV format says so (``newline=""``: the csv module splits on
    ``\\r``/``\\n`` outside quotes), never at other characters ``str.splitlines`` treats as line
    breaks (``\\x85``, ``\\u2028``...), which header text copied into a field may hold.
    """
    if not path.exists():
        raise MissingFileError(f"{path}: {kind} not found")
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder, not a {kind}")
    try:
        # utf-8-sig: spreadsheets often save CSVs with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(h or "").strip() for h in (reader.fieldnames or [])]
            if not any(header):
                raise ManifestError(f"{path}: empty {kind}")
            reader.fieldnames = header
            dupes = sorted({h for h in header if header.count(h) > 1 and h})
            if dupes:
                raise ManifestError(f"{path}: line 1: duplicate column(s) {', '.join(dupes)}")
            rows = []
            for record in reader:
                line = reader.line_num
                if None in record:
                    raise ManifestError(f"{path}: line {line}: more fields than columns in the header")
                values = {k: (v or "").strip() for k, v in record.items() if k}
                if not any(values.values()):
                    continue  # blank line
                rows.append((line, values))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start} of a block)") from None
    except csv.Error as exc:
        raise ManifestError(f"{path}: malformed CSV ({safe_text(exc, max_len=200)})") from None
    return header, rows


def _check_columns(path: Path, header: Sequence[str], required: Sequence[str], kind: str) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(
            f"{path}: line 1: {kind} is missing column(s) {', '.join(missing)} "
            f"(found: {safe_text(', '.join(h for h in header if h) or 'none', max_len=300)}; "
            f"required: {', '.join(required)})"
        )


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read and validate a manifest CSV. Relative image paths are resolved against the manifest's
    folder. Raises :class:`ManifestError` naming the file, line and problem."""
    path = Path(path)
    header, records = _read_csv(path, "manifest")
    _check_columns(path, header, MANIFEST_REQUIRED, "manifest")
    if not records:
        raise ManifestError(f"{path}: manifest has a header but no rows")
    base = path.resolve().parent
    rows = []
    for line, rec in records:
        where = f"{path}: line {line}"
        for column in MANIFEST_REQUIRED:
            if not rec[column]:
                raise ManifestError(f"{where}: empty {column}")
        view = normalise_view_name(rec["view"])
        if view is None:
            raise ManifestError(f"{where}: unknown view {rec['view']!r} (expected one of {', '.join(VIEWS)})")
        flip_raw = rec.get("horizontal_flip", "")
        flip = _FLIP_VALUES.get(flip_raw.upper(), None) if flip_raw else "NO"
        if flip is None:
            raise ManifestError(f"{where}: horizontal_flip must be YES or NO, got {flip_raw!r}")
        for column in ("path", *MASK_COLUMNS):
            if "\x00" in (rec.get(column) or ""):
                raise ManifestError(f"{where}: {column} holds a NUL byte")
        image = _resolve(rec["path"], base)
        masks = {c: _resolve(rec[c], base) if rec.get(c) else None for c in MASK_COLUMNS}
        rows.append(
            ManifestRow(
                exam_id=rec["exam_id"],
                view=view,
                path=image,
                patient_id=rec.get("patient_id") or None,
                horizontal_flip=flip,
                split=rec.get("split") or None,
                line=line,
                **masks,
            )
        )
    return rows


def _resolve(value: str, base: Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def _agree(exam: dict, key: str, value, row: ManifestRow, source: str) -> None:
    if exam[key] != value:
        raise ManifestError(
            f"{source}line {row.line}: exam {row.exam_id!r} has conflicting {key} "
            f"({exam[key]!r} on an earlier row, {value!r} here)"
        )


def manifest_to_exams(rows: Iterable[ManifestRow], source: str | os.PathLike | None = None) -> list[dict]:
    """Group manifest rows into exam records (see :mod:`mammokit.data.examlist`), in order of
    first appearance. Image names follow ``<exam_id>_<L|R>_<CC|MLO>[_<k>]``; ``source_paths``
    holds each image's path. An exam whose rows disagree on horizontal_flip, patient_id or split
    is an error, as are two exam ids that sanitise to the same file-name prefix."""
    prefix = f"{source}: " if source is not None else ""
    exams: dict[str, dict] = {}
    owners: dict[str, str] = {}  # sanitised id -> exam id, to catch file-name collisions
    for row in rows:
        exam = exams.get(row.exam_id)
        if exam is None:
            safe = sanitise_id(row.exam_id)
            if safe in owners:
                raise ManifestError(
                    f"{prefix}line {row.line}: exam ids {owners[safe]!r} and {row.exam_id!r} both map to "
                    f"image names starting {safe!r}; rename one of them"
                )
            owners[safe] = row.exam_id
            exam = {
                "exam_id": row.exam_id,
                "patient_id": row.patient_id,
                "split": row.split,
                "horizontal_flip": row.horizontal_flip,
                **{view: [] for view in VIEWS},
                "source_paths": {view: [] for view in VIEWS},
            }
            exams[row.exam_id] = exam
        else:
            _agree(exam, "horizontal_flip", row.horizontal_flip, row, prefix)
            _agree(exam, "patient_id", row.patient_id, row, prefix)
            _agree(exam, "split", row.split, row, prefix)
        names = exam[row.view]
        names.append(image_name(row.exam_id, row.view, len(names)))
        exam["source_paths"][row.view].append(str(row.path))
        for column in MASK_COLUMNS:
            value = getattr(row, column)
            if value is not None:
                exam.setdefault("_masks", {}).setdefault(column, []).append((row.view, len(names) - 1, str(value)))
    out = list(exams.values())
    for exam in out:  # mask paths aligned with the image names, only when the manifest gives some
        for column, entries in exam.pop("_masks", {}).items():
            per_view = {view: [None] * len(exam[view]) for view in VIEWS}
            for view, index, value in entries:
                per_view[view][index] = value
            exam[column] = per_view
    return out


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> None:
    """Write a manifest CSV atomically. Image paths under the manifest's folder are written
    relative to it (so the folder can be moved), others absolute."""
    path = Path(path)
    base = path.resolve().parent
    rows = list(rows)
    out = []
    for row in rows:
        image = Path(row.path)
        try:
            shown = image.resolve().relative_to(base).as_posix() if image.is_absolute() else image.as_posix()
        except ValueError:
            shown = str(image)
        out.append(
            {
                "exam_id": row.exam_id,
                "view": row.view,
                "path": shown,
                "patient_id": row.patient_id or "",
                "horizontal_flip": row.horizontal_flip,
                "split": row.split or "",
            }
        )
    columns = list(MANIFEST_COLUMNS)
    for column in MASK_COLUMNS:
        if any(getattr(row, column) is not None for row in rows):
            columns.append(column)
            for record, row in zip(out, rows):
                value = getattr(row, column)
                record[column] = "" if value is None else str(value)
    write_csv_atomic(path, out, columns)


# ----------------------------------------------------------------------------- labels


def _parse_int(value: str, allowed: Sequence[int]) -> int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if not number.is_integer() or int(number) not in allowed:
        return None
    return int(number)


def read_labels(path: str | os.PathLike, required: Sequence[str] = LABEL_COLUMNS) -> dict[str, dict]:
    """Read and validate a labels CSV. Returns ``{exam_id: {column: value}}`` (in file order):
    LABEL_COLUMNS present as int 0/1, ``birads`` int 0/1/2 and ``biopsied`` int 0/1 (None when
    empty), every other column as a string. ``required``: label columns that must be present
    (default all four; a reader study needs only the malignant ones). Raises
    :class:`ManifestError` naming file, line and problem."""
    path = Path(path)
    header, records = _read_csv(path, "labels file")
    _check_columns(path, header, ("exam_id", *required), "labels file")
    if not records:
        raise ManifestError(f"{path}: labels file has a header but no rows")
    labels: dict[str, dict] = {}
    first_line: dict[str, int] = {}
    for line, rec in records:
        where = f"{path}: line {line}"
        exam_id = rec["exam_id"]
        if not exam_id:
            raise ManifestError(f"{where}: empty exam_id")
        if exam_id in labels:
            raise ManifestError(f"{where}: duplicate exam_id {exam_id!r} (first on line {first_line[exam_id]})")
        out: dict = {}
        for column in header:
            if not column or column == "exam_id":
                continue
            value = rec.get(column, "")
            if column in LABEL_COLUMNS:
                parsed = _parse_int(value, (0, 1))
                if parsed is None:
                    raise ManifestError(f"{where}: {column} must be 0 or 1, got {value!r}")
                out[column] = parsed
            elif column in ("birads", "biopsied"):
                allowed = (0, 1, 2) if column == "birads" else (0, 1)
                if value == "":
                    out[column] = None
                    continue
                parsed = _parse_int(value, allowed)
                if parsed is None:
                    raise ManifestError(
                        f"{where}: {column} must be one of {', '.join(map(str, allowed))} (or empty), got {value!r}"
                    )
                out[column] = parsed
            else:
                out[column] = value
        labels[exam_id] = out
        first_line[exam_id] = line
    return labels


def write_labels(path: str | os.PathLike, labels: dict[str, dict]) -> None:
    """Write a labels CSV atomically: exam_id, LABEL_COLUMNS, then every other key seen (in
    first-seen order); None is written as an empty field."""
    extra: list[str] = []
    for record in labels.values():
        for key in record:
            if key not in LABEL_COLUMNS and key != "exam_id" and key not in extra:
                extra.append(key)
    columns = list(LABELS_REQUIRED) + extra
    rows = []
    for exam_id, record in labels.items():
        row = {c: ("" if record.get(c) is None else record.get(c)) for c in columns[1:]}
        rows.append({"exam_id": exam_id, **row})
    write_csv_atomic(path, rows, columns)
