"""Kill -9 matrix: each stage killed (SIGKILL) at several points while it works, re-run to the
end, outputs compared byte for byte with an uninterrupted run (tests/helpers/kill9.py).

    python -m benchmarks.kill9 [--exams 8] [--points 10]

Stages covered: preprocess, heatmaps (see benchmarks/README.md for the stages not yet covered). Prints the
matrix; writes benchmarks/results/kill9-cpu.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

VIEWS4 = ("L-CC", "R-CC", "L-MLO", "R-MLO")


def preprocess_matrix(tmp: Path, exams: int, points: int) -> dict:
    from mammokit.data.images import write_png16
    from tests.helpers.hostile import breast_image, tree_hash
    from tests.helpers.kill9 import kill_matrix, run_stage

    src = tmp / "src"
    src.mkdir()
    manifest = tmp / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["exam_id", "view", "path"])
        for e in range(exams):
            for i, view in enumerate(VIEWS4):
                write_png16(src / f"e{e}_{view}.png", breast_image(400, 300, view[0], seed=e * 4 + i))
                w.writerow([f"e{e}", view, f"src/e{e}_{view}.png"])
    before = tree_hash(src)
    n = exams * 4
    kill_points = sorted({max(1, round(n * (k + 0.5) / points)) for k in range(points)})

    def make_args(out):
        return ["preprocess", str(manifest), "--out", str(out), "--preset", "tiny"]

    start = time.perf_counter()
    run_stage(make_args(tmp / "reference"))
    results = kill_matrix(make_args, tmp / "reference", "cropped/*.png", kill_points, tmp / "runs")
    return {
        "stage": "preprocess", "images": n, "kill_points": kill_points,
        "killed": [r.killed for r in results], "identical": [r.identical for r in results],
        "differences": {r.point: r.differences for r in results if r.differences},
        "input_unchanged": tree_hash(src) == before, "seconds": round(time.perf_counter() - start, 1),
    }


def heatmaps_matrix(tmp: Path, exams: int, points: int) -> dict:
    import shutil

    import torch

    from mammokit.data.images import write_png16
    from mammokit.models import create_model
    from mammokit.models.checkpoint import save_checkpoint
    from tests.helpers.hostile import breast_image, tree_hash
    from tests.helpers.kill9 import kill_matrix, run_stage

    tmp = tmp / "heatmaps"
    (tmp / "src").mkdir(parents=True)
    manifest = tmp / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["exam_id", "view", "path"])
        for e in range(exams):
            for i, view in enumerate(VIEWS4):
                write_png16(tmp / "src" / f"e{e}_{view}.png", breast_image(400, 300, view[0], seed=e * 4 + i))
                w.writerow([f"e{e}", view, f"src/e{e}_{view}.png"])
    run_stage(["preprocess", str(manifest), "--out", str(tmp / "base"), "--preset", "tiny"])
    torch.manual_seed(0)
    model = tmp / "patch.safetensors"
    save_checkpoint(model, create_model("patchnet_small", num_classes=3, width=4), arch="patchnet_small",
                    model_args={"num_classes": 3, "width": 4}, preset="tiny")
    n = exams * 4 * 2  # a benign and a malignant map per image
    kill_points = sorted({max(1, round(n * (k + 0.5) / points)) for k in range(points)})

    def prepare(out):
        shutil.copytree(tmp / "base", out)

    def make_args(out):
        return ["heatmaps", str(out), "--patch-model", str(model), "--device", "cpu", "--compile", "off"]

    before = tree_hash(tmp / "base")  # the preprocessed folder every run starts from
    start = time.perf_counter()
    prepare(tmp / "reference")
    run_stage(make_args(tmp / "reference"))
    results = kill_matrix(make_args, tmp / "reference", "heatmaps/*/*.png", kill_points, tmp / "runs",
                          prepare=prepare)
    return {
        "stage": "heatmaps", "images": exams * 4, "kill_points": kill_points,
        "killed": [r.killed for r in results], "identical": [r.identical for r in results],
        "differences": {r.point: r.differences for r in results if r.differences},
        "input_unchanged": tree_hash(tmp / "base") == before, "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=8)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kill9-cpu.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kill9-") as tmp:
        rows = [preprocess_matrix(Path(tmp), args.exams, args.points),
                heatmaps_matrix(Path(tmp), max(2, args.exams // 2), min(args.points, 6))]
    doc = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs (shared)", "stages": rows}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{'stage':<12}{'kill points':>12}{'killed':>8}{'identical':>10}{'input same':>11}{'s':>7}")
    for r in rows:
        print(f"{r['stage']:<12}{len(r['kill_points']):>12}{sum(r['killed']):>8}{sum(r['identical']):>10}"
              f"{str(r['input_unchanged']):>11}{r['seconds']:>7}")
    return 0 if all(all(r["identical"]) and all(r["killed"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
