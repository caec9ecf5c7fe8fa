"""The import pipeline for sets whose lesions are boxes (VinDr-Mammo, EMBED) or not located at
all (RSNA): import -> preprocess -> [train-patch] -> train -> predict -> evaluate, through the
``mammokit`` command at the ``tiny`` preset with the fewest steps that run every stage.

Patch training needs lesion pixels. For box-annotated sets each box of ``boxes.csv`` is filled
into a mask PNG named as ``mammokit import`` names masks (until ``train-patch --boxes`` is
available, this is how boxes reach the patch trainer); RSNA has no lesion locations, so its
pipeline has no patch stage (``patch=False``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mammokit.cli import main


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def masks_from_boxes(data: Path) -> int:
    """Fill every box of ``data/boxes.csv`` into ``data/masks/<exam>_<L|R>_<CC|MLO>_<label>.png``
    at its image's full size; returns the number of mask files written."""
    from mammokit.data.dicom import read_dicom_info
    from mammokit.data.images import write_png8
    from mammokit.data.manifest import image_name

    sizes = {}
    for row in _rows(data / "manifest.csv"):
        info = read_dicom_info(row["path"])
        sizes.setdefault((row["exam_id"], row["view"]), (info.rows, info.columns))
    masks: dict[tuple[str, str, str], np.ndarray] = {}
    for box in _rows(data / "boxes.csv"):
        h, w = sizes[(box["exam_id"], box["view"])]
        mask = masks.setdefault((box["exam_id"], box["view"], box["label"]), np.zeros((h, w), np.uint8))
        x0, y0 = int(np.floor(float(box["x0"]))), int(np.floor(float(box["y0"])))
        x1, y1 = int(np.ceil(float(box["x1"]))), int(np.ceil(float(box["y1"])))
        mask[y0:y1, x0:x1] = 255
    for (exam, view, label), mask in masks.items():
        write_png8(data / "masks" / f"{image_name(exam, view)}_{label}.png", mask)
    return len(masks)


def run_pipeline(fmt: str, root: Path, tmp: Path, patch: bool = True) -> dict:
    """Run every stage; return paths, predictions, labels and the evaluation JSON."""
    data, work, runs = tmp / "data", tmp / "work", tmp / "runs"
    assert main(["import", fmt, str(root), "--out", str(data), "--workers", "1"]) == 0
    assert main(["preprocess", str(data / "manifest.csv"), "--out", str(work), "--preset", "tiny"]) == 0
    n_masks = 0
    if patch:
        n_masks = masks_from_boxes(data)
        assert main(["train-patch", str(work), "--masks", str(data / "masks"), "--labels", str(data / "labels.csv"),
                     "--out", str(runs / "patch"), "--epochs", "1", "--patches-per-class", "8",
                     "--val-patches-per-class", "4", "--batch-size", "8", "--device", "cpu"]) == 0
    assert main(["train", str(work), "--labels", str(data / "labels.csv"), "--out", str(runs / "cancer"),
                 "--epochs", "1", "--batch-size", "2", "--device", "cpu"]) == 0
    preds = tmp / "predictions.csv"
    assert main(["predict", str(work), "--model", str(runs / "cancer" / "best.safetensors"), "--tta", "0",
                 "--device", "cpu", "--split", "test", "--output", str(preds)]) == 0
    assert main(["evaluate", str(preds), "--labels", str(data / "labels.csv"), "--split", "test",
                 "--bootstrap", "0", "--out", str(tmp / "evaluation")]) == 0
    evaluation = json.loads((tmp / "evaluation" / "evaluation.json").read_text())
    return {"data": data, "work": work, "runs": runs, "predictions": _rows(preds), "evaluation": evaluation,
            "labels": _rows(data / "labels.csv"), "masks_from_boxes": n_masks}
