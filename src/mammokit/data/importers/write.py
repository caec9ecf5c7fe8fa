"""Writing an import: manifest, labels, masks, boxes (every file atomically).

Masks: ``DIR/masks/<exam>_<L|R>_<CC|MLO>_{malignant,benign}.png``, 8-bit 0/255, the union of
every outline of that class on the view's first image, at the image's full size and in the
orientation :func:`mammokit.data.dicom.read_dicom_pixels` gives the image (a file stored
mirrored is flipped by the reader; its polygons are flipped with it). A mask file whose size is
not its image's is rejected with both sizes, never resized.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mammokit.config import VIEWS
from mammokit.data.importers.base import Box, ImageRecord, MaskSource
from mammokit.data.importers.context import MASK_SIZE, UNKNOWN_VALUE, UNREADABLE
from mammokit.data.manifest import image_name, write_labels
from mammokit.data.scan import Reject
from mammokit.errors import MammokitError
from mammokit.utils.io import write_csv_atomic, write_json_atomic
from mammokit.utils.log import get_logger, progress

log = get_logger(__name__)

BOX_COLUMNS = ("exam_id", "view", "label", "x0", "y0", "x1", "y1")
MASKS_DONE = ".masks_done.json"


def write_import_manifest(path: Path, images: list[ImageRecord], splits: dict[str, str]) -> list[str]:
    """``exam_id,view,path,patient_id,split`` + every extra column (absolute image paths, as the
    DICOM files stay in ROOT). Returns the extra columns written."""
    extra: list[str] = []
    for image in images:
        for key in image.extra:
            if key not in extra:
                extra.append(key)
    rows = []
    for image in images:
        row = {"exam_id": image.exam_id, "view": image.view, "path": str(Path(image.path).resolve()),
               "patient_id": image.patient_id, "split": splits.get(image.exam_id, "")}
        row.update({k: ("" if image.extra.get(k) is None else image.extra.get(k)) for k in extra})
        rows.append(row)
    write_csv_atomic(path, rows, ["exam_id", "view", "path", "patient_id", "split", *extra])
    return extra


def write_import_labels(path: Path, labels: dict[str, dict], splits: dict[str, str], patients: dict[str, str]) -> None:
    """labels.csv: the four label columns, ``birads``, the set's labels, ``split``, ``patient_id``."""
    out = {}
    for exam_id, record in labels.items():
        out[exam_id] = {**record, "split": splits.get(exam_id, ""), "patient_id": patients.get(exam_id, "")}
    write_labels(path, out)


def clip_boxes(boxes: Iterable[Box], images: dict[tuple[str, str], ImageRecord]) -> tuple[list[Box], list[Reject]]:
    """Boxes clipped to their image; a box of another image or with no area left is rejected."""
    kept, rejects = [], []
    for box in boxes:
        where = f"box {box.exam_id} {box.view} {box.label} ({box.x0}, {box.y0}, {box.x1}, {box.y1})"
        image = images.get((box.exam_id, box.view))
        if image is None:
            rejects.append(Reject(where, UNKNOWN_VALUE, "box of an image that is not in the manifest"))
            continue
        x0, x1 = sorted((float(box.x0), float(box.x1)))
        y0, y1 = sorted((float(box.y0), float(box.y1)))
        if image.columns is not None:
            x0, x1 = min(max(x0, 0.0), image.columns), min(max(x1, 0.0), image.columns)
        if image.rows is not None:
            y0, y1 = min(max(y0, 0.0), image.rows), min(max(y1, 0.0), image.rows)
        if x1 <= x0 or y1 <= y0:
            rejects.append(Reject(where, UNKNOWN_VALUE, f"box outside the image ({image.columns} x {image.rows} pixels)"))
            continue
        kept.append(Box(box.exam_id, box.view, box.label, x0, y0, x1, y1))
    return kept, rejects


def write_boxes(path: Path, boxes: list[Box]) -> None:
    def fmt(v: float) -> str:
        return str(int(v)) if float(v).is_integer() else f"{v:.2f}"

    rows = [{"exam_id": b.exam_id, "view": b.view, "label": b.label, "x0": fmt(b.x0), "y0": fmt(b.y0),
             "x1": fmt(b.x1), "y1": fmt(b.y1)} for b in boxes]
    write_csv_atomic(path, rows, BOX_COLUMNS)


def read_mask_file(path: str) -> np.ndarray:
    """A mask file (DICOM or PNG) as bool ``[H, W]``, nonzero = lesion, in display orientation."""
    from mammokit.data.images import is_dicom_file, read_image

    if is_dicom_file(path):
        from mammokit.data.dicom import read_dicom_pixels

        return read_dicom_pixels(path) > 0
    return read_image(path) > 0


