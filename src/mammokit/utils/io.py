"""Atomic output: every file mammokit writes appears whole or not at all.

Each writer writes to a temporary file in the destination's folder and ``os.replace``-s it into
place, so a job killed mid-write never leaves a truncated file that a resumed job would trust.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    ``suffix`` defaults to the destination's suffix, so libraries that pick a format from the file
    name (OpenCV, matplotlib, h5py) write the right one.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the destination's suffix (".png", ".h5") as its last suffix.
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.stem}{TEMP_MARKER}", suffix=suffix if suffix is not None else dest.suffix, dir=dest.parent
    )
    os.close(fd)
    # mkstemp creates files with mode 0600; give them the usual permissions (0666 & ~umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


TEMP_MARKER = ".tmp-"


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files :func:`atomic_path` leaves behind when a process is killed
    mid-write (``.<stem>.tmp-XXXX<suffix>`` directly in ``folder``). Call it when a stage
    starts, before it writes anything there; never while another writer uses the folder.
    Returns how many were removed."""
    folder = Path(folder)
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if path.name.startswith(".") and TEMP_MARKER in path.name and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def write_csv_atomic(
    path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]
) -> None:
    """Write dict rows as CSV (header ``fieldnames``; extra keys are an error)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(fieldnames))
            writer.writeheader()
            for row in rows:
                writer.writerow(row)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the types that reach JSON output in practice.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
