"""CPU heatmaps of one whole real view: the authors' published code vs mammokit, same weights.

The authors' heatmap functions (``stride_list_generator``, ``patch_batch_prepare``,
``get_all_prob``, ``probabilities_to_heatmap`` of nyukat/breast_cancer_classifier
``src/heatmaps/run_producer.py``) are imported from a checkout you name with
``--reference-code DIR`` (mammokit does not ship their code); their model is torchvision's
DenseNet-121 with 4 classes on 3 repeated channels, fp32, batch 100, as their run.sh. mammokit runs
the same weights (first kernel folded to one channel) through ``compute_heatmaps`` eager and
compiled (:func:`mammokit.heatmaps.compile_patch_model`), fp32. The shortened strides are
drawn from the same seed, so the heatmaps are directly comparable.

    .venv/bin/python -m benchmarks.cpu_vs_reference --reference-code /path/to/breast_cancer_classifier \\
        -o benchmarks/results/cpu-2core-vs-reference.json

Image: ``1_R_CC.png`` of ../shared/data/real (or ``MAMMOKIT_REAL_DATA``), cropped with the paper
preset and flipped as the model sees it. Prints a table; writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time

import numpy as np
import torch
import torchvision

from benchmarks._common import cpu_model as _cpu_model
from mammokit.data.images import read_image
from mammokit.heatmaps import compile_patch_model, compute_heatmaps, num_patches
from mammokit.transforms import standardize_image
from mammokit.models.patch import PatchDenseNet121
from mammokit.preprocess.pipeline import preprocess_image
from mammokit.utils.io import write_json_atomic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-code", help="checkout of nyukat/breast_cancer_classifier (optional)")
    ap.add_argument("--image", default="1_R_CC.png")
    ap.add_argument("--batch-size", type=int, default=4, help="mammokit patches per forward")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per path (median reported)")
    ap.add_argument("-o", "--output", default="cpu-vs-reference.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load_start = os.getloadavg()
    real = os.environ.get("MAMMOKIT_REAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real"))
    img = read_image(os.path.join(real, a.image))
    res = preprocess_image(img, "R-CC" if "_R_" in a.image else "L-CC", "NO", preset="paper")
    crop = np.ascontiguousarray(res.cropped[:, ::-1] if "_R_" in a.image else res.cropped)
    image = standardize_image(crop.astype(np.float32)).numpy()
    H, W = image.shape
    n = num_patches(H, W, 256, 70)
    print(f"image {a.image}: cropped {H} x {W}, {n} patches of 256, stride 70, {a.threads} threads", flush=True)

    torch.manual_seed(0)
    tv = torchvision.models.densenet121(num_classes=4).eval()
    ours = PatchDenseNet121(num_classes=4, in_chans=1).eval()
    sd = tv.state_dict()
    ours.load_state_dict({k: (v.sum(1, keepdim=True) if k == "features.conv0.weight" else v) for k, v in sd.items()})
    rows, maps, paths = {}, {}, []

    def timed(name, fn):
        # Paths take turns (round-robin over the repeats, see below) so drifts of the machine's
        # speed hit all of them alike.
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
            yield out
        dt = float(np.median(times))
        rows[name] = {"seconds": dt, "patches_per_s": n / dt, "times_s": times}
        print(f"{name:50s} {dt:8.1f} s  {n / dt:6.2f} patches/s  (runs: {', '.join(f'{x:.1f}' for x in times)} s)",
              flush=True)

    if a.reference_code:
        sys.path.insert(0, a.reference_code)
        from src.heatmaps import run_producer as rp  # the authors' module

        params = dict(patch_size=256, input_channels=3, number_of_classes=4)

        def reference():
            random.seed(0)
            ref_img = image.astype(float)  # the reference works in float64
            wl = rp.stride_list_generator(H, 256, 0, 70)
            ll = rp.stride_list_generator(W, 256, 0, 70)
            patches = rp.patch_batch_prepare(ref_img, ll, wl, 256)
            prob = rp.get_all_prob(patches, 100, tv, torch.device("cpu"), params)
            mal, _ = rp.probabilities_to_heatmap(0, prob, ref_img.shape, ll, wl, 256, 0)
            ben, _ = rp.probabilities_to_heatmap(0, prob, ref_img.shape, ll, wl, 256, 1)
            return np.stack([mal, ben])

        paths.append(("reference", "reference (authors' code, fp32, 3ch, batch 100)", reference))
    paths.append((
        "eager", f"mammokit compute_heatmaps eager fp32 b{a.batch_size}",
        lambda: compute_heatmaps(image, ours, 256, 70, random.Random(0), batch_size=a.batch_size, device="cpu", dtype="fp32").numpy(),
    ))
    if not a.no_compile:
        t = time.perf_counter()
        cm = compile_patch_model(ours, "cpu")
        with torch.inference_mode():
            cm(torch.zeros(a.batch_size, 1, 256, 256).contiguous(memory_format=torch.channels_last))
        compile_s = time.perf_counter() - t
        print(f"compile: {compile_s:.0f} s", flush=True)
        paths.append((
            "compiled", f"mammokit compute_heatmaps compiled fp32 b{a.batch_size}",
            lambda: compute_heatmaps(image, cm, 256, 70, random.Random(0), batch_size=a.batch_size, device="cpu", dtype="fp32",
                                     channels_last=True, static_batch=True).numpy(),
        ))
    runs = {key: timed(label, fn) for key, label, fn in paths}
    for _ in range(a.repeats):
        for key in runs:
            maps[key] = next(runs[key])
    for key in runs:
        next(runs[key], None)  # records the row
    compile_s = locals().get("compile_s")
    diffs = {}
    if "reference" in maps:
        for k in ("eager", "compiled"):
            if k in maps:
                diffs[k] = float(np.abs(maps[k] - maps["reference"]).max())
                print(f"max abs diff {k} vs reference heatmaps: {diffs[k]:.2e}")
    doc = {
        "what": "heatmaps of one whole real view on the CPU, authors' code vs mammokit, same random weights",
        "image": a.image, "cropped_shape": [H, W], "patches": n, "threads": a.threads,
        "rows": rows, "compile_seconds": compile_s, "max_abs_diff_vs_reference": diffs,
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "cpu": _cpu_model() or platform.machine(),
        "repeats": a.repeats,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
    }
    write_json_atomic(a.output, doc)
    print("wrote", a.output)


if __name__ == "__main__":
    main()