def rasterise_polygon(points: list[tuple[float, float]], shape: tuple[int, int], mirrored: bool = False) -> np.ndarray:
    """Filled polygon ``[H, W]`` bool from ``(x, y)`` points in stored pixels (cv2.fillPoly; one
    or two points mark a dot, drawn as a 3-pixel-radius disc)."""
    import cv2

    h, w = shape
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if mirrored:
        pts[:, 0] = (w - 1) - pts[:, 0]
    mask = np.zeros((h, w), np.uint8)
    ipts = np.rint(pts).astype(np.int32)
    if len(ipts) >= 3:
        cv2.fillPoly(mask, [ipts.reshape(-1, 1, 2)], 1)
    else:
        for x, y in ipts:
            cv2.circle(mask, (int(x), int(y)), 3, 1, thickness=-1)
    return mask.astype(bool)


def _signature(sources: list[MaskSource], image: ImageRecord) -> str:
    parts = [f"{image.path}|{image.rows}x{image.columns}|{image.mirrored}"]
    for s in sources:
        if s.path is not None:
            try:
                st = os.stat(s.path)
                parts.append(f"{s.path}|{st.st_size}|{st.st_mtime_ns}")
            except OSError:
                parts.append(f"{s.path}|missing")
        else:
            parts.append(json.dumps(s.polygon))
    return "\n".join(parts)


def write_masks(
    out: Path, masks: list[MaskSource], images: dict[tuple[str, str], ImageRecord], resume: bool = True
) -> tuple[dict[str, int], list[Reject]]:
    """Union and write every mask (see the module docstring). Returns per-class counts of mask
    files written (or kept from an earlier run) and the rejected outlines."""
    from mammokit.data.images import write_png8

    groups: dict[tuple[str, str, str], list[MaskSource]] = {}
    rejects: list[Reject] = []
    for m in masks:
        if (m.exam_id, m.view) not in images:
            rejects.append(Reject(m.path or m.where, UNKNOWN_VALUE, f"outline of {m.exam_id} {m.view}, an image not in the manifest"))
            continue
        groups.setdefault((m.exam_id, m.view, m.label), []).append(m)
    folder = out / "masks"
    folder.mkdir(parents=True, exist_ok=True)  # present even when the set has no outlines
    done_path = folder / MASKS_DONE
    done: dict[str, str] = {}
    if resume and done_path.exists():
        try:
            done = json.loads(done_path.read_text(encoding="utf-8"))
        except ValueError:
            done = {}
    counts = {"malignant": 0, "benign": 0}
    written = 0
    for (exam_id, view, label), sources in progress(sorted(groups.items(), key=lambda kv: kv[0]), desc="masks"):
        image = images[(exam_id, view)]
        name = f"{image_name(exam_id, view)}_{label}.png"
        sig = _signature(sources, image)
        if done.get(name) == sig and (folder / name).exists():
            counts[label] += 1
            continue
        if image.rows is None or image.columns is None:
            rejects.extend(Reject(s.path or s.where, UNKNOWN_VALUE, f"size of image {image.path} unknown") for s in sources)
            continue
        shape = (image.rows, image.columns)
        union = np.zeros(shape, bool)
        used = 0
        for s in sources:
            if s.polygon is not None:
                union |= rasterise_polygon(s.polygon, shape, image.mirrored)
                used += 1
                continue
            try:
                mask = read_mask_file(s.path)
            except (MammokitError, OSError, ValueError) as exc:
                rejects.append(Reject(s.path, UNREADABLE, f"mask: {str(exc).removeprefix(f'{s.path}: ')}"))
                continue
            if mask.shape != shape:
                rejects.append(Reject(s.path, MASK_SIZE, f"mask is {mask.shape[1]} x {mask.shape[0]} (W x H), its image "
                                      f"{image.path} is {shape[1]} x {shape[0]}; not resized"))
                continue
            union |= mask
            used += 1
        if not used:
            continue
        write_png8(folder / name, union.astype(np.uint8) * 255)
        done[name] = sig
        counts[label] += 1
        written += 1
        if written % 200 == 0:
            write_json_atomic(done_path, done)
    if groups:
        write_json_atomic(done_path, done)
    return counts, rejects


def missing_views(images: list[ImageRecord]) -> dict[str, list[str]]:
    """exam id -> the standard views it lacks (exams with all four left out)."""
    have: dict[str, set[str]] = {}
    for image in images:
        have.setdefault(image.exam_id, set()).add(image.view)
    return {exam: [v for v in VIEWS if v not in views] for exam, views in have.items() if len(views) < len(VIEWS)}
