"""The server's durable state: a SQLite job store and the received files, in ``--state DIR``.

Layout::

    DIR/mammokit.sqlite                 studies, instances, predictions, exports (WAL, synchronous=FULL)
    DIR/incoming/<StudyUID>/<SOPUID>.dcm  every received instance, as received (never deleted)
    DIR/results/<StudyUID>/v<N>/        SR, SEGs, PNGs and result.json of version N

Durability: an instance file is written to a temporary name, fsync-ed, renamed and its folder
fsync-ed before its row is committed; only then does the caller answer the C-STORE with Success.
Instances are idempotent by SOPInstanceUID: the same instance again is acknowledged and ignored.

Study life cycle (``status``): ``received`` (instances arriving) -> ``queued`` (complete: four views,
or ``--study-timeout`` seconds since its last instance) -> ``running`` -> ``done`` | ``failed``
(with ``reason``). A new usable instance for a done study re-opens it (``received``) for a new
SR version. At start-up (:meth:`Store.recover`), ``running`` studies go back to ``queued`` (their
results were not committed) and files in ``incoming/`` without a row (a crash between rename and
commit) are registered again, so nothing received is lost; a prediction is committed in the same
transaction as ``done``, so a study is never predicted twice for the same instances.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammokit.utils.log import get_logger

log = get_logger(__name__)

__all__ = ["Store", "InstanceRecord", "STATUSES"]

STATUSES = ("received", "queued", "running", "done", "failed")
DB_FILE = "mammokit.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT,
    patient_id TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    last_instance REAL NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    export_status TEXT,
    export_reason TEXT,
    export_attempts INTEGER NOT NULL DEFAULT 0,
    export_next REAL,
    reopen INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    sop_class TEXT,
    modality TEXT,
    view TEXT,
    usable INTEGER NOT NULL,
    reason TEXT,
    calling_ae TEXT,
    content TEXT,
    mirrored INTEGER NOT NULL DEFAULT 0,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS predictions (
    study_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    instances TEXT NOT NULL,
    seconds REAL,
    finished REAL NOT NULL,
    PRIMARY KEY (study_uid, version)
);
"""


