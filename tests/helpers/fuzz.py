"""Fuzz harness: case generators per reader, and the checker every case goes through.

A *reader* (:class:`Reader`) is one way mammokit takes a file in (``read_image`` on a PNG, the
``scan`` classification of a DICOM followed by its pixel read, ``read_manifest``...). For each
reader, ``generate(rng)`` makes one hostile file from a seeded :class:`random.Random` (valid seed
files mutated byte-wise, or structurally: header fields, chunk contents, CSV columns...), and
``read(path)`` feeds it to mammokit and checks what comes back.

The contract checked by :func:`run_case`:

* the reader returns (the file was accepted, and ``read`` checked the result: a 2-D ``uint16``
  image, a manifest that round-trips, a file that ``scan`` accepted and preprocess can read...),
* or it raises a :class:`~mammokit.errors.MammokitError` whose message names the file,
* or it returns a :class:`Reject` with a reason (``scan`` leaving a file out);

anything else is a crash: another exception type, an error that does not name the file, an
accepted file the next stage cannot read, or a case running over the time limit (a hang).
:func:`run_cases` runs many cases in this process; ``benchmarks/fuzz.py`` runs them in child
processes so that a real crash of the interpreter (a segfault in a decoder) is caught too.

Generators live in :mod:`tests.helpers.fuzz_images` (PNG, DICOM) and
:mod:`tests.helpers.fuzz_formats` (CSV tables, exam-list pickles and JSON, checkpoints, configs).
"""

from __future__ import annotations

import contextlib
import random
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mammokit.errors import MammokitError

# Values that break parsers: lengths and counts at type boundaries, sign bits, line breaks.
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x85, 0xFF, 0x0A, 0x0D, 0x22, 0x2C, 0x5C)
INTERESTING_INTS = (0, 1, 2, 7, 8, 15, 16, 255, 256, 4095, 32767, 32768, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1)


class FuzzFailure(AssertionError):
    """An accepted input that broke a property (e.g. accepted by scan, unreadable by preprocess)."""


@dataclass(frozen=True)
class Reject:
    """A file left out with a reason (what ``scan`` does with an unsuitable file)."""

    reason: str


@dataclass
class Reader:
    """One input path of mammokit under test.

    ``generate(rng) -> (bytes, note)`` makes a case (``note`` says how, for reports);
    ``read(path)`` returns None or a :class:`Reject`, or raises.
    """

    name: str
    suffix: str
    generate: Callable[[random.Random], tuple[bytes, str]]
    read: Callable[[Path], Reject | None]
    time_limit_s: float = 20.0
    # False where no generated case can be a complete valid file (the authors' weight files
    # need a full network: the seeds are partial state dicts that reach the key checks).
    can_accept: bool = True


@dataclass
class Result:
    reader: str
    index: int
    status: str  # "accepted" | "error" | "reject" | "crash" | "hang"
    note: str = ""
    detail: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("crash", "hang")


@dataclass
class Summary:
    reader: str
    cases: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: Result) -> None:
        self.cases += 1
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        self.seconds += result.seconds
        if result.failed:
            self.failures.append(result)

    @property
    def crashes(self) -> int:
        return len(self.failures)


# ----------------------------------------------------------------------------- mutation


def mutate_bytes(rng: random.Random, data: bytes, n_ops: int | None = None, start: int = 0) -> bytes:
    """Apply 1-8 random edits to ``data`` at or after offset ``start``: bit flips, interesting
    bytes, random runs, insertions, deletions, duplicated ranges, a truncation."""
    buf = bytearray(data)
    for _ in range(n_ops if n_ops is not None else rng.randint(1, 8)):
        if len(buf) <= start:
            buf.extend(rng.randbytes(rng.randint(1, 16)))
            continue
        pos = rng.randrange(start, len(buf))
        op = rng.randrange(8)
        if op == 0:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos] = rng.choice(INTERESTING_BYTES)
        elif op == 2:
            n = rng.randint(1, 32)
            buf[pos:pos + n] = rng.randbytes(n)
        elif op == 3:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 64))
        elif op == 4:
            del buf[pos:pos + rng.randint(1, 64)]
        elif op == 5:
            n = rng.randint(1, 128)
            buf[pos:pos] = buf[pos:pos + n]
        elif op == 6:
            del buf[pos:]
        else:
            width = rng.choice((2, 4))
            value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
            buf[pos:pos + width] = value.to_bytes(width, rng.choice(("little", "big")))
    return bytes(buf)


# ----------------------------------------------------------------------------- checking


class CaseTimeout(BaseException):
    """Raised by the alarm when a case runs over its time limit (BaseException: so that no
    ``except Exception`` in the code under test can swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread, POSIX). A hang inside C code that
    never returns to Python is caught by the child-process watchdog of benchmarks/fuzz.py."""

    def _alarm(signum, frame):  # noqa: ARG001 - signal API
        raise CaseTimeout()

    # An outer timer (pytest-timeout's) is paused and given back its remaining time afterwards.
    outer_remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_remaining > 0:
            signal.setitimer(signal.ITIMER_REAL, max(1e-3, outer_remaining - (time.monotonic() - started)))


def _short_traceback(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
    return f"{type(exc).__name__}: {str(exc)[:300]} at {where}"


def check_file(reader: Reader, path: Path) -> tuple[str, str]:
    """``(status, detail)`` of feeding ``path`` to ``reader`` (see the module docstring)."""
    try:
        with time_limit(reader.time_limit_s):
            outcome = reader.read(path)
    except CaseTimeout:
        return "hang", f"over {reader.time_limit_s} s"
    except FuzzFailure as exc:
        return "crash", f"property broken: {exc}"
    except MammokitError as exc:
        message = str(exc)
        if path.name not in message:
            return "crash", f"{type(exc).__name__} does not name the file: {message[:300]}"
        if "\n" in message or "\x85" in message or "\u2028" in message:
            return "crash", f"{type(exc).__name__} message is not one line: {message[:300]!r}"
        return "error", message[:300]
    except RecursionError as exc:
        return "crash", _short_traceback(exc)
    except Exception as exc:  # noqa: BLE001 - the point: anything else is a finding
        return "crash", _short_traceback(exc)
    if isinstance(outcome, Reject):
        if not outcome.reason:
            return "crash", "reject without a reason"
        return "reject", outcome.reason[:300]
    return "accepted", ""


def run_case(reader: Reader, index: int, seed: int, folder: Path) -> Result:
    """Generate case ``index`` of ``reader`` (from ``seed``) into ``folder`` and check it."""
    rng = random.Random(f"{reader.name}:{seed}:{index}")
    data, note = reader.generate(rng)
    path = folder / f"case{index}{reader.suffix}"
    path.write_bytes(data)
    start = time.perf_counter()
    status, detail = check_file(reader, path)
    seconds = time.perf_counter() - start
    with contextlib.suppress(OSError):
        path.unlink()
    return Result(reader.name, index, status, note, detail, seconds)


def run_cases(reader: Reader, n: int, seed: int = 0, start: int = 0) -> Summary:
    """Run cases ``start .. start + n - 1`` of ``reader`` in this process."""
    summary = Summary(reader.name)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{reader.name}-") as tmp:
        for index in range(start, start + n):
            summary.add(run_case(reader, index, seed, Path(tmp)))
    return summary


def all_readers() -> dict[str, Reader]:
    """Every reader under test, by name."""
    from tests.helpers import fuzz_formats, fuzz_images

    readers = fuzz_images.readers() + fuzz_formats.readers()
    return {r.name: r for r in readers}
