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
11. localisation  benign / malignant heatmap inside lesion masks vs elsewhere (test split)
12. report      ``OUT/report.html``, ``OUT/summary.json`` and a Table-III-like summary; the
                README's claims decided by paired bootstrap CIs (``claims``)

The demo's training settings are not the paper's: a few hundred small exams and minutes of CPU
time instead of 200,000 full-resolution exams and days of GPUs need a higher learning rate and a
fixed small number of epochs. They are recorded in ``summary.json`` (``settings``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mammokit.config import Preset, scaled_preset
from mammokit.errors import UsageError
from mammokit.evaluation.localisation import heatmap_localisation
from mammokit.utils.device import resolve_device
from mammokit.utils.io import write_json_atomic
from mammokit.utils.log import get_logger
from mammokit.workflows.demo_summary import MODEL_ROWS, SUMMARY_FORMAT, build_summary, format_summary
from mammokit.workflows.stages import (
    Stages,
    heatmaps_stage,
    is_done,
    patch_stage,
    predict_stage,
    preprocess_stage,
    split_ids,
    synth_stage,
    train_stage,
    write_split_labels,
)

__all__ = ["FULL", "QUICK", "MODEL_ROWS", "DemoSettings", "format_summary", "run_demo", "settings_for"]

log = get_logger(__name__)



@dataclass(frozen=True)
class DemoSettings:
    """Everything that sizes the demo. ``FULL`` and ``QUICK`` are the two presets.

    Attributes:
        scale: pixel scale of the synthetic data and of the preset (1.0 = the paper's 85 um).
        n_exams: synthetic exams (split 60/20/20 by patient into train / val / test).
        cancer_rate / benign_rate: share of exams with a malignant / benign finding (enriched, as
            for any study with few exams).
        occult_rate_malignant / occult_rate_benign: share of occult findings (the paper's Table I:
            13 % / 43 %; the demo uses 5 % / 10 %: with a few hundred exams every occult finding in
            the test split weighs heavily on the AUC, and with 43 % occult benign findings the
            benign AUC cannot exceed ~0.76 even for a perfect reader of the visible ones).
        malignant_mix / malignant_contrast: demo-specific synthetic data settings (the generator's
            defaults are mass 50 / calcification 25 / asymmetry 15 / distortion 10 and contrast
            1.0): at 1/16 scale calcification particles are sub-pixel (a cluster is as invisible
            as an occult finding) and spicules vanish, so the demo draws no malignant
            calcifications, mostly masses, and draws malignant findings 1.25x denser.
        benign_mix: benign finding kinds. Measured at 1/16 scale on the demo's data: benign
            asymmetries and distortions add 140-170 grey levels, a fifth of the tissue texture's
            standard deviation (~700), so they are invisible in practice; the demo draws the two
            benign kinds that stay visible, circumscribed masses and coarse calcifications (also
            the paper's two commonest benign kinds, 87 and 102 of 231).
        splits: train / val / test fractions by patient (the demo enlarges the test split to
            >= 200 exams so the claims' CIs are narrow, keeping ~220 training exams).
        hard_negative_fraction: patch classifier normal patches centred on dense tissue.
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
    occult_rate_benign: float = 0.10
    malignant_mix: tuple = (("mass", 80), ("asymmetry", 10), ("distortion", 10))
    malignant_contrast: float = 1.25
    benign_mix: tuple = (("calcification", 50), ("mass", 50))
    splits: tuple = (0.6, 0.2, 0.2)
    patch_epochs: int = 12
    patch_per_class: int = 1024
    patch_lr: float = 1e-3
    hard_negative_fraction: float = 0.5
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


FULL = DemoSettings(name="full", scale=0.0625, n_exams=520, cancer_rate=0.35, splits=(0.42, 0.14, 0.44))
QUICK = DemoSettings(
    name="quick", scale=0.0625, n_exams=40, cancer_rate=0.4, benign_rate=0.5,
    patch_epochs=2, patch_per_class=128, heatmap_stride=16, birads_epochs=1, cancer_epochs=1, ensemble=2,
    tta=2, bootstrap=100, n_readers=5,
)


def settings_for(quick: bool) -> DemoSettings:
    return QUICK if quick else FULL


# ---------------------------------------------------------------------------------- demo-only stages


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
    stages = Stages(12, echo=echo)
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
    stages.run("synth", f"synthetic data: {s.n_exams} exams", is_done(data, synth_key), synth_stage, data, s, seed, workers)
    stages.run("preprocess", "preprocess: crop + optimal centres",
               is_done(work, {"stage": "preprocess", "scale": s.scale, "n_exams": s.n_exams}),
               preprocess_stage, data, work, s, workers)
    patch_run = runs / "patch"
    stages.run("patch", "train the patch classifier", is_done(patch_run, {"stage": "patch"}),
               patch_stage, work, data, patch_run, s, seed, dev)
    patch_ckpt = patch_run / "best.safetensors"
    stages.run("heatmaps", "heatmaps (malignant, benign) of every image",
               is_done(work / "heatmaps", {"stage": "heatmaps", "patch_model": str(patch_ckpt)}),
               heatmaps_stage, work, patch_ckpt, s, seed, dev)
    labels = data / "labels.csv"
    common = {"workdir": str(work), "labels": str(labels), "variant": "view_wise"}
    birads_run = runs / "birads"
    stages.run("birads", "BI-RADS pretraining (view-wise, image-only)",
               is_done(birads_run, {"stage": "train", "out": str(birads_run)}),
               train_stage, birads_run, s, seed, dev, task="birads", epochs=s.birads_epochs, batch_size=s.batch_size,
               patience=s.birads_epochs, **common)
    init = str(birads_run / "best.safetensors")
    trained = {}
    for key, heat, title in (("image_only", False, "image-only"), ("image_heatmaps", True, "image+heatmaps")):
        run = runs / key
        stages.run(key, f"{title} view-wise models ({s.ensemble}-member ensemble, BI-RADS init)",
                   is_done(run, {"stage": "train", "out": str(run)}),
                   train_stage, run, s, seed, dev, task="cancer", heatmaps=heat, init=init,
                   epochs=s.cancer_epochs, batch_size=s.batch_size, patience=s.cancer_epochs, ensemble=s.ensemble,
                   **common)
        trained[key] = run
    models = {
        "image_only_single": [trained["image_only"] / "member0" / "best.safetensors"],
        "image_only_ensemble": [trained["image_only"] / "ensemble.safetensors"],
        "image_heatmaps_single": [trained["image_heatmaps"] / "member0" / "best.safetensors"],
        "image_heatmaps_ensemble": [trained["image_heatmaps"] / "ensemble.safetensors"],
    }
    test_ids = split_ids(labels, "test")
    stages.run("predict", f"predict {len(test_ids)} test exams (TTA {s.tta}) with 4 models",
               all((pred_dir / f"{k}.csv").is_file() for k in models),
               predict_stage, work, models, pred_dir, s, seed, dev)
    test_labels = out / "test_labels.csv"
    write_split_labels(labels, test_labels)
    evaluation = stages.run("evaluate", "evaluate (bootstrap CIs)", False, _evaluate, pred_dir, test_labels, eval_dir, s, seed)
    study = stages.run("readers", f"reader study ({s.n_readers} synthetic readers)", False, _reader_study, data, test_ids,
                       pred_dir / "image_heatmaps_ensemble.csv", test_labels, eval_dir, out / "readers.csv", s, seed)
    localisation = stages.run("localisation", "heatmap localisation on the test split", False, heatmap_localisation,
                              work, data / "masks", test_ids)
    summary = build_summary(evaluation, study, s, seed, stages.times, started, pred_dir=pred_dir, labels=test_labels,
                            readers_csv=out / "readers.csv", localisation=localisation)
    write_json_atomic(out / "summary.json", summary)
    (eval_dir / "summary.md").unlink(missing_ok=True)

    def _report():
        from mammokit.report.html import write_report

        return write_report(work, out / "report.html", predictions=pred_dir / "image_heatmaps_ensemble.csv",
                            labels=test_labels, eval_dir=eval_dir, max_exams=12 if quick else 30,
                            sections=[("Summary, heatmap localisation and claims", format_summary(summary))])

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
