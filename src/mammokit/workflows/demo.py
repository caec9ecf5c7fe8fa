"""``mammokit demo``: the whole system of Wu et al. (2019) on synthetic data, on a CPU.

Stages (each through the library's public functions, each skipped when its outputs exist, so a
re-run resumes where a killed run stopped and a finished demo re-prints its summary in seconds):

 1. synth       synthetic screening exams with lesion masks          ``OUT/data``
 2. preprocess  crop + optimal window centres                        ``OUT/work``
 3. patch       patch classifier (malignant / benign / normal)       ``OUT/runs/patch``
 4. heatmaps    dense sliding-window heatmaps of every image         ``OUT/work/heatmaps``
 5. birads      BI-RADS pretraining of the view-wise model           ``OUT/runs/birads``
 6. image-only  view-wise cancer models (ensemble), BI-RADS init     ``OUT/runs/image_only``
 7. image+hm    view-wise image + heatmaps models (ensemble)         ``OUT/runs/image_heatmaps``
 8. predict     the test split, with test-time augmentation          ``OUT/predictions``
 9. evaluate    breast-level ROC / PR AUC with bootstrap CIs         ``OUT/evaluation``
10. readers     reader study against synthetic readers               ``OUT/evaluation``
11. report      ``OUT/report.html``, ``OUT/summary.json`` and a Table-III-like summary

The demo's training settings are not the paper's: a few hundred small exams and minutes of CPU
time instead of 200,000 full-resolution exams and days of GPUs need a higher learning rate and a
fixed small number of epochs. They are recorded in ``summary.json`` (``settings``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammokit.config import Preset, scaled_preset
from mammokit.errors import UsageError
from mammokit.utils.device import resolve_device
from mammokit.utils.io import write_csv_atomic, write_json_atomic
from mammokit.utils.log import get_logger

log = get_logger(__name__)

SUMMARY_FORMAT = "mammokit.demo.summary"
MODEL_ROWS = (
    ("image_only_single", "image-only", "view-wise", "single"),
    ("image_only_ensemble", "image-only", "view-wise", "ensemble"),
    ("image_heatmaps_single", "image+heatmaps", "view-wise", "single"),
    ("image_heatmaps_ensemble", "image+heatmaps", "view-wise", "ensemble"),
)


@dataclass(frozen=True)
class DemoSettings:
    """Everything that sizes the demo. ``FULL`` and ``QUICK`` are the two presets.

    Attributes:
        scale: pixel scale of the synthetic data and of the preset (1.0 = the paper's 85 um).
        n_exams: synthetic exams (split 60/20/20 by patient into train / val / test).
        cancer_rate / benign_rate: share of exams with a malignant / benign finding (enriched, as
            for any study with few exams).
        occult_rate_malignant / occult_rate_benign: share of occult findings (the paper's Table I:
            13 % / 43 %; the demo uses 5 % malignant: with a few hundred exams every occult
            cancer in the test split weighs heavily on the AUC).
        malignant_mix / malignant_contrast: demo-specific synthetic data settings (the generator's
            defaults are mass 50 / calcification 25 / asymmetry 15 / distortion 10 and contrast
            1.0): at 1/16 scale calcification particles are sub-pixel (a cluster is as invisible
            as an occult finding) and spicules vanish, so the demo draws no malignant
            calcifications, mostly masses, and draws malignant findings 1.6x denser.
        patch_epochs, patch_per_class, patch_lr: patch classifier training.
        heatmap_stride: sliding-window stride of the heatmaps in pixels (the preset's is 70 x
            scale = 4 px at scale 1/16; the demo uses half the patch side to save CPU time).
        birads_epochs, cancer_epochs: breast-level training epochs (fixed; the best validation
            epoch is kept, as with early stopping).
        lr: Adam learning rate of the breast-level models (paper: 1e-5).
        batch_size: exams per step of the cancer models (paper: 4).
        ensemble: members per ensemble (paper: 5); the "single" row is member 0.
        tta: test-time augmentation draws (paper: 10).
        bootstrap: bootstrap replicates of the 95 % CIs.
        n_readers: synthetic readers (paper: 14).
    """

    name: str
    scale: float
    n_exams: int
    cancer_rate: float = 0.3
    benign_rate: float = 0.3
    occult_rate_malignant: float = 0.05
    occult_rate_benign: float = 0.43
    malignant_mix: tuple = (("mass", 80), ("asymmetry", 10), ("distortion", 10))
    malignant_contrast: float = 1.25
    patch_epochs: int = 12
    patch_per_class: int = 1024
    patch_lr: float = 1e-3
    heatmap_stride: int = 8
    birads_epochs: int = 2
    cancer_epochs: int = 5
    lr: float = 5e-4
    batch_size: int = 8
    ensemble: int = 2
    tta: int = 4
    bootstrap: int = 1000
    n_readers: int = 14

    def preset(self) -> Preset:
        """The demo's preset: the paper's sizes times ``scale``, with the demo's heatmap stride, so
        the checkpoints it trains record the stride their heatmaps were made with (and
        ``mammokit run --model ... --patch-model ...`` on new exams needs no preset flag)."""
        base = scaled_preset(f"demo{self.scale:g}", self.scale, patch_arch="patchnet_small")
        return dataclasses.replace(base, heatmap_stride=self.heatmap_stride)

    def to_dict(self) -> dict:
        # Through JSON so that a dict read back from a file compares equal (tuples -> lists).
        return json.loads(json.dumps(dataclasses.asdict(self)))


FULL = DemoSettings(name="full", scale=0.0625, n_exams=360, cancer_rate=0.35)
QUICK = DemoSettings(
    name="quick", scale=0.0625, n_exams=40, cancer_rate=0.4, benign_rate=0.5,
    patch_epochs=2, patch_per_class=128, heatmap_stride=16, birads_epochs=1, cancer_epochs=1, ensemble=2,
    tta=2, bootstrap=100, n_readers=5,
)


def settings_for(quick: bool) -> DemoSettings:
    return QUICK if quick else FULL


# ---------------------------------------------------------------------------------- helpers


class _Stages:
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


def _done_marker(folder: Path) -> Path:
    return folder / ".demo-done.json"


def _is_done(folder: Path, settings: dict) -> bool:
    marker = _done_marker(folder)
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("settings") == settings
    except (OSError, ValueError):
        return False


def _mark_done(folder: Path, settings: dict, **info: Any) -> None:
    write_json_atomic(_done_marker(folder), {"settings": settings, **info})


def _split_ids(labels_csv: Path, split: str) -> list[str]:
    import csv

    with open(labels_csv, newline="", encoding="utf-8") as fh:
        return [row["exam_id"] for row in csv.DictReader(fh) if row.get("split") == split]


# ---------------------------------------------------------------------------------- stages


def _synth(data: Path, s: DemoSettings, seed: int, workers: int) -> None:
    from mammokit.synth import generate

    generate(
        data, n_exams=s.n_exams, seed=seed, scale=s.scale, cancer_rate=s.cancer_rate, benign_rate=s.benign_rate,
        occult_rate_malignant=s.occult_rate_malignant, occult_rate_benign=s.occult_rate_benign, workers=workers,
        malignant_mix=dict(s.malignant_mix), malignant_contrast=s.malignant_contrast,
    )
    _mark_done(data, {"stage": "synth", **s.to_dict(), "seed": seed})


def _preprocess(data: Path, work: Path, s: DemoSettings, workers: int) -> None:
    from mammokit.preprocess.pipeline import preprocess

    report = preprocess(data / "manifest.csv", work, preset=s.preset(), workers=workers)
    if report.failures:
        log.warning("%d image(s) failed preprocessing; see %s", len(report.failures), work / "preprocess_failures.csv")
    _mark_done(work, {"stage": "preprocess", "scale": s.scale, "n_exams": s.n_exams})


def _train_patch(work: Path, data: Path, run: Path, s: DemoSettings, seed: int, device: str) -> str:
    from mammokit.training.patch import resume_patch, train_patch

    if (run / "state.pt").exists():
        result = resume_patch(run, device=device)
    else:
        result = train_patch(
            work, data / "masks", data / "labels.csv", run, epochs=s.patch_epochs, patches_per_class=s.patch_per_class,
            lr=s.patch_lr, patience=max(s.patch_epochs, 1), seed=seed, device=device,
        )
    _mark_done(run, {"stage": "patch"}, best_score=result.get("best_score"), best_epoch=result.get("best_epoch"))
    return result["checkpoint"]


def _heatmaps(work: Path, patch_ckpt: Path, s: DemoSettings, seed: int, device: str) -> None:
    from mammokit.inference.heatmaps import make_heatmaps

    summary = make_heatmaps(work, patch_ckpt, stride=s.heatmap_stride, device=device, seed=seed)
    if summary["failed"]:
        raise RuntimeError(f"{work}: heatmaps failed for {summary['failed']} image(s)")
    _mark_done(work / "heatmaps", {"stage": "heatmaps", "patch_model": str(patch_ckpt)})


def _train_breast(run: Path, s: DemoSettings, seed: int, device: str, **fields: Any) -> dict:
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
    _mark_done(run, {"stage": "train", "out": str(run)}, checkpoint=result.get("checkpoint"),
               best_score=result.get("best_score"))
    return result


def _predict(work: Path, models: dict[str, list[Path]], out_dir: Path, s: DemoSettings, seed: int, device: str) -> None:
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


def _test_labels(labels_csv: Path, target: Path) -> None:
    import csv

    with open(labels_csv, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r.get("split") == "test"]
        columns = reader.fieldnames
    write_csv_atomic(target, rows, columns)


def _evaluate(pred_dir: Path, test_labels: Path, eval_dir: Path, s: DemoSettings, seed: int):
    from mammokit.evaluation.evaluate import evaluate

    names = [key for key, *_ in MODEL_ROWS]
    return evaluate([pred_dir / f"{n}.csv" for n in names], test_labels, population="all",
                    bootstrap=s.bootstrap, seed=seed, out_dir=eval_dir, names=names)


def _reader_study(data: Path, test_ids: list[str], pred: Path, test_labels: Path, eval_dir: Path,
                  readers_csv: Path, s: DemoSettings, seed: int):
    from mammokit.evaluation.reader_study import reader_study
    from mammokit.synth.readers import ReaderSettings, synthetic_readers, write_readers

    rows = synthetic_readers(data / "findings.json", test_ids, seed=seed,
                             settings=ReaderSettings(n_readers=s.n_readers))
    write_readers(readers_csv, rows)
    return reader_study(readers_csv, pred, test_labels, scale=1, lam=0.5, out_dir=eval_dir,
                        model_name="image+heatmaps ensemble")


# ---------------------------------------------------------------------------------- summary


def _metric(task_result) -> dict:
    m = task_result.roc_auc
    return {"auc": m.value, "ci": [m.ci_low, m.ci_high], "n_positive": task_result.n_positive,
            "n_breasts": task_result.n_breasts}


def build_summary(evaluation, study, s: DemoSettings, seed: int, times: dict, started: float) -> dict:
    """The demo's figures (what ``summary.json`` holds)."""
    models = {}
    for key, inputs, variant, kind in MODEL_ROWS:
        m = evaluation.model(key)
        models[key] = {
            "input": inputs, "variant": variant, "kind": kind,
            "screening": {t: _metric(m.populations["screening"][t]) for t in ("malignant", "benign")},
            "biopsied": {t: _metric(m.populations["biopsied"][t]) for t in ("malignant", "benign")},
        }
    rs = study.summary
    readers = {
        "n_readers": len(study.readers), "n_breasts": study.n_breasts, "n_positive": study.n_positive,
        "readers_auc_mean": rs.get("readers_roc_auc_mean"), "readers_auc_min": rs.get("readers_roc_auc_min"),
        "readers_auc_max": rs.get("readers_roc_auc_max"), "model_auc": study.model_roc_auc,
        "hybrid_auc_mean": rs.get("hybrid_roc_auc_mean"), "lambda": study.lam,
        "readers_pr_auc_mean": rs.get("readers_pr_auc_mean"), "model_pr_auc": study.model_pr_auc,
        "hybrid_pr_auc_mean": rs.get("hybrid_pr_auc_mean"),
        "per_reader_auc": {r.reader: r.roc_auc for r in study.readers},
    }
    ih = models["image_heatmaps_ensemble"]["screening"]["malignant"]["auc"]
    io_ = models["image_only_ensemble"]["screening"]["malignant"]["auc"]
    ih1 = models["image_heatmaps_single"]["screening"]["malignant"]["auc"]
    io1 = models["image_only_single"]["screening"]["malignant"]["auc"]
    claims = {
        "heatmaps_ensemble_malignant_auc_at_least_0.90": bool(ih is not None and ih >= 0.90),
        "heatmaps_beat_image_only_ensemble": bool(ih is not None and io_ is not None and ih > io_),
        "heatmaps_beat_image_only_single": bool(ih1 is not None and io1 is not None and ih1 > io1),
        "hybrid_beats_average_reader": bool(
            readers["hybrid_auc_mean"] is not None and readers["readers_auc_mean"] is not None
            and readers["hybrid_auc_mean"] > readers["readers_auc_mean"]),
    }
    return {
        "format": SUMMARY_FORMAT, "version": 1,
        "note": "demo settings, not the paper's: synthetic data, small images, few exams and epochs, "
                "higher learning rate; figures measured on the synthetic test split",
        "settings": {**s.to_dict(), "seed": seed, "preset": s.preset().to_dict()},
        "test_split": {"n_exams": evaluation.population_sizes.get("screening"),
                       "n_biopsied_exams": evaluation.population_sizes.get("biopsied")},
        "models": models, "reader_study": readers, "claims": claims,
        "stages": times, "seconds": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }


def _fmt_auc(m: dict) -> str:
    if m["auc"] is None:
        return "n/a"
    lo, hi = m["ci"]
    ci = f" ({lo:.3f}-{hi:.3f})" if lo is not None and hi is not None else ""
    return f"{m['auc']:.3f}{ci}"


def format_summary(summary: dict) -> str:
    """A Table-III-like text table of ``summary``."""
    lines = [
        "Breast-level AUC on the synthetic test split (screening population), 95% bootstrap CI",
        f"({summary['test_split']['n_exams']} test exams; {summary['note']})",
        "",
        f"{'input':<16}{'variant':<11}{'model':<10}{'malignant':<24}{'benign':<24}",
    ]
    for key, inputs, variant, kind in MODEL_ROWS:
        m = summary["models"][key]["screening"]
        lines.append(f"{inputs:<16}{variant:<11}{kind:<10}{_fmt_auc(m['malignant']):<24}{_fmt_auc(m['benign']):<24}")
    r = summary["reader_study"]

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines += [
        "",
        f"Reader study ({r['n_readers']} synthetic readers, {r['n_breasts']} breasts, {r['n_positive']} malignant):",
        f"  readers' AUC mean {f(r['readers_auc_mean'])} (range {f(r['readers_auc_min'])}-{f(r['readers_auc_max'])})",
        f"  model AUC {f(r['model_auc'])} (image+heatmaps ensemble)",
        f"  hybrid (lambda {r['lambda']:g}) mean AUC {f(r['hybrid_auc_mean'])}",
        "",
        "Claims: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in summary["claims"].items()),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- driver


def _finished_summary(out: Path, s: DemoSettings, seed: int) -> dict | None:
    """The summary of a finished demo in ``out`` made with these settings, else None."""
    path = out / "summary.json"
    if not (path.is_file() and (out / "report.html").is_file()):
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    settings = {k: v for k, v in summary.get("settings", {}).items() if k not in ("seed", "preset")}
    if summary.get("format") != SUMMARY_FORMAT or settings != s.to_dict() or summary["settings"].get("seed") != seed:
        return None
    return summary


def run_demo(out: str | Path = "demo_out", quick: bool = False, seed: int = 0, device: str = "auto",
             workers: int | None = None, threads: int | None = None, echo: bool = True) -> dict:
    """Run the whole demo into ``out`` and return the summary (also ``out/summary.json``).

    Args:
        out: output folder; a re-run skips every stage whose outputs exist.
        quick: the small preset (a few minutes; the tests use it) instead of the full one.
        seed: seeds the data set, every training run, TTA, the bootstrap and the readers.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``.
        workers: processes for data generation and preprocessing (default: CPU count, max 4).
        threads: torch CPU threads (default: torch's, one per core). On a machine shared with
            other jobs, 1 is often several times faster (threads that wait on busy cores spin).
        echo: print stage banners and the final table on stdout.
    """
    s = settings_for(quick)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_info = out / "demo.json"
    if run_info.is_file():
        previous = json.loads(run_info.read_text(encoding="utf-8"))
        if previous.get("settings") != s.to_dict() or previous.get("seed") != seed:
            raise UsageError(
                f"{out}: holds a demo made with other settings ({previous.get('settings', {}).get('name')}, "
                f"seed {previous.get('seed')}); choose another --out or delete it")
    write_json_atomic(run_info, {"settings": s.to_dict(), "seed": seed})
    workers = workers or min(4, os.cpu_count() or 1)
    dev = str(resolve_device(device))
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    started = time.perf_counter()
    data, work, runs = out / "data", out / "work", out / "runs"
    pred_dir, eval_dir = out / "predictions", out / "evaluation"
    stages = _Stages(11, echo=echo)
    done_summary = _finished_summary(out, s, seed)
    if done_summary is not None:
        # Everything is there: re-print the summary instead of re-bootstrapping (make demo twice).
        done_summary["stages"] = {k: {"seconds": 0.0, "skipped": True} for k in done_summary.get("stages", {})}
        if echo:
            print(f"{out}: the demo is complete (delete {out / 'summary.json'} to recompute the evaluation)\n")
            print(format_summary(done_summary))
            print(f"\nsummary: {out / 'summary.json'}\nreport:  {done_summary.get('report')}", flush=True)
        return done_summary
    if echo:
        print(f"mammokit demo ({s.name}): {s.n_exams} synthetic exams at scale {s.scale:g}, seed {seed}, "
              f"device {dev}; output in {out}", flush=True)

    synth_key = {"stage": "synth", **s.to_dict(), "seed": seed}
    stages.run("synth", f"synthetic data: {s.n_exams} exams", _is_done(data, synth_key), _synth, data, s, seed, workers)
    stages.run("preprocess", "preprocess: crop + optimal centres",
               _is_done(work, {"stage": "preprocess", "scale": s.scale, "n_exams": s.n_exams}),
               _preprocess, data, work, s, workers)
    patch_run = runs / "patch"
    stages.run("patch", "train the patch classifier", _is_done(patch_run, {"stage": "patch"}),
               _train_patch, work, data, patch_run, s, seed, dev)
    patch_ckpt = patch_run / "best.safetensors"
    stages.run("heatmaps", "heatmaps (malignant, benign) of every image",
               _is_done(work / "heatmaps", {"stage": "heatmaps", "patch_model": str(patch_ckpt)}),
               _heatmaps, work, patch_ckpt, s, seed, dev)
    labels = data / "labels.csv"
    common = {"workdir": str(work), "labels": str(labels), "variant": "view_wise"}
    birads_run = runs / "birads"
    stages.run("birads", "BI-RADS pretraining (view-wise, image-only)",
               _is_done(birads_run, {"stage": "train", "out": str(birads_run)}),
               _train_breast, birads_run, s, seed, dev, task="birads", epochs=s.birads_epochs, batch_size=s.batch_size,
               patience=s.birads_epochs, **common)
    init = str(birads_run / "best.safetensors")
    trained = {}
    for key, heat, title in (("image_only", False, "image-only"), ("image_heatmaps", True, "image+heatmaps")):
        run = runs / key
        stages.run(key, f"{title} view-wise models ({s.ensemble}-member ensemble, BI-RADS init)",
                   _is_done(run, {"stage": "train", "out": str(run)}),
                   _train_breast, run, s, seed, dev, task="cancer", heatmaps=heat, init=init,
                   epochs=s.cancer_epochs, batch_size=s.batch_size, patience=s.cancer_epochs, ensemble=s.ensemble,
                   **common)
        trained[key] = run
    models = {
        "image_only_single": [trained["image_only"] / "member0" / "best.safetensors"],
        "image_only_ensemble": [trained["image_only"] / "ensemble.safetensors"],
        "image_heatmaps_single": [trained["image_heatmaps"] / "member0" / "best.safetensors"],
        "image_heatmaps_ensemble": [trained["image_heatmaps"] / "ensemble.safetensors"],
    }
    test_ids = _split_ids(labels, "test")
    stages.run("predict", f"predict {len(test_ids)} test exams (TTA {s.tta}) with 4 models",
               all((pred_dir / f"{k}.csv").is_file() for k in models),
               _predict, work, models, pred_dir, s, seed, dev)
    test_labels = out / "test_labels.csv"
    _test_labels(labels, test_labels)
    evaluation = stages.run("evaluate", "evaluate (bootstrap CIs)", False, _evaluate, pred_dir, test_labels, eval_dir, s, seed)
    study = stages.run("readers", f"reader study ({s.n_readers} synthetic readers)", False, _reader_study, data, test_ids,
                       pred_dir / "image_heatmaps_ensemble.csv", test_labels, eval_dir, out / "readers.csv", s, seed)
    summary = build_summary(evaluation, study, s, seed, stages.times, started)
    write_json_atomic(out / "summary.json", summary)
    (eval_dir / "summary.md").unlink(missing_ok=True)

    def _report():
        from mammokit.report.html import write_report

        return write_report(work, out / "report.html", predictions=pred_dir / "image_heatmaps_ensemble.csv",
                            labels=test_labels, eval_dir=eval_dir, max_exams=12 if quick else 30)

    report = stages.run("report", "HTML report", False, _report)
    summary["stages"] = stages.times
    summary["seconds"] = round(time.perf_counter() - started, 1)
    # Relative to the output folder, so the summary stays valid when the folder moves.
    summary["report"] = Path(report).name
    write_json_atomic(out / "summary.json", summary)
    if echo:
        print()
        print(format_summary(summary))
        print(f"\nsummary: {out / 'summary.json'}\nreport:  {report}\n(total {summary['seconds']:.0f} s)", flush=True)
    return summary
