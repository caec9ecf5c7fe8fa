"""``mammokit reproduce table3``: every row of the paper's Table III on synthetic data.

Stages (each resumable, as in the demo: a stage whose done marker matches is skipped):

 1. synth / preprocess / patch classifier / heatmaps / BI-RADS pretraining (as the demo)
 2. 10 models, each a K-member ensemble: {image-only, image+heatmaps} x {view-wise, view-wise
    without BI-RADS pretraining, image-wise, breast-wise, joint}     ``OUT/runs/<row>``
 3. predictions of the test split by every member (TTA)             ``OUT/predictions/<row>/``;
    the ensemble's prediction is the members' mean probability (what an ensemble checkpoint
    computes, without predicting twice)
 4. breast-level ROC AUC with exam-bootstrap CIs, screening and biopsied populations; single
    model = mean +- std over the K members; paired bootstrap CIs of image+heatmaps - image-only,
    ensemble - single (mean of the members) and BI-RADS pretrained - not
 5. ``OUT/table3.{md,csv,json}`` and ``OUT/table3.png`` with the paper's values beside ours.
"""

from __future__ import annotations

import csv
import os
import platform
import time
from pathlib import Path

import numpy as np

from mammokit.errors import UsageError
from mammokit.evaluation.bootstrap import bootstrap_ci
from mammokit.evaluation.metrics import roc_auc
from mammokit.evaluation.paired import breast_rows, paired_auc_difference
from mammokit.utils.device import resolve_device
from mammokit.utils.io import write_csv_atomic, write_json_atomic, write_text_atomic
from mammokit.utils.log import get_logger
from mammokit.utils.seed import derive_seed
from mammokit.workflows.demo import DemoSettings
from mammokit.workflows.stages import (
    Stages,
    heatmaps_stage,
    is_done,
    mark_done,
    patch_stage,
    preprocess_stage,
    split_ids,
    synth_stage,
    train_stage,
    write_split_labels,
)
from mammokit.workflows.table3 import INPUTS, POPULATIONS, TASKS, VARIANTS, plot_table3, row_key, table_markdown, table_rows

log = get_logger(__name__)

RESULT_FORMAT = "mammokit.table3"
SCALES = {
    # 1/16 scale, the demo's data recipe; 700 exams split 40/12/48 -> >= 300 test exams, ~290
    # training exams (the demo's size), so the 10 x K trainings fit a CPU in about an hour.
    "demo": DemoSettings(name="table3-demo", scale=0.0625, n_exams=700, cancer_rate=0.35,
                         splits=(0.4, 0.12, 0.48), ensemble=3, tta=2, bootstrap=1000),
    # 1/4 scale (patch 64 px, CC window 669 x 485): hours on a CPU, minutes on a GPU.
    "quarter": DemoSettings(name="table3-quarter", scale=0.25, n_exams=700, cancer_rate=0.35,
                            splits=(0.4, 0.12, 0.48), ensemble=3, tta=4, bootstrap=2000, heatmap_stride=32,
                            patch_epochs=20),
}
TINY = DemoSettings(name="table3-tiny", scale=0.0625, n_exams=36, cancer_rate=0.4, benign_rate=0.5,
                    splits=(0.5, 0.2, 0.3), patch_epochs=1, patch_per_class=64, heatmap_stride=16, birads_epochs=1,
                    cancer_epochs=1, ensemble=2, tta=1, bootstrap=50)
"""What the tests use (every row, every CI, in a minute or two)."""


def table3_settings(scale: str = "demo", exams: int | None = None, members: int | None = None) -> DemoSettings:
    import dataclasses

    if scale not in SCALES and scale != "tiny":
        raise UsageError(f"unknown scale {scale!r}; choose {', '.join(SCALES)}")
    s = TINY if scale == "tiny" else SCALES[scale]
    changes = {}
    if exams is not None:
        if exams < 20:
            raise UsageError(f"--exams must be >= 20, got {exams}")
        changes["n_exams"] = int(exams)
    if members is not None:
        if members < 2:
            raise UsageError(f"--members must be >= 2 (a single model's std needs two), got {members}")
        changes["ensemble"] = int(members)
    return dataclasses.replace(s, **changes) if changes else s


def _model_rows():
    for inputs in INPUTS:
        for variant in VARIANTS:
            yield inputs, variant


def _member_predictions(work: Path, run: Path, target_dir: Path, s: DemoSettings, seed: int, device: str) -> None:
    """``member<k>.csv`` for each member (TTA), then ``ensemble.csv`` = their mean probability."""
    from mammokit.inference.predict import predict

    target_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(s.ensemble):
        target = target_dir / f"member{k}.csv"
        paths.append(target)
        if target.is_file():
            continue
        result = predict(work, [run / f"member{k}" / "best.safetensors"], tta=s.tta, seed=seed, device=device,
                         split="test", output=target)
        if result.skipped:
            raise RuntimeError(f"{run}: {len(result.skipped)} test exam(s) could not be scored: {result.skipped[:3]}")
    _average_predictions(paths, target_dir / "ensemble.csv")


