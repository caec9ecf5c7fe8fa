"""Test fixture: a small, strongly-labelled work folder for exercising the trainers.

Unlike :mod:`mammokit.synth` (realistic synthetic mammograms that go through preprocessing),
this writes an already-preprocessed work folder directly: cropped 16-bit PNGs, ``exams.json``
with window locations and window centres, uncropped lesion masks and a labels CSV. The signal is
deliberately easy, so a trainer that works learns it within a few epochs on the CPU:

* every breast is a noisy half-ellipse against the chest wall (original orientation: left breasts
  chest wall on the left, right breasts on the right), background exactly 0;
* a malignant breast has a bright disc in both its views, a benign breast a dark disc;
* labels: the four cancer columns, ``birads`` (0 = malignant finding, 2 = benign only, 1 = none),
  ``biopsied`` (any finding), ``split`` and ``patient_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammokit.config import LABEL_COLUMNS, VIEWS, Preset, scaled_preset
from mammokit.utils.io import write_csv_atomic
from mammokit.utils.seed import rng_for


def toy_preset(scale: float = 0.05) -> Preset:
    """A preset for toy data: all sizes scaled (0.05: CC window 134 x 97, MLO 149 x 87)."""
    return scaled_preset(f"toy{scale:g}", scale, patch_arch="patchnet_small")


@dataclass
class ToyData:
    workdir: Path
    labels: Path
    masks: Path
    preset: Preset
    exam_ids: list[str]


def _breast(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Chest-wall-left breast image ``[h, w]`` uint16 (0 background)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, ry, rx = h / 2, h * 0.47, w * 0.92
    inside = ((yy - cy) / ry) ** 2 + (xx / rx) ** 2 <= 1.0
    tissue = 18000 + 4000 * rng.standard_normal((h, w)).astype(np.float32)
    tissue = np.clip(tissue, 2000, 60000)
    img = np.where(inside, tissue, 0.0)
    return img.astype(np.uint16)


def _disc(h: int, w: int, center: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def make_toy_workdir(
    out: str | Path,
    n_train: int = 24,
    n_val: int = 12,
    seed: int = 0,
    scale: float = 0.05,
    malignant_fraction: float = 0.34,
    benign_fraction: float = 0.33,
    margin: int = 6,
) -> ToyData:
    """Write ``OUT/work`` (``exams.json``, ``cropped/``), ``OUT/masks`` and ``OUT/labels.csv``.

    Exams cycle through malignant / benign / normal; the finding's side alternates. Cropped
    images are the window size plus a margin; the uncropped image (and its masks) puts the crop at
    an offset recorded in ``window_location``.
    """
    from mammokit.data.examlist import save_exams
    from mammokit.data.images import write_png8, write_png16

    out = Path(out)
    preset = toy_preset(scale)
    work, masks_dir = out / "work", out / "masks"
    (work / "cropped").mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    exams, rows = [], []
    n = n_train + n_val
    for i in range(n):
        rng = rng_for(seed, "toy", i)
        exam_id = f"t{i:03d}"
        kind_u = (i * 0.6180339887) % 1.0  # low-discrepancy: every split gets every kind
        kind = "malignant" if kind_u < malignant_fraction else ("benign" if kind_u < malignant_fraction + benign_fraction else "normal")
        side = "L" if (i // 3) % 2 == 0 else "R"
        exam = {"exam_id": exam_id, "patient_id": f"p{i:03d}", "horizontal_flip": "NO"}
        geometry: dict[str, dict] = {k: {} for k in ("window_location", "best_center", "source_paths")}
        for view in VIEWS:
            h_in, w_in = preset.input_size(view)
            h, w = h_in + 2 * margin, w_in + margin
            img = _breast(h, w, rng)  # chest wall left (model frame)
            mal = np.zeros((h, w), bool)
            ben = np.zeros((h, w), bool)
            if kind != "normal" and view.startswith(side):
                radius = max(3.0, 0.09 * w_in)
                center = (rng.uniform(0.3, 0.7) * h, rng.uniform(0.25, 0.55) * w)
                disc = _disc(h, w, center, radius)
                if kind == "malignant":
                    img[disc] = 52000
                    mal = disc
                else:
                    img[disc] = 6000
                    ben = disc
            if view.startswith("R"):  # original orientation: right breasts face the other way
                img, mal, ben = img[:, ::-1], mal[:, ::-1], ben[:, ::-1]
            name = f"{exam_id}_{view.replace('-', '_')}"
            write_png16(work / "cropped" / f"{name}.png", np.ascontiguousarray(img))
            top, left = 5 + int(rng.integers(0, 5)), 3 + int(rng.integers(0, 5))
            H, W = h + top + 4, w + left + 4
            for cls, m in (("malignant", mal), ("benign", ben)):
                full = np.zeros((H, W), np.uint8)
                full[top : top + h, left : left + w] = np.ascontiguousarray(m).astype(np.uint8) * 255
                write_png8(masks_dir / f"{name}_{cls}.png", full)
            exam[view] = [name]
            geometry["window_location"][view] = [[top, top + h, left, left + w]]
            geometry["best_center"][view] = [[h // 2, w_in // 2]]
            geometry["source_paths"][view] = [f"images/{name}.png"]
        exam.update(geometry)
        exams.append(exam)
        left_m = int(kind == "malignant" and side == "L")
        right_m = int(kind == "malignant" and side == "R")
        left_b = int(kind == "benign" and side == "L")
        right_b = int(kind == "benign" and side == "R")
        rows.append({
            "exam_id": exam_id, "left_benign": left_b, "right_benign": right_b,
            "left_malignant": left_m, "right_malignant": right_m,
            "birads": 0 if kind == "malignant" else (2 if kind == "benign" else 1),
            "biopsied": int(kind != "normal"), "split": "train" if i < n_train else "val",
            "patient_id": f"p{i:03d}",
        })
    save_exams(work / "exams.json", exams, preset=preset.name, preset_config=preset.to_dict(), image_dir="cropped")
    labels = out / "labels.csv"
    write_csv_atomic(labels, rows, ["exam_id", *LABEL_COLUMNS, "birads", "biopsied", "split", "patient_id"])
    return ToyData(work, labels, masks_dir, preset, [r["exam_id"] for r in rows])