@dataclass(frozen=True)
class InstanceRecord:
    """One received instance: where it is and what the intake made of it."""

    sop_uid: str
    study_uid: str
    path: str
    sop_class: str | None
    modality: str | None
    view: str | None
    usable: bool
    reason: str | None
    received: float
    content: str = ""
    mirrored: bool = False


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it survives a crash or power loss once this returns:
    temporary file, fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class Store:
    """Thread-safe access to the state folder (one connection, serialised by a lock: the
    server's writers are a handful of threads, and SQLite serialises writers anyway)."""

    def __init__(self, state: str | os.PathLike) -> None:
        self.root = Path(state)
        self.incoming = self.root / "incoming"
        self.results = self.root / "results"
        for d in (self.root, self.incoming, self.results):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / DB_FILE, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ instances
    def instance_path(self, study_uid: str, sop_uid: str) -> Path:
        return self.incoming / _safe(study_uid) / f"{_safe(sop_uid)}.dcm"

    def has_instance(self, sop_uid: str) -> bool:
        return bool(self._query("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)))

    def add_instance(self, data: bytes | None, info: dict[str, Any], path: Path | None = None) -> bool:
        """Store one instance durably and register it; ``False`` when its SOPInstanceUID is
        already known (nothing written). ``info``: study_uid, sop_uid, sop_class, modality,
        view, usable, reason, calling_ae, patient_id. ``data=None`` registers a file already at
        ``path`` (recovery)."""
        study, sop = info["study_uid"], info["sop_uid"]
        if self.has_instance(sop):
            return False
        path = path or self.instance_path(study, sop)
        if data is not None:
            write_durably(path, data)
        now = time.time()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM instances WHERE sop_uid = ?", (sop,)).fetchone():
                return False  # a concurrent association delivered it first
            db.execute(
                "INSERT INTO instances (sop_uid, study_uid, path, sop_class, modality, view, usable, reason, calling_ae,"
                " content, mirrored, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sop, study, str(path), info.get("sop_class"), info.get("modality"), info.get("view"),
                 int(bool(info.get("usable"))), info.get("reason"), info.get("calling_ae"), info.get("content") or "",
                 int(bool(info.get("mirrored"))), now),
            )
            row = db.execute("SELECT status FROM studies WHERE study_uid = ?", (study,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO studies (study_uid, status, patient_id, created, updated, last_instance) "
                    "VALUES (?, 'received', ?, ?, ?, ?)", (study, info.get("patient_id"), now, now, now))
            elif row["status"] == "running":
                if info.get("usable"):
                    # The running prediction did not see it: picked up again once it is committed.
                    db.execute("UPDATE studies SET reopen = 1, last_instance = ? WHERE study_uid = ?", (now, study))
            elif info.get("usable"):
                # A usable late instance re-opens a finished study for a new SR version.
                status = "queued" if row["status"] == "queued" else "received"
                db.execute("UPDATE studies SET status = ?, reason = NULL, updated = ?, last_instance = ? "
                           "WHERE study_uid = ?", (status, now, now, study))
            elif row["status"] == "received":
                db.execute("UPDATE studies SET last_instance = ? WHERE study_uid = ?", (now, study))
        return True

    def instances(self, study_uid: str) -> list[InstanceRecord]:
        rows = self._query("SELECT * FROM instances WHERE study_uid = ? ORDER BY received, sop_uid", (study_uid,))
        return [InstanceRecord(r["sop_uid"], r["study_uid"], r["path"], r["sop_class"], r["modality"], r["view"],
                               bool(r["usable"]), r["reason"], r["received"], r["content"] or "", bool(r["mirrored"]))
                for r in rows]

    def known_paths(self) -> set[str]:
        return {r["path"] for r in self._query("SELECT path FROM instances")}

    # ------------------------------------------------------------------ studies
    def study(self, study_uid: str) -> dict | None:
        rows = self._query("SELECT * FROM studies WHERE study_uid = ?", (study_uid,))
        return _study_dict(rows[0]) if rows else None

    def studies(self) -> list[dict]:
        return [_study_dict(r) for r in self._query("SELECT * FROM studies ORDER BY created DESC, study_uid")]

    def set_status(self, study_uid: str, status: str, reason: str | None = None) -> None:
        """Set a study's status (``failed`` with its reason); a study re-opened while it ran goes
        back to ``received`` instead, its new instances may make it usable."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._tx() as db:
            row = db.execute("SELECT reopen FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
            if row is not None and row["reopen"] and status == "failed":
                status, reason = "received", None
            db.execute("UPDATE studies SET status = ?, reason = ?, reopen = 0, updated = ? WHERE study_uid = ?",
                       (status, reason, time.time(), study_uid))

    def due_studies(self, timeout: float, complete) -> list[str]:
        """Move ``received`` studies that are complete (``complete(study_uid)``) or quiet for
        ``timeout`` seconds to ``queued``; returns the uids moved."""
        now = time.time()
        moved = []
        for r in self._query("SELECT study_uid, last_instance FROM studies WHERE status = 'received'"):
            if complete(r["study_uid"]) or now - r["last_instance"] >= timeout:
                moved.append(r["study_uid"])
        if moved:
            with self._tx() as db:
                for uid in moved:
                    db.execute("UPDATE studies SET status = 'queued', updated = ? WHERE study_uid = ? AND "
                               "status = 'received'", (now, uid))
        return moved

    def claim(self, limit: int) -> list[str]:
        """Up to ``limit`` queued studies, oldest first, now ``running``."""
        with self._tx() as db:
            rows = db.execute("SELECT study_uid FROM studies WHERE status = 'queued' ORDER BY updated, study_uid "
                              "LIMIT ?", (limit,)).fetchall()
            uids = [r["study_uid"] for r in rows]
            for uid in uids:
                db.execute("UPDATE studies SET status = 'running', reason = NULL, updated = ? WHERE study_uid = ?",
                           (time.time(), uid))
        return uids

    def finish(self, study_uid: str, version: int, result: dict, instances: list[str], seconds: float,
               export: bool) -> bool:
        """Commit a prediction: the ``predictions`` row, ``done`` and the result, in one
        transaction. Returns ``False`` (nothing changed) when this version was already committed.
        A study re-opened while it ran goes back to ``received`` instead of ``done``."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM predictions WHERE study_uid = ? AND version = ?",
                          (study_uid, version)).fetchone():
                return False
            row = db.execute("SELECT reopen FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
            now = time.time()
            db.execute("INSERT INTO predictions (study_uid, version, instances, seconds, finished) VALUES (?, ?, ?, ?, ?)",
                       (study_uid, version, json.dumps(instances), seconds, now))
            status = "received" if row is not None and row["reopen"] else "done"
            db.execute(
                "UPDATE studies SET status = ?, reason = NULL, reopen = 0, version = ?, result = ?, updated = ?, "
                "export_status = ?, export_reason = NULL, export_attempts = 0, export_next = ? WHERE study_uid = ?",
                (status, version, json.dumps(result), now, "pending" if export else None, now if export else None,
                 study_uid))
        return True

    def predictions(self, study_uid: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM predictions", ()
        if study_uid is not None:
            sql, args = sql + " WHERE study_uid = ?", (study_uid,)
        return [dict(r) | {"instances": json.loads(r["instances"])} for r in self._query(sql + " ORDER BY finished", args)]

    # ------------------------------------------------------------------ export
    def due_exports(self) -> list[dict]:
        now = time.time()
        return [_study_dict(r) for r in self._query(
            "SELECT * FROM studies WHERE export_status = 'pending' AND export_next <= ? ORDER BY export_next", (now,))]

    def set_export(self, study_uid: str, status: str, reason: str | None = None, attempts: int | None = None,
                   next_at: float | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE studies SET export_status = ?, export_reason = ?, export_attempts = "
                       "COALESCE(?, export_attempts), export_next = ? WHERE study_uid = ?",
                       (status, reason, attempts, next_at, study_uid))

    # ------------------------------------------------------------------ recovery
    def recover(self) -> dict[str, int]:
        """After a restart: running -> queued; returns counts. (Orphan files are re-registered
        by the caller, which knows how to read them: :meth:`orphans`.)"""
        with self._tx() as db:
            n = db.execute("UPDATE studies SET status = 'queued', updated = ? WHERE status = 'running'",
                           (time.time(),)).rowcount
        return {"requeued": n}

    def orphans(self) -> list[Path]:
        """Instance files on disk without a row (a crash between the rename and the commit)."""
        known = self.known_paths()
        return [p for p in sorted(self.incoming.glob("*/*.dcm")) if str(p) not in known]

    def result_dir(self, study_uid: str, version: int) -> Path:
        return self.results / _safe(study_uid) / f"v{version}"


def _safe(uid: str) -> str:
    """A UID as a file name (UIDs are digits and dots; anything else is replaced)."""
    text = "".join(c if c.isdigit() or c == "." else "_" for c in str(uid))[:64]
    if not text.strip("._"):
        raise ValueError(f"not a UID: {uid!r}")
    return text


def _study_dict(r: sqlite3.Row) -> dict:
    d = dict(r)
    d["result"] = json.loads(d["result"]) if d.get("result") else None
    return d
