"""Header import speed: ``run_import`` over a few thousand generated DICOM files.

The data set is written in CMMD's layout (``CMMD/<ID1>/<date>-<n>/1.000000-<m>/1-{1..4}.dcm`` +
``CMMD_clinicaldata_revision.xlsx``), whose import reads DICOM headers only (CBIS-DDSM also
reads its lesion files' pixels, to tell masks from crops). Each file is a small MG image (the
header is what is timed; pixel data is skipped, not read). Writing the files is not timed.

Timed, each into a fresh output folder: ``run_import`` (``mammokit import``) with 1 and with
``--workers`` processes, then a re-run into the last folder (everything from the resume cache).
Files/s = files / wall seconds of the whole call (tables, headers, split, writing outputs).

    python -m benchmarks.import_speed                    # 4000 files, workers 1 and 2
    python -m benchmarks.import_speed --files 8000 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, cpu_model, git_commit

VIEWS = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]


def make_dataset(root: Path, n_files: int, size: int = 32) -> int:
    """Write ``n_files`` (rounded up to whole patients of 4 views) and the clinical sheet."""
    import openpyxl

    from mammokit.data.dicom_write import write_dicom

    n_patients = (n_files + 3) // 4
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"])
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (size, size), dtype=np.uint16)
    for p in range(n_patients):
        patient = f"D{1 + p % 2}-{p:04d}"
        folder = root / "CMMD" / patient / f"07-01-2010-{10000 + p}" / f"1.000000-{20000 + p}"
        for k, (side, view) in enumerate(VIEWS, start=1):
            write_dicom(folder / f"1-{k}.dcm", pixels, laterality=side, view=view, patient_id=patient,
                        study_uid=f"1.3.6.1.4.1.9590.100.1.2.{p}", bits_stored=8)
        if p % 3 == 0:
            ws.append([patient, "L" if p % 2 else "R", 50, 2, "mass", "Malignant" if p % 6 == 0 else "Benign", None])
    book.save(root / "CMMD_clinicaldata_revision.xlsx")
    return 4 * n_patients


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=4000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--keep", help="write the data set here and keep it")
    ap.add_argument("-o", "--output", default=str(RESULTS / "import-speed-cpu.json"))
    args = ap.parse_args(argv)

    from mammokit.data.importers import run_import

    tmp = Path(args.keep or tempfile.mkdtemp(prefix="import-speed-"))
    load_start = list(os.getloadavg())
    t0 = time.perf_counter()
    n = make_dataset(tmp / "root", args.files)
    write_s = time.perf_counter() - t0
    runs = []
    out = None
    for workers in args.workers:
        out = tmp / f"out-w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        result = run_import("cmmd", tmp / "root", out, workers=workers)
        seconds = time.perf_counter() - t0
        assert result.report["images"] == n, result.report["rejects"]["by_reason"]
        runs.append({"run": "cold", "workers": workers, "files": n, "seconds": round(seconds, 3),
                     "files_per_s": round(n / seconds, 1)})
    t0 = time.perf_counter()
    result = run_import("cmmd", tmp / "root", out, workers=args.workers[-1])
    seconds = time.perf_counter() - t0
    assert result.report["headers"]["read"] == 0
    runs.append({"run": "resume", "workers": args.workers[-1], "files": n, "seconds": round(seconds, 3),
                 "files_per_s": round(n / seconds, 1)})
    record = {
        "benchmark": "import_speed", "layout": "cmmd (headers only)", "files": n, "file_pixels": "32 x 32",
        "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": load_start, "loadavg_end": list(os.getloadavg())},
        "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "write_seconds_untimed": round(write_s, 1), "runs": runs,
    }
    print(f"{'run':<8} {'workers':>7} {'files':>7} {'seconds':>8} {'files/s':>9}")
    for r in runs:
        print(f"{r['run']:<8} {r['workers']:>7} {r['files']:>7} {r['seconds']:>8.2f} {r['files_per_s']:>9.0f}")
    print(f"load average {load_start} -> {record['machine']['loadavg_end']}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
