"""Helpers for the window / views / inference tests: a tiny work folder written in-test.

No tests here; imported by tests/test_inference_*.py.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mammokit.config import PRESETS, VIEWS, scaled_preset
from mammokit.data.examlist import save_exams

# A preset smaller than ``tiny`` for tests that run models many times (CC window 107 x 78).
MICRO = scaled_preset("micro", 0.04)


def image_shapes(preset) -> dict:
    """Cropped image sizes (H, W) per view kind: CC taller but narrower than its window (padding
    on the right), MLO larger than its window. For ``tiny``: CC 350 x 230, MLO 400 x 240."""
    (ch, cw), (mh, mw) = preset.cc_input_size, preset.mlo_input_size
    return {"CC": (ch + 15, cw - 13), "MLO": (mh + 28, mw + 22)}


def view_stem(exam_id: str, view: str, k: int = 0) -> str:
    side, kind = view.split("-")
    return f"{exam_id}_{side}_{kind}" + (f"_{k}" if k else "")


def synthetic_image(shape, rng: np.random.Generator) -> np.ndarray:
    """A uint16 image with a bright blob on the chest-wall side (left, in the model's frame)."""
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W]
    blob = np.exp(-(((yy - H / 2) / (0.4 * H)) ** 2 + (xx / (0.6 * W)) ** 2))
    img = 30000 * blob + 3000 * rng.random((H, W))
    return np.clip(img, 0, 65535).astype(np.uint16)


def make_workdir(
    root: Path,
    exam_ids=("e0", "e1"),
    seed: int = 0,
    heatmaps: bool = False,
    missing: dict | None = None,
    extra_images: dict | None = None,
    horizontal_flip: dict | None = None,
    preset: str = "tiny",
    preset_config: dict | None = None,
) -> tuple[Path, list[dict]]:
    """Write ``root/cropped/*.png`` (original orientation) and ``root/exams.json``.

    missing: {exam_id: [views without images]}; extra_images: {exam_id: {view: n_images}}.
    best_center is the centre of the flipped image; heatmaps are PNG16 (round(p * 65535)).
    """
    rng = np.random.default_rng(seed)
    shapes = image_shapes(PRESETS[preset] if preset in PRESETS else MICRO)
    if preset_config is not None:
        shapes = image_shapes(type(MICRO)(**{k: tuple(v) if isinstance(v, list) else v for k, v in preset_config.items()}))
    missing = missing or {}
    extra_images = extra_images or {}
    horizontal_flip = horizontal_flip or {}
    (root / "cropped").mkdir(parents=True, exist_ok=True)
    exams = []
    for exam_id in exam_ids:
        flip = horizontal_flip.get(exam_id, "NO")
        exam = {"exam_id": exam_id, "patient_id": f"p{exam_id}", "horizontal_flip": flip}
        centers, hb, hm = {}, {}, {}
        for view in VIEWS:
            n = 0 if view in missing.get(exam_id, ()) else extra_images.get(exam_id, {}).get(view, 1)
            exam[view], centers[view], hb[view], hm[view] = [], [], [], []
            for k in range(n):
                stem = view_stem(exam_id, view, k)
                H, W = shapes[view.split("-")[1]]
                H, W = H + 7 * k, W + 5 * k
                img = synthetic_image((H, W), rng)
                mirrored = (view.startswith("R")) == (flip == "NO")
                cv2.imwrite(str(root / "cropped" / f"{stem}.png"), img[:, ::-1] if mirrored else img)
                exam[view].append(stem)
                j = max(2, H // 20)
                centers[view].append([H // 2 + int(rng.integers(-j, j)), W // 2 + int(rng.integers(-j, j))])
                if heatmaps:
                    for kind, store in (("benign", hb), ("malignant", hm)):
                        p = rng.random((H, W))
                        rel = f"heatmaps/{kind}/{stem}.png"
                        (root / "heatmaps" / kind).mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(root / rel), np.round(p * 65535).astype(np.uint16))
                        store[view].append(rel)
        exam["best_center"] = {v: c for v, c in centers.items() if c}
        if heatmaps:
            exam["heatmap_benign"] = {v: c for v, c in hb.items() if c}
            exam["heatmap_malignant"] = {v: c for v, c in hm.items() if c}
        exams.append(exam)
    meta = {"preset": preset, "image_dir": "cropped"}
    if preset_config is not None:
        meta["preset_config"] = preset_config
    save_exams(root / "exams.json", exams, **meta)
    return root, exams
