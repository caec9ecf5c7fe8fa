"""Do the heatmaps light up the findings? Mean heatmap inside lesion masks over mean elsewhere.

For each class (benign, malignant) and a set of exams of a work folder with heatmaps:

    ratio = mean of the class's heatmap over the pixels of that class's lesion masks
            / mean of the same heatmap over the other breast-tissue pixels
              (cropped-image pixels > 0, outside every lesion mask of either class)

pooled over all images (every mask pixel and every tissue pixel weighs the same). A ratio of 1
means the heatmap does not know where the findings are; the paper's heatmaps are bright on the
findings and dark elsewhere. Masks are read and cut exactly as the patch trainer reads them
(:func:`mammokit.training.patches.load_patch_image`), heatmaps flipped into the same frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mammokit.config import VIEWS
from mammokit.utils.log import get_logger

log = get_logger(__name__)

CLASSES = ("benign", "malignant")


def heatmap_localisation(
    workdir: str | os.PathLike, masks_dir: str | os.PathLike, exam_ids: Iterable[str] | None = None
) -> dict[str, dict]:
    """``{cls: {"inside_mean", "outside_mean", "ratio", "n_images", "n_lesion_pixels"}}``.

    Args:
        workdir: a preprocessed work folder whose exam list records the heatmaps.
        masks_dir: the lesion masks (``<stem>_{malignant,benign}.png``, uncropped).
        exam_ids: restrict to these exams (e.g. the test split); default every exam.
    Images without a heatmap are skipped; a class without any lesion pixel gets None values.
    """
    from mammokit.data.examlist import load_exams
    from mammokit.data.heatmap_io import read_heatmap
    from mammokit.training.patches import load_patch_image
    from mammokit.transforms import to_model_frame

    workdir, masks_dir = Path(workdir), Path(masks_dir)
    exams, meta = load_exams(workdir / "exams.json")
    image_dir = str(meta.get("image_dir", "cropped"))
    wanted = None if exam_ids is None else {str(e) for e in exam_ids}
    sums = {c: {"in": 0.0, "n_in": 0, "out": 0.0, "n_out": 0, "images": 0} for c in CLASSES}
    for exam in exams:
        if wanted is not None and str(exam.get("exam_id")) not in wanted:
            continue
        flip = exam.get("horizontal_flip", "NO")
        for view in VIEWS:
            for index, name in enumerate(exam.get(view) or []):
                paths = {c: workdir / "heatmaps" / c / f"{name}.png" for c in CLASSES}
                if not all(p.is_file() for p in paths.values()):
                    continue
                img = load_patch_image(workdir, exam, view, index, masks_dir, image_dir)
                lesion = img.benign | img.malignant
                other = img.tissue & ~lesion
                for cls in CLASSES:
                    hm = to_model_frame(read_heatmap(paths[cls]), view, flip)
                    mask = img.benign if cls == "benign" else img.malignant
                    s = sums[cls]
                    s["in"] += float(hm[mask].sum())
                    s["n_in"] += int(mask.sum())
                    s["out"] += float(hm[other].sum())
                    s["n_out"] += int(other.sum())
                    s["images"] += 1
    out = {}
    for cls, s in sums.items():
        inside = s["in"] / s["n_in"] if s["n_in"] else None
        outside = s["out"] / s["n_out"] if s["n_out"] else None
        ratio = inside / outside if inside is not None and outside else None
        out[cls] = {"inside_mean": inside, "outside_mean": outside, "ratio": ratio, "n_images": s["images"],
                    "n_lesion_pixels": s["n_in"]}
    return out