def _average_predictions(paths: list[Path], target: Path) -> None:
    cols = ("left_benign", "right_benign", "left_malignant", "right_malignant")
    tables = []
    for p in paths:
        with open(p, newline="", encoding="utf-8") as fh:
            tables.append({r["exam_id"]: r for r in csv.DictReader(fh)})
    ids = list(tables[0])
    rows = [{"exam_id": e, **{c: f"{np.mean([float(t[e][c]) for t in tables]):.6f}" for c in cols}} for e in ids]
    write_csv_atomic(target, rows, ("exam_id", *cols))


def _cell(pred_dir: Path, labels: Path, pop: str, task: str, s: DemoSettings, seed: int) -> dict:
    """Single (mean +- std over members, with the members' AUCs) and ensemble (AUC, CI)."""
    members = []
    for k in range(s.ensemble):
        _, y, sc, _ = breast_rows(pred_dir / f"member{k}.csv", labels, task, pop)
        members.append(roc_auc(y, sc) if 0 < y.sum() < len(y) else None)
    _, y, sc, groups = breast_rows(pred_dir / "ensemble.csv", labels, task, pop)
    if not 0 < y.sum() < len(y):
        ens = {"auc": None, "ci": [None, None]}
    else:
        ci = bootstrap_ci(y, sc, groups, roc_auc, n_boot=s.bootstrap, seed=derive_seed(seed, "table3", pop))
        ens = {"auc": roc_auc(y, sc), "ci": [ci.low, ci.high]}
    valid = [m for m in members if m is not None]
    single = {"auc": float(np.mean(valid)) if valid else None,
              "std": float(np.std(valid, ddof=1)) if len(valid) > 1 else None, "members": members}
    return {"single": single, "ensemble": {**ens, "n_positive": int(y.sum()), "n_breasts": len(y)}}


def _compare(name: str, task: str, a: list[Path], b: list[Path], labels: Path, s: DemoSettings, seed: int) -> dict:
    """Paired CI of mean AUC(a files) - mean AUC(b files), screening population."""
    ya = [breast_rows(p, labels, task) for p in a]
    yb = [breast_rows(p, labels, task) for p in b]
    y, groups = ya[0][1], ya[0][3]
    base = {"comparison": name, "task": task}
    if not 0 < y.sum() < len(y):
        return {**base, "delta": float("nan"), "ci": [None, None], "verdict": "undetermined"}
    d = paired_auc_difference(y, np.stack([r[2] for r in ya]), np.stack([r[2] for r in yb]), groups,
                              n_boot=s.bootstrap, seed=derive_seed(seed, "table3-paired", name, task))
    return {**base, "delta": d.delta, "ci": [d.low, d.high], "verdict": d.verdict}


def comparisons(pred: Path, labels: Path, s: DemoSettings, seed: int) -> list[dict]:
    """The three claims of the paper, per variant and task."""
    out = []
    ens = lambda inputs, variant: [pred / row_key(inputs, variant) / "ensemble.csv"]  # noqa: E731
    mem = lambda inputs, variant: [pred / row_key(inputs, variant) / f"member{k}.csv" for k in range(s.ensemble)]  # noqa: E731
    for task in TASKS:
        for variant in VARIANTS:
            out.append(_compare(f"image+heatmaps - image-only, {variant} ensemble", task,
                                ens("image+heatmaps", variant), ens("image-only", variant), labels, s, seed))
        for inputs, variant in _model_rows():
            out.append(_compare(f"ensemble - single (member mean), {inputs} {variant}", task,
                                ens(inputs, variant), mem(inputs, variant), labels, s, seed))
        for inputs in INPUTS:
            out.append(_compare(f"BI-RADS pretrained - not, {inputs} view-wise ensemble", task,
                                ens(inputs, "view-wise"), ens(inputs, "view-wise*"), labels, s, seed))
    return out


