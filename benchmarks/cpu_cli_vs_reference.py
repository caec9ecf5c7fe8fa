"""`mammokit heatmaps` as a user runs it vs the authors' heatmap code, in the same run, on the CPU.

One band of a real view (``1_R_CC.png`` of ../shared/data/real, cropped with the paper preset,
rows around the middle so that it holds ``--patches`` 256-px patches at stride 70) is written into
a mammokit work folder. The same weight file (the authors' ``.p`` format, trained-like statistics:
benchmarks/_patch_weights.py) goes to:

* the authors' code (nyukat/breast_cancer_classifier ``src/heatmaps``, from a checkout named with
  ``--reference-code``; mammokit does not ship it): their ``load_model``, ``sample_patches_single``
  (reads the PNG, flips, standardises), ``get_all_prob`` at their run.sh batch of 100, and
  ``probabilities_to_heatmap``; in this process, timed from reading the image to the two maps;
* ``python -m mammokit heatmaps WORKDIR --patch-model FILE`` in a subprocess with default settings
  (so ``--dtype auto``: fp32 on a CPU without bf16 hardware; eager at this size), and again with
  ``--dtype bf16``. The rate is the one the command prints (its heatmap loop; start-up and model
  loading left out); the wall time of the command is recorded too.

Runs take turns (round robin over ``--repeats``), so drifts in the machine's load hit all alike.
Needs two shims for the authors' imports that mammokit does not depend on: ``imageio.imread``
(replaced by OpenCV's 16-bit PNG reader; the same pixels) and ``pandas`` (imported by their
pickling module, unused here).

    .venv/bin/python -m benchmarks.cpu_cli_vs_reference --reference-code /tmp/bcc \\
        -o benchmarks/results/cpu-2core-cli-vs-reference.json
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from benchmarks._common import ROOT, environment, markdown_table, write_result


def band_rows(height: int, width: int, patches: int) -> int:
    """The band height (rows) whose patch count is closest to ``patches`` (at least one row)."""
    from mammokit.heatmaps import num_patches

    best = min(range(256, height + 1), key=lambda h: (abs(num_patches(h, width, 256, 70) - patches), h))
    return best


def reference_heatmaps(rp, model, png: Path, seed: int) -> tuple[np.ndarray, float]:
    """The authors' code on one image: ``[2, H, W]`` (malignant, benign; model frame) and seconds."""
    import torch

    params = dict(patch_size=256, more_patches=0, stride_fixed=70, input_channels=3, number_of_classes=4)
    t0 = time.perf_counter()
    random.seed(seed)  # their shortened strides come from the global stream; mammokit's from derive_seed
    patches, case = rp.sample_patches_single(str(png), "R-CC", "NO", params)
    shape, _, _, width_list, length_list = case
    prob = rp.get_all_prob(patches, 100, model, torch.device("cpu"), params)
    mal, _ = rp.probabilities_to_heatmap(0, prob, shape, length_list, width_list, 256, 0)
    ben, _ = rp.probabilities_to_heatmap(0, prob, shape, length_list, width_list, 256, 1)
    return np.stack([mal, ben]), time.perf_counter() - t0


