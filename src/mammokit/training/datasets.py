"""Training data for the breast-level models: which exams, with which targets, in which split;
bad exams reported and excluded before training; a Dataset that decodes, windows and
standardises an exam's four views.

An exam's randomness (which image of a view, the random window) comes from
``rng_for(seed, "window", epoch, exam_id)``, so the input of an exam in an epoch is the same
whatever the number of DataLoader workers or processes, and a resumed run sees the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammokit.config import LABEL_COLUMNS, VIEWS, Preset
from mammokit.errors import InputFileError, UsageError
from mammokit.utils.log import get_logger
from mammokit.utils.seed import rng_for

log = get_logger(__name__)

EXCLUDED_FIELDS = ("exam_id", "reason")
TRAIN_SPLITS = {"train", "training"}
VAL_SPLITS = {"val", "valid", "validation", "dev"}


@dataclass
class ExamRecord:
    """One usable exam: the exam-list record, its targets and sampling flags."""

    exam: dict
    targets: dict[str, int]
    biopsied: bool
    patient_id: str
    split: str | None = None

    @property
    def exam_id(self) -> str:
        return str(self.exam["exam_id"])


@dataclass
class PreparedData:
    train: list[ExamRecord]
    val: list[ExamRecord]
    excluded: list[dict[str, str]] = field(default_factory=list)


def task_labels(task: str) -> tuple[str, ...]:
    """Target names of a task: the four cancer columns, or ``("birads",)``."""
    return ("birads",) if task == "birads" else LABEL_COLUMNS


def _image_path(workdir: Path, meta: dict, name: str) -> Path:
    return workdir / meta.get("image_dir", "cropped") / f"{name}.png"


def _check_png(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or None. Verifies the PNG structure (chunks, CRCs)
    without decoding the pixels, so checking a whole data set before training stays cheap."""
    if not path.exists():
        return f"image file missing: {path}"
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # PIL raises many types for damaged files
        return f"unreadable image {path}: {type(exc).__name__}: {exc}"
    return None


def check_exam(exam: dict, workdir: Path, meta: dict, heatmaps: bool, check_images: bool = True) -> str | None:
    """The reason an exam cannot be trained on, or None. An exam with one to three of the four
    views is used (the models mask the missing ones); every view it has needs an image, a window
    centre and (with ``heatmaps``) heatmap files, and readable images."""
    if not any(exam.get(view) for view in VIEWS):
        return "no image of any of the four views"
    for view in VIEWS:
        names = exam.get(view) or []
        if not names:
            continue
        centers = (exam.get("best_center") or {}).get(view) or []
        if len(centers) != len(names) or any(c is None for c in centers):
            return f"no best_center for {view} (preprocessing incomplete)"
        for i, name in enumerate(names):
            if check_images:
                problem = _check_png(_image_path(workdir, meta, name))
                if problem:
                    return problem
            if heatmaps:
                for fld in ("heatmap_benign", "heatmap_malignant"):
                    paths = (exam.get(fld) or {}).get(view) or []
                    if i >= len(paths) or not paths[i]:
                        return f"no {fld} for {view} (run `mammokit heatmaps` first)"
                    if not (workdir / paths[i]).exists():
                        return f"{fld} file missing: {workdir / paths[i]}"
    return None


def _targets(row: dict, task: str) -> dict[str, int] | str:
    out = {}
    for name in task_labels(task):
        value = row.get(name)
        if value is None or value == "":
            return f"no {name} label"
        out[name] = int(value)
    return out


def _is_biopsied(row: dict) -> bool:
    # Without a ``biopsied`` column, an exam with any positive label was biopsied (positives come
    # from biopsies); negatives without the column count as not biopsied.
    value = row.get("biopsied")
    if value is not None and value != "":
        return bool(int(value))
    return any(int(row.get(c) or 0) for c in LABEL_COLUMNS)


