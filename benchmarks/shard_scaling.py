"""Many processes on one CPU machine: `mammokit heatmaps` on 1 rank vs `torchrun --nproc_per_node 2`.

Work: ``--exams`` one-view exams, each a ``--tile`` (rows x cols) piece of a real view's crop
(../shared/data/real, paper preset), DenseNet-121 patch classifier with trained-like statistics
(benchmarks/_patch_weights.py), 256-px patches at stride 70, batch 4, fp32. Every process runs one
thread (``OMP_NUM_THREADS=1``, as torchrun sets it), so 2 ranks use the machine's 2 cores.

Timed: the whole command (Python and torch start-up, model loading, the heatmaps, the merge),
which is what a user waits for; the heatmap loops' own rates (printed by each rank) are recorded
too. Both runs start from an empty heatmaps folder; the outputs (exam list and every heatmap PNG)
are checked byte for byte between them.

    .venv/bin/python -m benchmarks.shard_scaling -o benchmarks/results/cpu-2core-shard-scaling.json
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import ROOT, environment, markdown_table, write_result


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".shards" not in p.parts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exams", type=int, default=8)
    ap.add_argument("--tile", type=int, nargs=2, default=(396, 536), metavar=("ROWS", "COLS"))
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="rounds of (1 rank, N ranks)")
    ap.add_argument("-o", "--output", default="benchmarks/results/cpu-shard-scaling.json")
    a = ap.parse_args()

    from benchmarks._patch_weights import calibration_images, write_authors_patch_model
    from mammokit.data.examlist import save_exams
    from mammokit.data.images import read_image, write_png16
    from mammokit.heatmaps import num_patches
    from mammokit.preprocess.pipeline import preprocess_image

    env_doc = environment("cpu")
    real = Path(os.environ.get("MAMMOKIT_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
    tmp = Path(tempfile.mkdtemp(prefix="mk-shard-scaling-"))
    weights = write_authors_patch_model(tmp / "patch_model.p", calibration_images(real))
    rows, cols = a.tile
    crops = [preprocess_image(read_image(real / n), "R-CC" if "_R_" in n else "L-CC", "NO", preset="paper").cropped
             for n in ("1_L_CC.png", "1_R_CC.png", "2_L_CC.png", "2_R_CC.png")]
    base = tmp / "base"
    exams = []
    for e in range(a.exams):
        crop = crops[e % len(crops)]
        view = ("L-CC", "R-CC")[e % 2]
        k = e // len(crops)  # a different region of the same view for each round
        top = min(crop.shape[0] - rows, (k + 1) * crop.shape[0] // (a.exams // len(crops) + 2))
        tile = np.ascontiguousarray(crop[top:top + rows, :cols] if view == "L-CC" else crop[top:top + rows, -cols:])
        name = f"ex{e:02d}"
        write_png16(base / "cropped" / f"{name}.png", tile)
        exams.append({"exam_id": f"exam{e:02d}", "horizontal_flip": "NO", view: [name]})
    save_exams(base / "exams.json", exams, preset="paper", image_dir="cropped")
    patches = a.exams * num_patches(rows, cols, 256, 70)
    print(f"{a.exams} exams x 1 view of {rows} x {cols}: {patches} patches; {a.ranks} ranks vs 1", flush=True)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    args = ["heatmaps", None, "--patch-model", str(weights), "--device", "cpu", "--batch-size", "4"]
    torchrun = Path(sys.executable).with_name("torchrun")
    results: dict[str, list] = {"1": [], str(a.ranks): []}
    trees = {}
    for r in range(a.repeats):
        for ranks in (1, a.ranks):
            wd = tmp / f"run{ranks}-{r}"
            shutil.copytree(base, wd)
            cmd_args = [x if x is not None else str(wd) for x in args]
            cmd = ([sys.executable, "-m", "mammokit", *cmd_args] if ranks == 1 else
                   [str(torchrun), "--nproc_per_node", str(ranks), "--master_port", str(29600 + r), "-m", "mammokit",
                    *cmd_args])
            load0 = os.getloadavg()
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
            rates = [float(x) for x in re.findall(r"([\d.]+) patches/s", proc.stdout)]
            results[str(ranks)].append({"wall_s": wall, "loop_patches_per_s": rates, "loadavg_before": load0,
                                        "loadavg_after": os.getloadavg()})
            trees[ranks] = _tree(wd)
            print(f"{ranks} rank(s): {wall:.1f} s for {patches} patches ({patches / wall:.2f} patches/s overall; "
                  f"loops {', '.join(f'{x:.2f}' for x in rates)} patches/s)", flush=True)
    identical = trees[1] == trees[a.ranks]
    w1 = float(np.median([x["wall_s"] for x in results["1"]]))
    wn = float(np.median([x["wall_s"] for x in results[str(a.ranks)]]))
    table = markdown_table(["processes", "wall s (median)", "patches/s", "speed-up", "outputs identical"],
                           [[1, w1, patches / w1, 1.0, ""], [a.ranks, wn, patches / wn, w1 / wn, identical]])
    print(table)
    doc = {"what": f"mammokit heatmaps, 1 process vs torchrun --nproc_per_node {a.ranks}, 1 thread each",
           "exams": a.exams, "tile": [rows, cols], "patches": patches, "patch_size": 256, "stride": 70,
           "batch_size": 4, "precision": "fp32", "weights": "trained-like DenseNet-121 (benchmarks/_patch_weights.py)",
           "runs": results, "speedup_wall": w1 / wn, "outputs_identical": identical, "files_compared": len(trees[1]),
           "table": table, "environment": env_doc}
    print("wrote", write_result(doc, a.output))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
