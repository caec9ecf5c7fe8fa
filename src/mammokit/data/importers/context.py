"""The importers' shared machinery: a parallel, resumable header reader and file checks.

:class:`ImportContext` runs a job (``header``: :func:`read_dicom_info`; ``roi``: a mask-or-crop
test...) over many files with ``workers`` processes (``concurrent.futures``; one worker runs in
the calling process) and keeps every result in a resume cache, ``DIR/.import_cache.jsonl``: one
JSON line per file, keyed by job, path, size and modification time, appended as each result
arrives (a line is one ``write``; a line cut off by a kill is ignored on reading). A re-run reads
only files that are new or changed.

A job never raises: a file that cannot be read becomes ``{"error": reason}``, and
:meth:`ImportContext.check_header` turns a header into a :class:`Reject` with one of the report's
reasons (unreadable, no pixel data, FOR PROCESSING, special view, ...).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from mammokit.data.dicom import DicomInfo
from mammokit.data.scan import Reject
from mammokit.errors import MammokitError
from mammokit.utils.log import get_logger, progress

log = get_logger(__name__)

CACHE_NAME = ".import_cache.jsonl"
CHUNK = 64  # files per task sent to a worker process: amortises the inter-process round trip

# Reject codes of the import report (``code`` of :class:`Reject`).
UNREADABLE = "unreadable"
NO_PIXELS = "no pixel data"
FOR_PROCESSING = "FOR PROCESSING"
SPECIAL_VIEW = "special view"
DUPLICATE = "duplicate"
MISSING_FILE = "missing file"
UNKNOWN_VALUE = "unknown value"
MASK_SIZE = "mask size"
OTHER = "not a screening image"


def _header_job(path: str) -> dict:
    from mammokit.data.dicom import read_dicom_info

    return dataclasses.asdict(read_dicom_info(path))


JOBS: dict[str, Callable[[str], dict]] = {"header": _header_job}
"""Job name -> function(path) -> JSON-able dict. Format modules add theirs (module level, so
worker processes can find them by name)."""


def add_job(name: str, fn: Callable[[str], dict]) -> None:
    JOBS[name] = fn


def _run_one(job: str, path: str) -> dict:
    try:
        return JOBS[job](path)
    except (MammokitError, OSError, ValueError) as exc:
        # A bad file is a result (with its reason), not a crash of the import.
        text = str(exc)
        return {"error": text.removeprefix(f"{path}: ")}


def _run_chunk(job: str, paths: list[str], module: str | None) -> list[dict]:
    if module and job not in JOBS:  # spawned worker: import the module that defines the job
        import importlib

        importlib.import_module(module)
    return [_run_one(job, p) for p in paths]


def _file_key(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


@dataclass
class ImportContext:
    """Settings of one import and its resumable parallel file reader.

    Attributes:
        out: output folder (holds the cache).
        workers: processes reading files (1 = in this process).
        seed: seed of every random choice (the split).
        strict: an unreadable file is fatal instead of a reject.
        resume: use the cache of an earlier run.
    """

    out: Path
    workers: int = 1
    seed: int = 0
    strict: bool = False
    resume: bool = True
    stats: dict[str, int] = field(default_factory=lambda: {"cached": 0, "read": 0})
    _cache: dict[tuple[str, str], tuple[str, dict]] | None = None

    @property
    def cache_path(self) -> Path:
        return self.out / CACHE_NAME

    def _load_cache(self) -> dict[tuple[str, str], tuple[str, dict]]:
        if self._cache is None:
            self._cache = {}
            if self.resume and self.cache_path.exists():
                with open(self.cache_path, encoding="utf-8") as fh:
                    for line in fh:
                        try:
                            rec = json.loads(line)
                            self._cache[(rec["job"], rec["path"])] = (rec["key"], rec["result"])
                        except (ValueError, KeyError, TypeError):
                            continue  # a line cut off by a kill: that file is read again
        return self._cache

    def run_job(self, job: str, paths: Iterable[str | os.PathLike], desc: str | None = None) -> dict[str, dict]:
        """``{path: result}`` of ``JOBS[job]`` over ``paths`` (each path as given, as str);
        cached results of unchanged files are reused. A missing file gives
        ``{"error": "file not found"}``."""
        paths = list(dict.fromkeys(str(p) for p in paths))
        cache = self._load_cache()
        results: dict[str, dict] = {}
        todo: list[tuple[str, str]] = []
        hits = 0
        for p in paths:
            key = _file_key(p)
            if key is None:
                results[p] = {"error": "file not found"}
                continue
            hit = cache.get((job, p))
            if hit is not None and hit[0] == key:
                results[p] = hit[1]
                hits += 1
            else:
                todo.append((p, key))
        self.stats["cached"] += hits
        self.stats["read"] += len(todo)
        if todo:
            self.out.mkdir(parents=True, exist_ok=True)
            keys = dict(todo)
            bar = progress(total=len(todo), desc=desc or job, unit="file")
            with open(self.cache_path, "a", encoding="utf-8") as fh:
                for path, result in self._compute(job, [p for p, _ in todo]):
                    results[path] = result
                    cache[(job, path)] = (keys[path], result)
                    # One write per line: a kill leaves at most one partial line, which is skipped.
                    fh.write(json.dumps({"job": job, "path": path, "key": keys[path], "result": result}) + "\n")
                    bar.update(1)
                fh.flush()
            bar.close()
        return {p: results[p] for p in paths}

    def _compute(self, job: str, paths: list[str]):
        if self.workers <= 1 or len(paths) < 2 * CHUNK:
            for p in paths:
                yield p, _run_one(job, p)
            return
        module = getattr(JOBS[job], "__module__", None)
        chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
        # spawn: safe whatever threads the parent runs (torch, BLAS); workers import only pydicom.
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn")) as pool:
            for chunk, out in zip(chunks, pool.map(_run_chunk, [job] * len(chunks), chunks, [module] * len(chunks))):
                yield from zip(chunk, out)

    def read_headers(self, paths: Iterable[str | os.PathLike]) -> dict[str, DicomInfo | Reject]:
        """``{path: DicomInfo or Reject}``: headers only, in parallel, resumable."""
        out: dict[str, DicomInfo | Reject] = {}
        for path, result in self.run_job("header", paths, desc="headers").items():
            if "error" in result:
                code = MISSING_FILE if result["error"] == "file not found" else UNREADABLE
                out[path] = Reject(path, code, result["error"])
            else:
                out[path] = DicomInfo(**result)
        return out

    @staticmethod
    def check_header(info: DicomInfo, need_laterality: bool = True, need_view: bool = True) -> Reject | None:
        """The reject for a header that is not a usable screening image, else None. Laterality
        and view are only required when the importer takes them from the header."""
        path = info.path

        def rej(code: str, reason: str) -> Reject:
            return Reject(path, code, reason)

        if info.modality and info.modality.upper() not in ("MG", "OT"):
            return rej(OTHER, f"modality {info.modality}, not MG")
        if info.presentation_intent and info.presentation_intent.upper() == "FOR PROCESSING":
            return rej(FOR_PROCESSING, "FOR PROCESSING image (raw detector data); the FOR PRESENTATION image is used")
        if not info.has_pixel_data:
            return rej(NO_PIXELS, "no pixel data")
        if info.frames > 1:
            return rej(OTHER, f"{info.frames} frames (tomosynthesis?); expected one 2-D image")
        if info.view_modifiers:
            return rej(SPECIAL_VIEW, f"view modifier {', '.join(info.view_modifiers)} (spot compression / magnification)")
        if need_laterality and info.laterality is None:
            return rej(UNKNOWN_VALUE, "missing laterality (ImageLaterality / Laterality)")
        if need_view and info.view is None:
            return rej(UNKNOWN_VALUE, "missing view (ViewPosition / ViewCodeSequence / PatientOrientation)")
        if need_view and info.view not in ("CC", "MLO"):
            return rej(SPECIAL_VIEW, f"view {info.view} is not CC or MLO")
        return None