def split_by_patient(patients: list[str], val_fraction: float, seed: int) -> set[str]:
    """Patients held out for validation: a seeded random ``val_fraction`` of the distinct
    patients (at least one), so no patient has exams in both splits."""
    unique = sorted(set(patients))
    n_val = max(1, int(round(len(unique) * val_fraction)))
    if n_val >= len(unique):
        raise UsageError(f"val_fraction {val_fraction} leaves no training patients ({len(unique)} patients)")
    rng = rng_for(seed, "val-split")
    return {unique[i] for i in rng.choice(len(unique), size=n_val, replace=False)}


def prepare_data(
    exams: list[dict],
    meta: dict,
    labels: dict[str, dict],
    workdir: str | Path,
    task: str,
    heatmaps: bool = False,
    val_fraction: float | None = None,
    seed: int = 0,
    check_images: bool = True,
) -> PreparedData:
    """Join the exam list with the labels, exclude bad exams (with reasons) and split.

    Split: the labels' ``split`` column (``train`` / ``val``; other values such as ``test`` are
    left out), or, when ``val_fraction`` is given (or no exam has a split), a seeded split by
    patient. Returns train and validation records and the excluded exams
    (``[{"exam_id", "reason"}]``).
    """
    workdir = Path(workdir)
    usable: list[ExamRecord] = []
    excluded: list[dict[str, str]] = []
    for exam in exams:
        exam_id = str(exam.get("exam_id"))
        row = labels.get(exam_id)
        if row is None:
            excluded.append({"exam_id": exam_id, "reason": "no labels"})
            continue
        targets = _targets(row, task)
        if isinstance(targets, str):
            excluded.append({"exam_id": exam_id, "reason": targets})
            continue
        problem = check_exam(exam, workdir, meta, heatmaps, check_images)
        if problem:
            excluded.append({"exam_id": exam_id, "reason": problem})
            continue
        split = row.get("split") or exam.get("split") or None
        patient = str(row.get("patient_id") or exam.get("patient_id") or exam_id)
        usable.append(ExamRecord(exam, targets, _is_biopsied(row), patient, split.lower() if split else None))
    for row in excluded:
        log.warning("excluding exam %s: %s", row["exam_id"], row["reason"])
    partial = sum(1 for r in usable if not all(r.exam.get(v) for v in VIEWS))
    if partial:
        log.info("%d of %d exams have fewer than four views (their missing views are masked)", partial, len(usable))

    if val_fraction is None and not any(r.split for r in usable):
        raise InputFileError("the labels have no 'split' column (train/val): give --val-fraction to split by patient")
    if val_fraction is not None:
        held = split_by_patient([r.patient_id for r in usable], val_fraction, seed)
        train = [r for r in usable if r.patient_id not in held]
        val = [r for r in usable if r.patient_id in held]
    else:
        train = [r for r in usable if r.split in TRAIN_SPLITS]
        val = [r for r in usable if r.split in VAL_SPLITS]
    if not train:
        raise InputFileError("no usable training exams (check the labels' split column and excluded_exams.csv)")
    if not val:
        raise InputFileError("no usable validation exams (split 'val' in the labels, or --val-fraction)")
    return PreparedData(train, val, excluded)


