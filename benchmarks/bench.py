"""``python -m benchmarks.bench``: time every stage through the library functions the CLI calls.

Stages (``--stages``), on a data set made for the run (synthetic exams at the preset's scale, or
the real sample mammograms with ``--data real``; generated and preprocessed untimed):

* ``heatmaps`` — :func:`mammokit.inference.heatmaps.make_heatmaps` over the work folder
  (``mammokit heatmaps``): patches/s and s/exam, in ``--dtype`` and each ``--compare-dtypes``,
  with the max abs difference of the heatmaps from the fp32 run (meaningful with a trained patch
  classifier, ``--patch-model``: a random DenseNet is chaotic in its inputs).
* ``predict`` — :func:`mammokit.inference.predict.predict` (``mammokit predict``) with two
  view-wise models (image-only and image+heatmaps), ``--tta`` draws: s/exam of the scoring loop
  and of the whole call (model loading included), max abs difference from fp32.
* ``pipeline`` — :func:`mammokit.inference.run.run` (``mammokit run``) from the raw images to
  predictions (preprocess, heatmaps, both models): exams/s and the time of each stage.
* ``train`` — :func:`mammokit.training.breast.train_breast` (``mammokit train``), view-wise
  image+heatmaps, one epoch over the training exams: exams/s and peak memory.

Weights are random unless given (speed does not depend on them). Output: a table on stdout and
JSON (default ``benchmarks/results/<device>-<preset>.json``) with the machine, versions, git
commit, settings, image sizes and every timing.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import RESULTS, device_name, dumps, environment, markdown_table, peak_rss_bytes, \
    time_calls, write_result

SCHEMA = "mammokit.benchmarks/2"
STAGES = ("heatmaps", "predict", "pipeline", "train")
# Targets of the speed issue, one H100-class GPU at the paper preset (printed beside the figures).
CUDA_TARGETS = {"heatmaps_patches_per_s": 20_000, "pipeline_exams_per_s": 4.0, "train_exams_per_s": 60.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default=None, help="paper | half | small | tiny | scale:F (default: paper on "
                   "CUDA, small on the CPU)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, from {', '.join(STAGES)}")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="heatmap and model precision (auto: the library's defaults)")
    p.add_argument("--compare-dtypes", default="", help="more heatmap / model dtypes to time, e.g. fp16,bf16")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="heatmaps' --compile")
    p.add_argument("--exams", type=int, default=None, help="exams in the data set (default 100 CUDA, 3 CPU)")
    p.add_argument("--data", default="synthetic", choices=["synthetic", "real"],
                   help="synthetic exams, or the real sample mammograms of ../shared/data/real (paper preset)")
    p.add_argument("--tta", type=int, default=10)
    p.add_argument("--stride", type=int, default=None, help="heatmap stride override (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="heatmap patches per forward (default: library's)")
    p.add_argument("--train-batch", type=int, default=4, help="exams per training step (paper 4)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--patch-model", default=None, help="trained patch classifier (accuracy check)")
    p.add_argument("--models", nargs=2, default=None, metavar=("IMAGE_ONLY", "IMAGE_HEATMAPS"),
                   help="trained view-wise models (default: random weights)")
    p.add_argument("--workers", type=int, default=None, help="preprocessing / synthesis processes")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, metavar="DIR", help="build the data set here and keep it")
    p.add_argument("--quick", action="store_true", help="CI-sized: tiny preset, 2 exams, 1 repeat, no warm-up")
    p.add_argument("-o", "--output", default=None, help="result JSON (default benchmarks/results/<device>-<preset>.json)")
    return p.parse_args(argv)


class Bench:
    """The data set, the models and the settings of one benchmark run."""

    def __init__(self, a: argparse.Namespace, root: Path) -> None:
        import torch

        from mammokit.config import get_preset, scaled_preset
        from mammokit.utils.device import resolve_device

        self.a, self.root = a, root
        self.device = resolve_device(a.device)
        cuda = self.device.type == "cuda"
        name = a.preset or ("tiny" if a.quick else ("paper" if cuda else "small"))
        self.preset = scaled_preset(name, float(name.split(":", 1)[1])) if name.startswith("scale:") else get_preset(name)
        self.n_exams = a.exams or (2 if a.quick else (100 if cuda else 3))
        self.dtypes = [a.dtype] + [d for d in a.compare_dtypes.split(",") if d]
        self.workers = a.workers or (os.cpu_count() or 1)
        if a.threads:
            torch.set_num_threads(a.threads)
        self.data, self.work = root / "data", root / "work"
        self.manifest, self.labels = self.data / "manifest.csv", self.data / "labels.csv"

    # ------------------------------------------------------------------ inputs (untimed)
    def prepare(self) -> None:
        from mammokit.preprocess.pipeline import preprocess

        if not (self.work / "exams.json").exists():
            self._real() if self.a.data == "real" else self._synthetic()
            preprocess(self.manifest, self.work, preset=self.preset, workers=self.workers, strict=True)
        self.patch_model = self.a.patch_model or self._random_model("patch")
        self.models = list(self.a.models) if self.a.models else [self._random_model("image"),
                                                                 self._random_model("heatmaps")]

    def _synthetic(self) -> None:
        from mammokit.synth import generate

        generate(self.data, n_exams=self.n_exams, seed=self.a.seed, scale=self.preset.scale, cancer_rate=0.3,
                 benign_rate=0.3, workers=self.workers)

    def _real(self) -> None:
        from mammokit.utils.io import write_csv_atomic

        real = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
        if not (real / "1_L_CC.png").exists():
            sys.exit(f"--data real: the sample mammograms are not at {real}")
        if self.preset.scale != 1.0:
            sys.exit("--data real needs the paper preset (the sample images are full resolution)")
        rows, labels = [], []
        for i in range(self.n_exams):
            k = 1 + i % 2  # two real exams (CC only): their CC images stand in for the MLO views
            for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
                rows.append({"exam_id": f"r{i}", "view": view, "path": str(real / f"{k}_{view[0]}_CC.png"),
                             "patient_id": f"p{i}", "split": "train" if i % 4 else "val"})
            labels.append({"exam_id": f"r{i}", "left_benign": 0, "right_benign": 0, "left_malignant": i % 2,
                           "right_malignant": 0, "split": "train" if i % 4 else "val"})
        write_csv_atomic(self.manifest, rows, list(rows[0]))
        write_csv_atomic(self.labels, labels, list(labels[0]))

    def _random_model(self, kind: str) -> str:
        import torch

        from mammokit.models import create_model, save_checkpoint

        path = self.root / "models" / f"{kind}.safetensors"
        if path.exists():
            return str(path)
        torch.manual_seed(self.a.seed)
        if kind == "patch":
            arch = "densenet121_patch" if self.preset.patch_arch.startswith("densenet") else "patchnet_small"
            args = {"num_classes": 3, "in_chans": 1}
        else:
            arch, args = "view_wise", {"in_channels": 3 if kind == "heatmaps" else 1, "task": "cancer"}
        save_checkpoint(path, create_model(arch, **args).eval(), arch=arch, model_args=args, preset=self.preset,
                        extra={"note": "random weights for benchmarking"})
        return str(path)

    def sizes(self) -> dict[str, Any]:
        from mammokit.data.examlist import load_exams

        exams, _ = load_exams(self.work / "exams.json")
        cropped = {}
        for v in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            boxes = [e["window_location"][v][0] for e in exams if e.get(v)]
            cropped[v] = [int(np.median([b[1] - b[0] for b in boxes])), int(np.median([b[3] - b[2] for b in boxes]))]
        return {"exams": len(exams), "cropped_median": cropped, "input": {
            "CC": list(self.preset.cc_input_size), "MLO": list(self.preset.mlo_input_size)},
            "patch_size": self.preset.patch_size, "stride": self.a.stride or self.preset.heatmap_stride}

    # ------------------------------------------------------------------ stages (timed)
    def _dtypes(self, purpose: str) -> list[str]:
        """fp32 first (the reference of the accuracy columns), then each asked dtype once."""
        from mammokit.utils.device import dtype_name, resolve_dtype

        asked = [dtype_name(resolve_dtype(d, self.device, purpose)) for d in self.dtypes]
        return list(dict.fromkeys(["fp32", *asked]))

    def _clear_heatmaps(self) -> None:
        for name in ("heatmaps", "heatmap_malignant", "heatmap_benign"):
            shutil.rmtree(self.work / name, ignore_errors=True)

    def _read_heatmaps(self) -> dict[str, np.ndarray]:
        from mammokit.data.heatmap_io import read_heatmap

        return {str(p.relative_to(self.work)): read_heatmap(p) for p in sorted((self.work / "heatmaps").rglob("*.png"))}

    def heatmaps(self) -> dict[str, Any]:
        from mammokit.inference.heatmaps import make_heatmaps

        compile_ = {"auto": "auto", "on": True, "off": False}[self.a.compile]
        rows, ref = [], None
        for dtype in self._dtypes("heatmaps"):
            t = time_calls(lambda: make_heatmaps(self.work, self.patch_model, stride=self.a.stride,
                                                 batch_size=self.a.batch_size, device=str(self.device), dtype=dtype,
                                                 compile=compile_),
                           self.device, self.a.warmup, self.a.repeats, before=self._clear_heatmaps)
            maps, summary = self._read_heatmaps(), t["last"]
            ref = maps if ref is None else ref  # the first run is fp32
            diff = max(float(np.abs(maps[k] - ref[k]).max()) for k in maps)
            rows.append({"dtype": dtype, "patches": summary["patches"], "seconds": t["times"],
                         "patches_per_s": summary["patches"] / t["median"], "s_per_exam": t["median"] / self.n_exams,
                         "first_call_s": t["first"], "max_abs_diff_vs_fp32": diff})
        return {"rows": rows, "patch_model": self.patch_model, "compile": self.a.compile}

    def _ensure_heatmaps(self) -> None:
        from mammokit.inference.heatmaps import make_heatmaps

        make_heatmaps(self.work, self.patch_model, stride=self.a.stride, device=str(self.device), compile=False)

    def predict(self) -> dict[str, Any]:
        from mammokit.inference.predict import predict

        self._ensure_heatmaps()
        rows, ref = [], None
        for dtype in self._dtypes("models"):
            t = time_calls(lambda: predict(self.work, self.models, tta=self.a.tta, seed=self.a.seed,
                                           device=str(self.device), dtype=dtype),
                           self.device, self.a.warmup, self.a.repeats)
            res = t["last"]
            if ref is None:
                ref = res.probabilities
            rows.append({"dtype": dtype, "s_per_exam_scoring": res.seconds / max(len(res.exam_ids), 1),
                         "s_per_exam_call": t["median"] / self.n_exams, "seconds": t["times"],
                         "max_abs_diff_vs_fp32": float(np.abs(res.probabilities - ref).max())})
        return {"rows": rows, "tta": self.a.tta, "models": 2}

    def pipeline(self) -> dict[str, Any]:
        from mammokit.inference.run import run

        out = self.root / "run_out"
        t = time_calls(lambda: run(self.manifest, out, self.models, patch_model=self.patch_model, preset=self.preset,
                                   tta=self.a.tta, seed=self.a.seed, workers=self.workers, device=str(self.device),
                                   dtype=self.a.dtype, heatmap_dtype=self.a.dtype),
                       self.device, self.a.warmup, self.a.repeats, before=lambda: shutil.rmtree(out, ignore_errors=True))
        r = t["last"]
        return {"exams_per_s": self.n_exams / t["median"], "seconds": t["times"], "first_call_s": t["first"],
                "stage_seconds": {"preprocess": r.preprocess.seconds, "heatmaps": r.heatmaps["seconds"],
                                  "predict": r.predictions.seconds}}

    def train(self) -> dict[str, Any]:
        import torch

        from mammokit.training import TrainConfig, train_breast

        self._ensure_heatmaps()
        if torch.cuda.is_available() and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        runs = []

        def one() -> dict:
            out = self.root / f"train{len(runs)}"
            runs.append(out)
            cfg = TrainConfig(workdir=str(self.work), labels=str(self._train_labels()), out=str(out), heatmaps=True,
                              epochs=1, batch_size=self.a.train_batch, sampling="all", device=str(self.device),
                              max_val_exams=2, save_every=10**9, seed=self.a.seed)
            return train_breast(cfg)

        t = time_calls(one, self.device, 0, max(1, min(self.a.repeats, 2)))
        row = t["last"]["history"][0]
        peak = (torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else peak_rss_bytes())
        return {"exams_per_s": row["train_exams_per_s"], "train_exams": row["train_exams"],
                "epoch_seconds": t["times"], "batch": self.a.train_batch, "peak_memory_bytes": int(peak),
                "loss": row["train_loss"]}

    def _train_labels(self) -> Path:
        """The labels with every exam in train except two in val (one epoch over as many as possible)."""
        path = self.root / "train_labels.csv"
        with open(self.labels, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for i, r in enumerate(rows):
            r["split"] = "val" if i < (1 if len(rows) <= 3 else 2) else "train"
        from mammokit.utils.io import write_csv_atomic

        write_csv_atomic(path, rows, list(rows[0]))
        return path


def table(doc: dict) -> str:
    s, out = doc["stages"], []
    if "heatmaps" in s and "rows" in s["heatmaps"]:
        out.append(markdown_table(["heatmaps dtype", "patches/s", "s/exam", "first call s", "max|diff| vs fp32"],
                                  [[r["dtype"], r["patches_per_s"], r["s_per_exam"], r["first_call_s"],
                                    r["max_abs_diff_vs_fp32"]] for r in s["heatmaps"]["rows"]]))
    if "predict" in s and "rows" in s["predict"]:
        out.append(markdown_table(["predict dtype", "s/exam scoring", "s/exam call", "max|diff| vs fp32"],
                                  [[r["dtype"], r["s_per_exam_scoring"], r["s_per_exam_call"], r["max_abs_diff_vs_fp32"]]
                                   for r in s["predict"]["rows"]]))
    if "pipeline" in s and "exams_per_s" in s["pipeline"]:
        p = s["pipeline"]
        out.append(f"pipeline (mammokit run): {p['exams_per_s']:.4g} exams/s; stages "
                   + ", ".join(f"{k} {v:.3g} s" for k, v in p["stage_seconds"].items() if v is not None))
    if "train" in s and "exams_per_s" in s["train"]:
        t = s["train"]
        out.append(f"train (view-wise image+heatmaps, batch {t['batch']}): {t['exams_per_s']:.4g} exams/s, "
                   f"peak memory {t['peak_memory_bytes'] / 2**30:.2f} GiB")
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.quick:
        a.repeats, a.warmup, a.tta = 1, 0, min(a.tta, 2)
    stages = [x for x in a.stages.split(",") if x]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        sys.exit(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    with tempfile.TemporaryDirectory(prefix="mammokit-bench-") as tmp:
        root = Path(a.keep) if a.keep else Path(tmp)
        b = Bench(a, root)
        b.prepare()
        doc: dict[str, Any] = {"schema": SCHEMA, "environment": environment(b.device), "settings": vars(a),
                               "preset": b.preset.to_dict(), "sizes": b.sizes(), "stages": {},
                               "targets": CUDA_TARGETS if b.device.type == "cuda" else {}}
        for stage in stages:
            print(f"== {stage}", flush=True)
            doc["stages"][stage] = getattr(b, stage)()
        print(table(doc))
        output = Path(a.output) if a.output else RESULTS / f"{device_name(b.device)}-{b.preset.name.replace(':', '')}.json"
        write_result(doc, output)
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
