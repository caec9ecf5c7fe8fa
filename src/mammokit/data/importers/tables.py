"""Tolerant table readers for the data sets' CSV / XLSX files.

Every table is read by column name, never by position; headers and values are stripped of
whitespace (path fields in CBIS-DDSM end with a newline inside quotes); a byte-order mark is
dropped; the delimiter is detected (INbreast's CSV uses ``;``). A repeated header gets a
``.1``, ``.2`` suffix as pandas does (VinDr's ``SOP Instance UID``). Each row carries its line
number (``__line__``) for reject reasons.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from mammokit.errors import InputFileError, MissingDependencyError

LINE = "__line__"


def _unique(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in header:
        if name in seen:
            seen[name] += 1
            out.append(f"{name}.{seen[name]}")
        else:
            seen[name] = 0
            out.append(name)
    return out


def read_table(path: str | os.PathLike, delimiter: str | None = None) -> list[dict[str, str]]:
    """Rows of a CSV (or ``.xlsx``) file as dicts of stripped strings, with ``__line__``.

    Raises:
        InputFileError: the file cannot be read or decoded.
    """
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return read_xlsx(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = max((";", ",", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise InputFileError(f"{path}: line 1: {exc}") from None
    header = _unique([h.strip() for h in header])
    rows = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            row = {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header) if h}
            row[LINE] = str(reader.line_num)
            rows.append(row)
    except csv.Error as exc:
        raise InputFileError(f"{path}: line {reader.line_num}: {exc}") from None
    return rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_xlsx(path: str | os.PathLike, sheet: str | None = None) -> list[dict[str, str]]:
    """Rows of the first (or the named) sheet of an ``.xlsx`` file as stripped strings, read
    with openpyxl in read-only mode (tolerant of the sheets pandas refuses, e.g. CMMD's)."""
    try:
        import openpyxl
    except ImportError:
        raise MissingDependencyError("reading .xlsx tables needs openpyxl (pip install openpyxl)") from None
    path = Path(path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises zipfile/XML/KeyError types
        raise InputFileError(f"{path}: not a readable .xlsx file ({type(exc).__name__}: {exc})") from None
    try:
        ws = book[sheet] if sheet else book.worksheets[0]
        rows_iter = ws.iter_rows(values_only=True)
        header = None
        rows = []
        for number, values in enumerate(rows_iter, start=1):
            cells = [_cell(v) for v in values]
            if header is None:
                if any(cells):
                    header = _unique(cells)
                continue
            if not any(cells):
                continue
            row = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(header) if h}
            row[LINE] = str(number)
            rows.append(row)
    finally:
        book.close()
    return rows


def require_columns(path: str | os.PathLike, rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    """Raise :class:`InputFileError` naming the file and the missing columns."""
    have = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in have]
    if rows and missing:
        raise InputFileError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(sorted(have - {LINE}))})")


def where(path: str | os.PathLike, row: dict[str, str]) -> str:
    """``"<file> line <n>"`` for reject reasons."""
    return f"{path} line {row.get(LINE, '?')}"