class ExamDataset(torch.utils.data.Dataset):
    """Four-view model inputs of exams, decoded and windowed in (worker) processes.

    Items are addressed by ``(index, epoch)``; ``epoch = -1`` (or ``augment=False``) gives the
    deterministic evaluation window at ``best_center`` with the first image of each view.

    Returns per item ``(views, targets, index, present)``: ``views`` = ``{view: Tensor[C, h, w]}``
    for all four views (flipped, standardised; ``h, w = preset.input_size(view)``; zeros for a
    view the exam lacks), ``targets`` = ``{label: int}``, ``present`` = ``[4]`` bool in ``VIEWS``
    order.
    """

    def __init__(
        self,
        records: list[ExamRecord],
        workdir: str | Path,
        preset: Preset,
        heatmaps: bool,
        augment: bool,
        seed: int,
        cache_images: bool = True,
        image_dir: str = "cropped",
        cache_bytes: int = 2 << 30,
    ) -> None:
        self.records = records
        self.image_dir = image_dir
        self.workdir = Path(workdir)
        self.preset = preset
        self.heatmaps = heatmaps
        self.augment = augment
        self.seed = seed
        # Decoded views stay in this (worker) process's memory between epochs: PNG decoding is the
        # bottleneck of training (paper: "data loading and augmentation are the bottleneck").
        # Created lazily in the process that uses it (a lock cannot be pickled to spawned workers).
        self.cache_images, self.cache_bytes = cache_images, cache_bytes
        self._cache = None

    @property
    def cache(self):
        if self._cache is None and self.cache_images:
            from mammokit.data.views import ImageCache

            self._cache = ImageCache(self.cache_bytes)
        return self._cache

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]) -> tuple[dict[str, torch.Tensor], dict[str, int], int, torch.Tensor]:
        index, epoch = key
        record = self.records[index]
        augment = self.augment and epoch >= 0
        rng = rng_for(self.seed, "window", epoch, record.exam_id) if augment else None
        views = exam_inputs(record.exam, self.workdir, self.preset, self.heatmaps, rng, self.cache, self.image_dir)
        present = torch.tensor([v in views for v in VIEWS])
        channels = 3 if self.heatmaps else 1
        for v in VIEWS:  # a placeholder the model masks out (batches need every view)
            if v not in views:
                views[v] = torch.zeros((channels, *self.preset.input_size(v)), dtype=torch.float32)
        return {v: views[v] for v in VIEWS}, record.targets, index, present


def exam_inputs(
    exam: dict,
    workdir: Path,
    preset: Preset,
    heatmaps: bool,
    rng: np.random.Generator | None,
    cache: Any = None,
    image_dir: str = "cropped",
) -> dict[str, torch.Tensor]:
    """One draw of the model inputs of the views an exam has, ``{view: [C, h, w]}`` (float32, CPU).

    ``rng=None``: the first image of each view and the deterministic window at ``best_center``;
    otherwise a random image per view (the reference picks one at random per draw) and a random
    window, drawn in the reference's order by :func:`mammokit.data.views.make_model_inputs`.
    """
    from mammokit.data.views import load_exam_views, make_model_inputs

    if rng is None:  # only image 0 of each view is used: do not decode the others
        loaded = {v: [load_view_first(workdir, exam, v, heatmaps, cache, image_dir)] for v in VIEWS if exam.get(v)}
    else:
        loaded = load_exam_views(workdir, exam, heatmaps=heatmaps, cache=cache, image_dir=image_dir)
    inputs = make_model_inputs(loaded, exam, preset, rng=rng, n_draws=1, device="cpu", augment=rng is not None)
    return {view: x[0] for view, x in inputs.items()}


def load_view_first(workdir: Path, exam: dict, view: str, heatmaps: bool, cache: Any, image_dir: str) -> np.ndarray:
    from mammokit.data.views import load_view

    return load_view(workdir, exam, view, 0, heatmaps, cache, image_dir)


def collate_exams(items: list[tuple[dict, dict, int, torch.Tensor]]) -> dict[str, Any]:
    """Stack items: ``{"views": {view: [B, C, h, w]}, "targets": {label: [B] long}, "index": [B],
    "present": [B, 4] bool}``."""
    views = {v: torch.stack([it[0][v] for it in items]) for v in items[0][0]}
    targets = {k: torch.tensor([it[1][k] for it in items], dtype=torch.long) for k in items[0][1]}
    index = torch.tensor([it[2] for it in items], dtype=torch.long)
    present = torch.stack([it[3] for it in items])
    return {"views": views, "targets": targets, "index": index, "present": present}
