"""Splitting one job over many processes: ``--shard i/N`` (SLURM arrays) and torchrun ranks.

A job (``heatmaps``, ``predict``, ``run``) is split by exam. Each exam goes to one shard by a
rule that depends only on the exam ids of the job (:func:`assign`): the exams are sorted by a
hash of their id and dealt round robin, so shards differ by at most one exam, the assignment
does not depend on the order of the exam list, and equal ids share a shard.

Each shard computes its exams and writes its *part* atomically (:func:`write_part`): a JSON file
that names the job (a fingerprint of its settings and exam list, :func:`job_key`), the shard,
and its results. The shard that finds every part of the job present after writing its own merges
them into exactly the files a single process writes (:func:`read_parts`); with torchrun or a SLURM
array that is the last one to finish, whichever it is, so no process group or barrier is needed
(array tasks need not even run at the same time). A re-run of the job re-uses every part whose
fingerprint matches and recomputes only the missing ones: after a killed rank or array task,
re-running that one shard (or the whole job) completes it and merges.

Under torchrun (``WORLD_SIZE`` > 1 in the environment) the shard is ``RANK/WORLD_SIZE``
(:func:`resolve_shard`); ``LOCAL_RANK`` picks the GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammokit.errors import UsageError
from mammokit.utils.io import write_json_atomic

__all__ = [
    "Shard",
    "parse_shard",
    "resolve_shard",
    "local_rank",
    "assign",
    "shard_positions",
    "job_key",
    "file_stamp",
    "part_path",
    "write_part",
    "read_part",
    "read_parts",
]

PART_FORMAT = "mammokit-shard-part"
PART_VERSION = 1


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"shard must be i/N with 0 <= i < N, got {self.index}/{self.count}")

    @property
    def label(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | Shard | None) -> Shard | None:
    """``"2/8"`` -> ``Shard(2, 8)`` (0-based: with ``sbatch --array=0-7`` pass
    ``--shard $SLURM_ARRAY_TASK_ID/8``); None stays None."""
    if text is None or isinstance(text, Shard):
        return text
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise UsageError(f"--shard must be i/N (e.g. 0/4), got {text!r}") from None
    return Shard(i, n)


def resolve_shard(shard: str | Shard | None = None, environ: dict | None = None) -> Shard | None:
    """The shard of this process: ``shard`` when given, else ``RANK/WORLD_SIZE`` under torchrun,
    else None (a single process doing the whole job). The two cannot be combined (torchrun
    ranks of a ``--shard`` job would split the shard again)."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    given = parse_shard(shard)
    if world > 1:
        if given is not None:
            raise UsageError("--shard cannot be combined with torchrun (the ranks already split the job)")
        return Shard(int(env["RANK"]), world)
    return given


def local_rank(environ: dict | None = None) -> int:
    """``LOCAL_RANK`` under torchrun (which GPU of the machine), else 0."""
    env = os.environ if environ is None else environ
    return int(env.get("LOCAL_RANK", "0") or 0)


def _id_hash(exam_id: str) -> str:
    return hashlib.sha256(str(exam_id).encode("utf-8")).hexdigest()


def assign(exam_ids: Sequence[str], count: int) -> list[int]:
    """The shard of each exam: exams sorted by (sha256 of id, id), distinct ids dealt round robin
    over ``count`` shards. Exams with the same id share a shard."""
    distinct = sorted(set(map(str, exam_ids)), key=lambda e: (_id_hash(e), e))
    shard_of = {e: k % count for k, e in enumerate(distinct)}
    return [shard_of[str(e)] for e in exam_ids]


def shard_positions(exam_ids: Sequence[str], shard: Shard) -> list[int]:
    """Positions (in the job's exam order) of the exams of ``shard``."""
    return [i for i, s in enumerate(assign(exam_ids, shard.count)) if s == shard.index]


def file_stamp(path: str | os.PathLike) -> list:
    """``[resolved path, size, mtime_ns]`` of an input file, for fingerprints (a replaced file
    makes another job)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return [str(p), None, None]
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def job_key(stage: str, settings: dict[str, Any], exams: Sequence[dict]) -> str:
    """Fingerprint of a job: its stage, the settings that change results, and its exam records."""
    doc = json.dumps({"stage": stage, "settings": settings, "exams": list(exams)}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def part_path(folder: str | os.PathLike, stem: str, shard: Shard) -> Path:
    """``FOLDER/.shards/<stem>.shard-i-of-N.json``."""
    return Path(folder) / ".shards" / f"{stem}.{shard.label}.json"


def write_part(path: Path, stage: str, key: str, shard: Shard, data: dict[str, Any]) -> None:
    """Write one shard's results atomically (``data`` must be JSON-ready)."""
    write_json_atomic(path, {"format": PART_FORMAT, "version": PART_VERSION, "stage": stage, "job": key,
                             "shard": [shard.index, shard.count], "data": data})


def read_part(path: Path, stage: str, key: str, shard: Shard) -> dict[str, Any] | None:
    """The ``data`` of a finished part of this job, or None (absent, unreadable, another job)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(doc, dict) and doc.get("format") == PART_FORMAT and doc.get("version") == PART_VERSION
          and doc.get("stage") == stage and doc.get("job") == key and doc.get("shard") == [shard.index, shard.count])
    return doc["data"] if ok else None


def read_parts(folder: str | os.PathLike, stem: str, stage: str, key: str, count: int) -> tuple[list[dict], list[int]]:
    """``(parts, missing)``: the data of every finished part of the job in shard order (complete
    when ``missing`` is empty) and the shard indices not finished yet."""
    parts, missing = [], []
    for i in range(count):
        shard = Shard(i, count)
        data = read_part(part_path(folder, stem, shard), stage, key, shard)
        if data is None:
            missing.append(i)
        else:
            parts.append(data)
    return parts, missing