def cli_heatmaps(wd: Path, weights: Path, extra: list[str]) -> dict:
    """One ``mammokit heatmaps`` run from scratch: printed rate, wall time, maps ``[2, H, W]``."""
    import shutil

    from mammokit.data.heatmap_io import read_heatmap

    shutil.rmtree(wd / "heatmaps", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mammokit", "heatmaps", str(wd), "--patch-model", str(weights),
                           *extra], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    line = proc.stdout.strip().splitlines()[-1]
    rate = float(re.search(r"([\d.]+) patches/s", line).group(1))
    precision = re.search(r"precision (\w+)", line).group(1)
    maps = np.stack([read_heatmap(wd / "heatmaps" / k / "band.png") for k in ("malignant", "benign")])
    return {"patches_per_s": rate, "wall_s": wall, "precision": precision, "line": line, "maps": maps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-code", required=True, help="checkout of nyukat/breast_cancer_classifier")
    ap.add_argument("--image", default="1_R_CC.png")
    ap.add_argument("--patches", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--bf16-repeats", type=int, default=1, help="bf16 CLI runs (slow without bf16 hardware)")
    ap.add_argument("--threads", type=int, default=2, help="threads of the authors' code (the CLI uses torch's default)")
    ap.add_argument("-o", "--output", default="benchmarks/results/cpu-cli-vs-reference.json")
    a = ap.parse_args()

    import cv2
    import torch

    from benchmarks._patch_weights import calibration_images, write_authors_patch_model
    from mammokit.data.examlist import save_exams
    from mammokit.data.images import read_image, write_png16
    from mammokit.heatmaps import num_patches
    from mammokit.preprocess.pipeline import preprocess_image
    from mammokit.transforms import from_model_frame
    from mammokit.utils.seed import derive_seed

    torch.set_num_threads(a.threads)
    env = environment("cpu")
    real = Path(os.environ.get("MAMMOKIT_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
    crop = preprocess_image(read_image(real / a.image), "R-CC", "NO", preset="paper").cropped
    H, W = crop.shape
    h = band_rows(H, W, a.patches)
    top = (H - h) // 2
    band = np.ascontiguousarray(crop[top:top + h])
    n = num_patches(h, W, 256, 70)
    print(f"{a.image}: crop {H} x {W}; band rows {top}-{top + h} ({h} x {W}): {n} patches of 256, stride 70",
          flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="mk-cli-vs-ref-"))
    weights = write_authors_patch_model(tmp / "patch_model.p", calibration_images(real))
    wd = tmp / "work"
    write_png16(wd / "cropped" / "band.png", band)
    save_exams(wd / "exams.json", [{"exam_id": "1", "horizontal_flip": "NO", "R-CC": ["band"]}], preset="paper",
               image_dir="cropped")

    sys.path.insert(0, a.reference_code)
    sys.modules.setdefault("imageio", types.SimpleNamespace(imread=lambda f: cv2.imread(str(f), cv2.IMREAD_UNCHANGED)))
    sys.modules.setdefault("pandas", types.ModuleType("pandas"))
    from src.heatmaps import run_producer as rp  # the authors' module

    ref_model, _ = rp.load_model({"device_type": "cpu", "gpu_number": 0, "number_of_classes": 4,
                                  "initial_parameters": str(weights)})
    seed = derive_seed(0, "band")  # the stream mammokit draws the band's shortened strides from
    rows: dict[str, dict] = {"reference": {"times": []}, "cli_fp32": {"runs": []}, "cli_bf16": {"runs": []}}
    maps = {}
    for r in range(max(a.repeats, a.bf16_repeats)):
        if r < a.repeats:
            maps["reference"], dt = reference_heatmaps(rp, ref_model, wd / "cropped" / "band.png", seed)
            rows["reference"]["times"].append(dt)
            print(f"reference (authors' code, batch 100)   {n / dt:6.2f} patches/s ({dt:.1f} s)", flush=True)
            out = cli_heatmaps(wd, weights, [])
            maps["cli_fp32"] = out.pop("maps")
            rows["cli_fp32"]["runs"].append(out)
            print(f"mammokit heatmaps (default, {out['precision']})      {out['patches_per_s']:6.2f} patches/s "
                  f"(command {out['wall_s']:.1f} s)", flush=True)
        if r < a.bf16_repeats:
            out = cli_heatmaps(wd, weights, ["--dtype", "bf16"])
            maps["cli_bf16"] = out.pop("maps")
            rows["cli_bf16"]["runs"].append(out)
            print(f"mammokit heatmaps --dtype bf16          {out['patches_per_s']:6.2f} patches/s "
                  f"(command {out['wall_s']:.1f} s)", flush=True)

    ref_rate = float(np.median([n / t for t in rows["reference"]["times"]]))
    rows["reference"]["patches_per_s"] = ref_rate
    if not rows["cli_bf16"]["runs"]:
        rows.pop("cli_bf16")
    for k in [k for k in ("cli_fp32", "cli_bf16") if k in rows]:
        rows[k]["patches_per_s"] = float(np.median([x["patches_per_s"] for x in rows[k]["runs"]]))
        rows[k]["ratio_vs_reference"] = rows[k]["patches_per_s"] / ref_rate
    ref_stored = from_model_frame(maps["reference"], "R-CC", "NO")  # R views are flipped for the model
    diffs = {"cli_fp32_vs_reference": float(np.abs(maps["cli_fp32"] - ref_stored).max())}
    if "cli_bf16" in maps:
        diffs["cli_bf16_vs_cli_fp32"] = float(np.abs(maps["cli_bf16"] - maps["cli_fp32"]).max())
        diffs["cli_bf16_vs_reference"] = float(np.abs(maps["cli_bf16"] - ref_stored).max())
    spread = {"min": float(maps["cli_fp32"].min()), "max": float(maps["cli_fp32"].max())}
    table = markdown_table(
        ["path", "precision", "patches/s (median)", "x authors' code", "max abs diff"],
        [["authors' code (batch 100)", "fp32", ref_rate, 1.0, ""],
         ["mammokit heatmaps (defaults)", rows["cli_fp32"]["runs"][0]["precision"], rows["cli_fp32"]["patches_per_s"],
          rows["cli_fp32"]["ratio_vs_reference"], f"{diffs['cli_fp32_vs_reference']:.2e} vs authors'"]]
        + ([["mammokit heatmaps --dtype bf16", "bf16", rows["cli_bf16"]["patches_per_s"],
             rows["cli_bf16"]["ratio_vs_reference"], f"{diffs['cli_bf16_vs_cli_fp32']:.2e} vs fp32"]]
           if "cli_bf16" in rows else []))
    print(table)
    doc = {
        "what": "mammokit heatmaps CLI (defaults; and --dtype bf16) vs the authors' heatmap code, same weights, "
                "same run, one band of a real view",
        "image": a.image, "crop_shape": [H, W], "band_rows": [top, top + h], "patches": n, "patch_size": 256,
        "stride": 70, "reference_threads": a.threads, "repeats": a.repeats, "bf16_repeats": a.bf16_repeats,
        "weights": "random DenseNet-121, BN statistics recalibrated on real patches, classifier scaled "
                   "(benchmarks/_patch_weights.py); authors' .p format, read by both",
        "heatmap_range_fp32": spread, "rows": rows, "max_abs_diff": diffs, "table": table, "environment": env,
    }
    print("wrote", write_result(doc, a.output))


if __name__ == "__main__":
    main()
