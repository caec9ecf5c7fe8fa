"""The pipeline every importer's fixture goes through: import -> preprocess -> train-patch ->
train -> predict -> evaluate, through the ``mammokit`` command at the ``tiny`` preset with the
fewest steps that still run every stage (the point is that imported data flows, not accuracy)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from mammokit.cli import main


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def run_pipeline(fmt: str, root: Path, tmp: Path, preprocess: tuple[str, ...] = (), has_outlines: bool = True) -> dict:
    """Run every stage; return paths and the evaluation JSON. Asserts each stage's exit status.
    ``preprocess``: extra options of ``mammokit preprocess`` (e.g. a background threshold).
    ``has_outlines=False`` (a set without lesion locations, e.g. CMMD): train-patch must stop
    with a one-line error (exit 2) instead of training on normal patches only; the image-only
    breast-level model is trained as usual."""
    data, work, runs = tmp / "data", tmp / "work", tmp / "runs"
    assert main(["import", fmt, str(root), "--out", str(data), "--workers", "1"]) == 0
    assert main(["preprocess", str(data / "manifest.csv"), "--out", str(work), "--preset", "tiny", *preprocess]) == 0
    status = main(["train-patch", str(work), "--masks", str(data / "masks"), "--labels", str(data / "labels.csv"),
                   "--out", str(runs / "patch"), "--epochs", "1", "--patches-per-class", "8",
                   "--val-patches-per-class", "4", "--batch-size", "8", "--device", "cpu"])
    assert status == (0 if has_outlines else 2)
    assert main(["train", str(work), "--labels", str(data / "labels.csv"), "--out", str(runs / "cancer"),
                 "--epochs", "1", "--batch-size", "2", "--device", "cpu"]) == 0
    ckpt = runs / "cancer" / "best.safetensors"
    preds = tmp / "predictions.csv"
    assert main(["predict", str(work), "--model", str(ckpt), "--tta", "0", "--device", "cpu", "--split", "test",
                 "--output", str(preds)]) == 0
    assert main(["evaluate", str(preds), "--labels", str(data / "labels.csv"), "--split", "test",
                 "--bootstrap", "0", "--out", str(tmp / "evaluation")]) == 0
    evaluation = json.loads((tmp / "evaluation" / "evaluation.json").read_text())
    return {"data": data, "work": work, "runs": runs, "predictions": _rows(preds), "evaluation": evaluation,
            "labels": _rows(data / "labels.csv")}
