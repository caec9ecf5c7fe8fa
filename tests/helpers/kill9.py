"""Kill -9 harness: run a stage as ``python -m mammokit ...``, SIGKILL it while it works, re-run
it to completion, and compare the final outputs byte for byte with an uninterrupted run.

"While it works" means after the stage has produced its k-th output file (watched in the
output folder), never during start-up: kill point k fires as soon as at least k files that
match ``progress_glob`` exist. Each kill point is a separate interrupted run into a fresh
folder (kill at point k, then re-run without kill to the end).

No tests here; imported by tests/reliability/test_kill9.py and benchmarks/kill9.py.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Files whose content legitimately differs between runs (timings, temporary files).
IGNORED_NAMES = ("run_info.json", "timing.json")


@dataclass
class KillResult:
    point: int
    killed: bool
    files_at_kill: int
    identical: bool
    differences: list[str]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1",
                MAMMOKIT_PROGRESS="0")


def run_stage(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m mammokit *args`` to completion; raise if it fails."""
    proc = subprocess.run([sys.executable, "-m", "mammokit", *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"mammokit {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def run_and_kill(args: list[str], watch: Path, progress_glob: str, point: int, timeout: float = 600) -> tuple[bool, int]:
    """Start the stage, SIGKILL it once ``point`` files matching ``progress_glob`` exist under
    ``watch``. Returns ``(killed, files seen)``; ``killed`` is False when it finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "mammokit", *args], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            n = len(list(watch.glob(progress_glob))) if watch.exists() else 0
            if n >= point:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True, n
            time.sleep(0.005)
        return False, len(list(watch.glob(progress_glob))) if watch.exists() else 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def tree_digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of the outputs (hidden temporary files are reported as such,
    so a leftover partial file counts as a difference)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in IGNORED_NAMES:
            out[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def compare(reference: Path, candidate: Path, rewrite=None) -> list[str]:
    """Differences between two output folders (``rewrite(text) -> text`` maps folder-specific
    content, e.g. absolute paths, before hashing: applied to both sides)."""
    a, b = tree_digest(reference), tree_digest(candidate)
    diffs = [f"only in reference: {k}" for k in sorted(set(a) - set(b))]
    diffs += [f"only after kill: {k}" for k in sorted(set(b) - set(a))]
    for key in sorted(set(a) & set(b)):
        if a[key] != b[key]:
            if rewrite is not None:
                ta, tb = rewrite((reference / key).read_bytes(), reference), rewrite((candidate / key).read_bytes(), candidate)
                if ta == tb:
                    continue
            diffs.append(f"differs: {key}")
    return diffs


def kill_matrix(make_args, reference: Path, progress_glob: str, points: list[int], work: Path,
                rewrite=None, prepare=None) -> list[KillResult]:
    """For each kill point: fresh output folder, run + SIGKILL at the point, re-run to the end,
    compare with ``reference`` (an uninterrupted run's output). ``make_args(out) -> argv``;
    ``prepare(out)`` (optional) fills the folder first (e.g. a copy of a preprocessed work folder
    for a stage that writes into it)."""
    results = []
    for point in points:
        out = work / f"kill{point}"
        if prepare is not None:
            prepare(out)
        args = make_args(out)
        killed, seen = run_and_kill(args, out, progress_glob, point)
        run_stage(args)
        diffs = compare(reference, out, rewrite)
        results.append(KillResult(point, killed, seen, not diffs, diffs))
    return results