def run_table3(out: str | Path, scale: str = "demo", exams: int | None = None, members: int | None = None,
               seed: int = 0, device: str = "auto", workers: int | None = None, threads: int | None = None,
               echo: bool = True) -> dict:
    """Run (or resume) the whole Table III reproduction into ``out``; returns ``table3.json``'s dict.

    Args:
        scale: ``demo`` (1/16, ~1 h on 2 CPU cores) or ``quarter`` (1/4); ``tiny`` for tests.
        exams: synthetic exams (default: the scale's; the test split is 48 % of them).
        members: K, models per ensemble (default 3).
    """
    s = table3_settings(scale, exams, members)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_info = out / "table3-settings.json"
    if run_info.is_file():
        import json

        prev = json.loads(run_info.read_text(encoding="utf-8"))
        if prev.get("settings") != s.to_dict() or prev.get("seed") != seed:
            raise UsageError(f"{out}: holds a Table III run with other settings; choose another --out or delete it")
    write_json_atomic(run_info, {"settings": s.to_dict(), "seed": seed})
    workers = workers or min(4, os.cpu_count() or 1)
    dev = str(resolve_device(device))
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    started = time.perf_counter()
    data, work, runs, pred = out / "data", out / "work", out / "runs", out / "predictions"
    rows = list(_model_rows())
    stages = Stages(6 + len(rows) + 1, echo=echo)
    if echo:
        print(f"mammokit reproduce table3 ({s.name}): {s.n_exams} exams, K={s.ensemble}, seed {seed}, "
              f"device {dev}; output in {out}", flush=True)
    stages.run("synth", f"synthetic data: {s.n_exams} exams", is_done(data, {"stage": "synth", **s.to_dict(), "seed": seed}),
               synth_stage, data, s, seed, workers)
    stages.run("preprocess", "preprocess", is_done(work, {"stage": "preprocess", "scale": s.scale, "n_exams": s.n_exams}),
               preprocess_stage, data, work, s, workers)
    patch_run = runs / "patch"
    stages.run("patch", "patch classifier", is_done(patch_run, {"stage": "patch"}), patch_stage, work, data, patch_run,
               s, seed, dev)
    patch_ckpt = patch_run / "best.safetensors"
    stages.run("heatmaps", "heatmaps", is_done(work / "heatmaps", {"stage": "heatmaps", "patch_model": str(patch_ckpt)}),
               heatmaps_stage, work, patch_ckpt, s, seed, dev)
    labels = data / "labels.csv"
    birads = runs / "birads"
    stages.run("birads", "BI-RADS pretraining (view-wise, image-only)", is_done(birads, {"stage": "train", "out": str(birads)}),
               train_stage, birads, s, seed, dev, task="birads", epochs=s.birads_epochs, batch_size=s.batch_size,
               patience=s.birads_epochs, workdir=str(work), labels=str(labels), variant="view_wise")
    test_ids = split_ids(labels, "test")
    for inputs, variant in rows:
        key = row_key(inputs, variant)
        run = runs / key
        pretrained = not variant.endswith("*")
        arch = variant.rstrip("*").replace("-", "_")
        title = f"{inputs} {variant} ({s.ensemble} members{', BI-RADS init' if pretrained else ', no pretraining'})"

        def _train_and_predict(run=run, key=key, inputs=inputs, arch=arch, pretrained=pretrained):
            train_stage(run, s, seed, dev, task="cancer", heatmaps=inputs == "image+heatmaps",
                        init=str(birads / "best.safetensors") if pretrained else None, epochs=s.cancer_epochs,
                        batch_size=s.batch_size, patience=s.cancer_epochs, ensemble=s.ensemble, workdir=str(work),
                        labels=str(labels), variant=arch)
            _member_predictions(work, run, pred / key, s, seed, dev)
            mark_done(pred / key, {"stage": "predict", "row": key})

        stages.run(key, f"{title}: train + predict {len(test_ids)} test exams",
                   is_done(pred / key, {"stage": "predict", "row": key}), _train_and_predict)
    test_labels = out / "test_labels.csv"
    write_split_labels(labels, test_labels)
    result = stages.run("evaluate", "evaluate every row, paired CIs, tables", False, _evaluate, out, pred, test_labels,
                        s, seed, scale, stages, started)
    if echo:
        print(f"\n{out / 'table3.md'} ({result['seconds'] / 60:.1f} min)", flush=True)
    return result


def _evaluate(out: Path, pred: Path, labels: Path, s: DemoSettings, seed: int, scale: str, stages: Stages,
              started: float) -> dict:
    from mammokit.evaluation.tables_io import read_labels

    lab = read_labels(labels)
    biopsied = sum(v == "1" for v in lab.extra.get("biopsied", []))
    rows = []
    for inputs, variant in _model_rows():
        d = pred / row_key(inputs, variant)
        rows.append({"input": inputs, "variant": variant, "pretrained": not variant.endswith("*"),
                     **{pop: {task: _cell(d, labels, pop, task, s, seed) for task in TASKS} for pop in POPULATIONS}})
    result = {
        "format": RESULT_FORMAT, "version": 1, "scale": scale, "seed": seed, "settings": s.to_dict(),
        "test_split": {"n_exams": len(lab.exam_ids), "n_biopsied_exams": biopsied},
        "rows": rows, "comparisons": comparisons(pred, labels, s, seed),
        "stages": stages.times, "seconds": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }
    flat = table_rows(result)
    write_csv_atomic(out / "table3.csv", flat, list(flat[0]))
    write_json_atomic(out / "table3.json", result)
    write_text_atomic(out / "table3.md", table_markdown(result))
    plot_table3(result, out / "table3.png")
    return result
