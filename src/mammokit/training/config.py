"""Typed training configurations with the paper's defaults (Wu et al. 2019, IV-A.1 and IV-C).

Every run writes its resolved configuration to ``RUN/config.json`` (:meth:`to_dict`), and a
resumed run re-reads it from there (:meth:`from_dict`), so a run folder alone says how it was made.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammokit.errors import UsageError

PAPER_LR = 1e-5
PAPER_BATCH_CANCER = 4
PAPER_BATCH_BIRADS = 24
# "L2 coefficient 10^-4.5 on weights" (IV-A.1).
PAPER_L2 = 10 ** -4.5
PAPER_PATIENCE = 20

VARIANTS = ("view_wise", "image_wise", "breast_wise", "joint")
TASKS = ("cancer", "birads")


def normalise_variant(name: str) -> str:
    """``view-wise`` / ``view_wise`` -> ``view_wise`` (the model registry name)."""
    key = name.replace("-", "_")
    if key == "side_wise":
        key = "breast_wise"
    if key not in VARIANTS:
        raise UsageError(f"unknown variant {name!r}; choose one of {', '.join(v.replace('_', '-') for v in VARIANTS)}")
    return key


class _ConfigMixin:
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Rebuild a config from :meth:`to_dict` output (e.g. a run's ``config.json``); every
        value must have its field's type (JSON from a file is not trusted to)."""
        if not isinstance(d, dict):
            raise UsageError(f"a {cls.__name__} must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        if unknown:
            raise UsageError(f"unknown {cls.__name__} fields: {', '.join(sorted(map(str, unknown))[:10])}")
        required = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        absent = [name for name in required if name not in d]
        if absent:
            raise UsageError(f"{cls.__name__} lacks required field(s) {', '.join(absent)}")
        hints = typing.get_type_hints(cls)
        for key, value in d.items():
            allowed = _allowed_types(hints[key])
            ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
            if not ok:
                names_ = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
                raise UsageError(f"{cls.__name__} field {key} must be {names_}, got {str(value)[:40]!r}")
        return cls(**d)


def _allowed_types(hint: Any) -> tuple[type, ...]:
    """Runtime types a JSON value may have for a field annotated ``hint`` (float accepts int)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    out: list[type] = []
    for t in args:
        out.append(t)
        if t is float:
            out.append(int)
    return tuple(out)


@dataclass
class TrainConfig(_ConfigMixin):
    """Breast-level (four-view) model training; defaults follow the paper.

    Attributes:
        workdir: preprocessed work folder (``exams.json`` + ``cropped/``).
        labels: labels CSV (``exam_id`` + the four cancer columns, optional ``birads``,
            ``biopsied``, ``split``).
        out: run folder (checkpoints, metrics, ``config.json``).
        task: ``"cancer"`` (4 binary labels) or ``"birads"`` (3-way BI-RADS 0/1/2 pretraining).
        variant: ``view_wise`` (the paper's primary model), ``image_wise``, ``breast_wise``, ``joint``.
        heatmaps: feed the patch heatmaps as channels 2-3 (image, benign, malignant).
        init: checkpoint whose ResNet-22 columns initialise this model (BI-RADS transfer).
        epochs: maximum number of epochs (the paper stops early, see ``patience``).
        batch_size: exams per optimiser step over all processes (paper: 4 cancer, 24 BI-RADS;
            ``None`` picks the paper's value for the task).
        lr: Adam learning rate (paper 1e-5).
        weight_decay: L2 coefficient on weights (paper 10^-4.5), applied as Adam's coupled weight
            decay on conv/linear weights only (not biases or batch-norm parameters).
        patience: epochs without improvement of the validation score before stopping (paper 20).
        sampling: ``"biopsied"`` = each epoch all biopsied exams plus an equal-sized random sample
            of the others (paper, cancer task); ``"all"`` = every training exam each epoch;
            ``None`` = ``biopsied`` for cancer, ``all`` for BI-RADS.
        val_fraction: used when the labels have no ``split`` column: fraction of *patients* held
            out for validation.
        seed: seeds weights, epoch samples, windows and input noise.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` = CUDA when available.
        amp: bf16 autocast on CUDA (ignored on the CPU).
        channels_last: channels_last memory format on CUDA (ignored on the CPU).
        num_workers: DataLoader worker processes (decoding + window sampling off the main process);
            ``None`` = 4 on CUDA, 0 on the CPU.
        cache_images: keep decoded images in each worker's memory between epochs.
        augment: random windows (the reference augmentation) for training; validation always
            uses the deterministic window at ``best_center``.
        input_noise_std: Gaussian input noise in training (paper 0.01); ``None`` = the preset's.
        save_every: write the resumable state every N optimiser steps (and at every epoch end).
        stop_after_steps: stop (as if killed) after this many optimiser steps of this process's
            life, having written the state; for time-boxed jobs and tests.
        ensemble: train K members whose heads start from different seeds.
        eval_batch_size: exams per forward pass in validation.
        deterministic: ``torch.use_deterministic_algorithms`` (bit-identical resume on the CPU).
        max_train_exams / max_val_exams: cap the number of exams (quick experiments).
    """

    workdir: str
    labels: str
    out: str
    task: str = "cancer"
    variant: str = "view_wise"
    heatmaps: bool = False
    init: str | None = None
    epochs: int = 1000
    batch_size: int | None = None
    lr: float = PAPER_LR
    weight_decay: float = PAPER_L2
    patience: int = PAPER_PATIENCE
    sampling: str | None = None
    val_fraction: float | None = None
    seed: int = 0
    device: str | None = None
    amp: bool = True
    channels_last: bool = True
    num_workers: int | None = None
    cache_images: bool = True
    augment: bool = True
    input_noise_std: float | None = None
    save_every: int = 50
    stop_after_steps: int | None = None
    ensemble: int = 1
    eval_batch_size: int = 8
    deterministic: bool = False
    max_train_exams: int | None = None
    max_val_exams: int | None = None

    def __post_init__(self) -> None:
        self.variant = normalise_variant(self.variant)
        if self.task not in TASKS:
            raise UsageError(f"unknown task {self.task!r}; choose cancer or birads")
        if self.batch_size is None:
            self.batch_size = PAPER_BATCH_BIRADS if self.task == "birads" else PAPER_BATCH_CANCER
        if self.sampling is None:
            self.sampling = "all" if self.task == "birads" else "biopsied"
        if self.sampling not in ("biopsied", "all"):
            raise UsageError(f"sampling must be 'biopsied' or 'all', got {self.sampling!r}")
        for name in ("epochs", "batch_size", "patience", "save_every", "ensemble", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise UsageError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.val_fraction is not None and not 0 < self.val_fraction < 1:
            raise UsageError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        self.workdir, self.labels, self.out = str(self.workdir), str(self.labels), str(self.out)
        if self.init is not None:
            self.init = str(self.init)


@dataclass
class PatchTrainConfig(_ConfigMixin):
    """Patch classifier training (IV-B): 3 classes, 0 = malignant, 1 = benign, 2 = normal.

    The paper trains DenseNet-121 (ImageNet init) on 256 x 256 patches labelled from pixel-level
    segmentations but defers its recipe to a separate report; the sampling scheme below is
    mammokit's, documented in :mod:`mammokit.training.patches`.

    Attributes:
        workdir, masks_dir, labels, out: work folder, lesion masks folder (``<name>_malignant.png``
            / ``<name>_benign.png``, uncropped, original orientation; None = boxes only), labels CSV
            (``split``, and the breast labels of the missing-localisation rule), run folder.
        boxes: lesion boxes CSV (``exam_id,view,label,x0,y0,x1,y1``, original pixels;
            :mod:`mammokit.data.boxes`), or None. At least one of ``masks_dir`` / ``boxes``.
        arch: ``densenet121_patch`` or ``patchnet_small``; ``None`` = the preset's patch model.
        imagenet_weights: local file with ImageNet weights for DenseNet-121 (nothing is downloaded).
        patch_size: patch side in pixels; ``None`` = ``preset.patch_size`` (256 at full scale).
        patches_per_class: training patches per class per epoch (class balance).
        val_patches_per_class: fixed validation patches per class.
        lesion_fraction: a patch is malignant (benign) if at least this fraction of its central
            region (the middle half in each direction) is malignant (benign) mask.
        min_tissue_fraction: patches with less breast tissue (non-zero pixels) are background
            and rejected.
        hard_negative_fraction: share of the normal patches centred on dense tissue (hard
            negatives; see :mod:`mammokit.training.patches`).
        normal_ratio: normal patches per epoch = ``normal_ratio * patches_per_class``.
        batch_size, lr, weight_decay, epochs, patience, seed, device, amp, channels_last,
        val_fraction: as in :class:`TrainConfig`.
    """

    workdir: str
    masks_dir: str | None
    labels: str
    out: str
    arch: str | None = None
    imagenet_weights: str | None = None
    boxes: str | None = None
    patch_size: int | None = None
    patches_per_class: int = 512
    val_patches_per_class: int = 128
    lesion_fraction: float = 0.1
    min_tissue_fraction: float = 0.5
    hard_negative_fraction: float = 0.0
    normal_ratio: float = 1.0
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = PAPER_L2
    epochs: int = 50
    patience: int = 10
    seed: int = 0
    device: str | None = None
    amp: bool = True
    channels_last: bool = True
    val_fraction: float | None = None
    save_every: int = 50
    stop_after_steps: int | None = None
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.arch is not None and self.arch not in ("densenet121_patch", "patchnet_small"):
            raise UsageError(f"unknown patch arch {self.arch!r}; choose densenet121_patch or patchnet_small")
        for name in ("patches_per_class", "val_patches_per_class", "batch_size", "epochs", "patience", "save_every"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lesion_fraction <= 1:
            raise UsageError(f"lesion_fraction must be in (0, 1], got {self.lesion_fraction}")
        if not 0 <= self.min_tissue_fraction <= 1:
            raise UsageError(f"min_tissue_fraction must be in [0, 1], got {self.min_tissue_fraction}")
        if not 0 <= self.hard_negative_fraction <= 1:
            raise UsageError(f"hard_negative_fraction must be in [0, 1], got {self.hard_negative_fraction}")
        if not 0 < self.normal_ratio <= 10:
            raise UsageError(f"normal_ratio must be in (0, 10], got {self.normal_ratio}")
        if self.patch_size is not None and self.patch_size < 8:
            raise UsageError(f"patch_size must be >= 8, got {self.patch_size}")
        self.workdir, self.labels, self.out = map(str, (self.workdir, self.labels, self.out))
        if self.masks_dir is None and self.boxes is None:
            raise UsageError("patch training needs lesion masks (--masks DIR) and / or boxes (--boxes boxes.csv)")
        self.masks_dir = None if self.masks_dir is None else str(self.masks_dir)
        self.boxes = None if self.boxes is None else str(self.boxes)
        if self.imagenet_weights is not None:
            self.imagenet_weights = str(self.imagenet_weights)


def config_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


__all__ = ["TrainConfig", "PatchTrainConfig", "normalise_variant", "VARIANTS", "TASKS"]
