"""Fuzz every reader at volume: >= 10,000 cases each, in child processes.

    python -m benchmarks.fuzz [--cases 10000] [--seed 0] [--readers png,dicom-scan,...]

Each reader's cases run in a child process (so a segfault or abort in a decoder is caught, not
fatal); the child reports one line per case. A child that dies records its current case as a
crash and a fresh child continues after it; a case silent for ``--hang-s`` seconds is a hang.
Cases and the contract are those of tests/helpers/fuzz.py (the quick run in make test uses
the same generators). Prints a table; writes benchmarks/results/fuzz-cpu.json after each reader.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fuzz-cpu.json"


def _child(name: str, start: int, stop: int, seed: int) -> None:
    import logging
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    from tests.helpers.fuzz import all_readers, run_case

    reader = all_readers()[name]
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as tmp:
        for index in range(start, stop):
            print(f"start {index}", flush=True)
            r = run_case(reader, index, seed, Path(tmp))
            detail = (r.note + " :: " + r.detail).replace("\n", " ")[:400] if r.failed else ""
            print(f"done {index} {r.status} {r.seconds:.4f} {detail}", flush=True)


def run_reader(name: str, cases: int, seed: int, hang_s: float) -> dict:
    counts: dict[str, int] = {}
    failures: list[dict] = []
    index, started = 0, time.perf_counter()
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    while index < cases:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fuzz", "--child", name, "--start", str(index), "--stop", str(cases),
             "--seed", str(seed)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        current = None
        last = [time.monotonic()]

        def watchdog(p=proc, last=last):
            while p.poll() is None:
                if time.monotonic() - last[0] > hang_s:
                    p.kill()
                    return
                time.sleep(1)

        threading.Thread(target=watchdog, daemon=True).start()
        for line in proc.stdout:
            last[0] = time.monotonic()
            parts = line.rstrip("\n").split(" ", 4)
            if parts[0] == "start":
                current = int(parts[1])
            elif parts[0] == "done":
                status = parts[2]
                counts[status] = counts.get(status, 0) + 1
                if status in ("crash", "hang"):
                    failures.append({"index": int(parts[1]), "status": status, "detail": parts[4] if len(parts) > 4 else ""})
                index = int(parts[1]) + 1
                current = None
        proc.wait()
        if current is not None:  # the child died (or was killed as hung) inside a case
            status = "hang" if time.monotonic() - last[0] > hang_s else "crash"
            counts[status] = counts.get(status, 0) + 1
            failures.append({"index": current, "status": status, "detail": f"child exit {proc.returncode}"})
            index = current + 1
        elif proc.returncode != 0 and index < cases:
            failures.append({"index": index, "status": "crash", "detail": f"child exit {proc.returncode} between cases"})
            counts["crash"] = counts.get("crash", 0) + 1
            index += 1
    seconds = time.perf_counter() - started
    return {"reader": name, "cases": sum(counts.values()), "crashes": sum(1 for f in failures),
            "counts": counts, "seconds": round(seconds, 1), "failures": failures[:20]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--readers", default=None, help="comma-separated reader names (default: all)")
    parser.add_argument("--hang-s", type=float, default=120.0)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.start, args.stop, args.seed)
        return 0
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    from tests.helpers.fuzz import all_readers

    names = args.readers.split(",") if args.readers else list(all_readers())
    doc = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs (shared)", "python": platform.python_version(),
           "seed": args.seed, "cases_per_reader": args.cases, "readers": []}
    print(f"{'reader':<20}{'cases':>8}{'crashes':>9}{'accepted':>10}{'refused':>9}{'time s':>9}")
    for name in names:
        res = run_reader(name, args.cases, args.seed, args.hang_s)
        doc["readers"].append(res)
        refused = res["counts"].get("error", 0) + res["counts"].get("reject", 0)
        print(f"{name:<20}{res['cases']:>8}{res['crashes']:>9}{res['counts'].get('accepted', 0):>10}{refused:>9}"
              f"{res['seconds']:>9.1f}", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 1 if any(r["crashes"] for r in doc["readers"]) else 0


if __name__ == "__main__":
    sys.exit(main())
