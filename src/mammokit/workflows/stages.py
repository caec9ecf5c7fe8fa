"""The stages the workflows (``demo``, ``reproduce table3``) share: banners with timings, done
markers that make every stage resumable, and one function per stage over the library's public
functions. A stage's ``.demo-done.json`` marker records the settings it was made with; a stage
whose marker matches is skipped, so a killed run resumes where it stopped.

``s`` below is a :class:`mammokit.workflows.demo.DemoSettings` (or anything with its fields).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mammokit.utils.io import write_csv_atomic, write_json_atomic
from mammokit.utils.log import get_logger

# The settings object ``s`` is typed Any: DemoSettings lives in workflows.demo, which imports this
# module (a type-only import back would be an import cycle).
DemoSettings = Any

log = get_logger(__name__)

class Stages:
    """Banners with elapsed times; records each stage's seconds and whether it was skipped."""

    def __init__(self, total: int, echo: bool = True) -> None:
        self.total = total
        self.n = 0
        self.t0 = time.perf_counter()
        self.times: dict[str, dict[str, Any]] = {}
        self.echo = echo

    def run(self, key: str, title: str, done: bool, fn, *args, **kwargs):
        self.n += 1
        head = f"[{self.n}/{self.total}] {title}"
        start = time.perf_counter()
        if done:
            self._print(f"{head}: already done, skipped")
            self.times[key] = {"seconds": 0.0, "skipped": True}
            return None
        self._print(f"{head} ... (elapsed {self._fmt(start - self.t0)})")
        out = fn(*args, **kwargs)
        secs = time.perf_counter() - start
        self.times[key] = {"seconds": round(secs, 1), "skipped": False}
        self._print(f"{head}: done in {self._fmt(secs)} (elapsed {self._fmt(time.perf_counter() - self.t0)})")
        return out

    def _print(self, text: str) -> None:
        log.info(text)
        if self.echo:
            print(f"== {text}", flush=True)

    @staticmethod
    def _fmt(seconds: float) -> str:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m}m{s:02d}s"


def done_marker(folder: Path) -> Path:
    return folder / ".demo-done.json"


def is_done(folder: Path, settings: dict) -> bool:
    marker = done_marker(folder)
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("settings") == settings
    except (OSError, ValueError):
        return False


def mark_done(folder: Path, settings: dict, **info: Any) -> None:
    write_json_atomic(done_marker(folder), {"settings": settings, **info})


def split_ids(labels_csv: Path, split: str) -> list[str]:
    import csv

    with open(labels_csv, newline="", encoding="utf-8") as fh:
        return [row["exam_id"] for row in csv.DictReader(fh) if row.get("split") == split]


def synth_stage(data: Path, s: Any, seed: int, workers: int) -> None:
    from mammokit.synth import generate

    generate(
        data, n_exams=s.n_exams, seed=seed, scale=s.scale, cancer_rate=s.cancer_rate, benign_rate=s.benign_rate,
        occult_rate_malignant=s.occult_rate_malignant, occult_rate_benign=s.occult_rate_benign, workers=workers,
        malignant_mix=dict(s.malignant_mix), malignant_contrast=s.malignant_contrast,
        benign_mix=dict(s.benign_mix), splits=tuple(s.splits),
    )
    mark_done(data, {"stage": "synth", **s.to_dict(), "seed": seed})


def preprocess_stage(data: Path, work: Path, s: Any, workers: int) -> None:
    from mammokit.preprocess.pipeline import preprocess

    report = preprocess(data / "manifest.csv", work, preset=s.preset(), workers=workers)
    if report.failures:
        log.warning("%d image(s) failed preprocessing; see %s", len(report.failures), work / "preprocess_failures.csv")
    mark_done(work, {"stage": "preprocess", "scale": s.scale, "n_exams": s.n_exams})


def patch_stage(work: Path, data: Path, run: Path, s: Any, seed: int, device: str) -> str:
    from mammokit.training.patch import resume_patch, train_patch

    if (run / "state.pt").exists():
        result = resume_patch(run, device=device)
    else:
        result = train_patch(
            work, data / "masks", data / "labels.csv", run, epochs=s.patch_epochs, patches_per_class=s.patch_per_class,
            lr=s.patch_lr, patience=max(s.patch_epochs, 1), seed=seed, device=device,
            hard_negative_fraction=s.hard_negative_fraction,
        )
    mark_done(run, {"stage": "patch"}, best_score=result.get("best_score"), best_epoch=result.get("best_epoch"))
    return result["checkpoint"]


def heatmaps_stage(work: Path, patch_ckpt: Path, s: Any, seed: int, device: str) -> None:
    from mammokit.inference.heatmaps import make_heatmaps

    summary = make_heatmaps(work, patch_ckpt, stride=s.heatmap_stride, device=device, seed=seed)
    if summary["failed"]:
        raise RuntimeError(f"{work}: heatmaps failed for {summary['failed']} image(s)")
    mark_done(work / "heatmaps", {"stage": "heatmaps", "patch_model": str(patch_ckpt)})


def train_stage(run: Path, s: Any, seed: int, device: str, **fields: Any) -> dict:
    from mammokit.training.breast import resume_breast, train_breast
    from mammokit.training.config import TrainConfig

    config = TrainConfig(out=str(run), seed=seed, device=device, lr=s.lr, num_workers=0, **fields)
    resume = (run / "config.json").exists()
    if resume:
        result = resume_breast(run, device=device)
    else:
        result = train_breast(config)
    if result.get("stopped"):
        raise RuntimeError(f"{run}: training stopped before the end")
    mark_done(run, {"stage": "train", "out": str(run)}, checkpoint=result.get("checkpoint"),
               best_score=result.get("best_score"))
    return result


def predict_stage(work: Path, models: dict[str, list[Path]], out_dir: Path, s: Any, seed: int, device: str) -> None:
    """Predict the test split with each model (TTA); ``OUT/predictions/<name>.csv``."""
    from mammokit.inference.predict import predict

    for name, paths in models.items():
        target = out_dir / f"{name}.csv"
        if target.is_file():
            log.info("predictions %s exist; skipped", target)
            continue
        result = predict(work, paths, tta=s.tta, seed=seed, device=device, split="test", output=target)
        if result.skipped:
            raise RuntimeError(f"{name}: {len(result.skipped)} test exam(s) could not be scored: {result.skipped[:3]}")
        log.info("%s: %d test exams scored in %.1f s", name, len(result.exam_ids), result.seconds)


def write_split_labels(labels_csv: Path, target: Path, split: str = "test") -> None:
    """The rows of ``labels_csv`` of one split (the evaluation's labels file)."""
    import csv

    with open(labels_csv, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r.get("split") == split]
        columns = reader.fieldnames
    write_csv_atomic(target, rows, columns)
