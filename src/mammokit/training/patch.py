"""Patch classifier training (paper IV-B): malignant / benign / normal patches from lesion masks.

Run folder: ``config.json``, ``excluded_images.csv``, ``state.pt`` (resumable, as the
breast-level trainer), ``best.safetensors`` / ``last.safetensors`` (mammokit checkpoints that
:func:`mammokit.models.checkpoint.load_model` and ``mammokit heatmaps`` load; class 0 =
malignant, 1 = benign, 2 = normal), ``metrics.jsonl`` / ``metrics.csv``.

Each epoch samples ``patches_per_class`` patches of every class afresh from the training images
(seeded by ``(seed, epoch)``; see :mod:`mammokit.training.patches` for the label rule), with
flips, 90-degree rotations and intensity augmentation. Validation uses a fixed, unaugmented set
of patches from the validation exams; the score is the mean one-vs-rest AUC over the classes.
Training images are held in memory (decoded once), which suits the segmented subset of a data
set that patch training uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mammokit.config import VIEWS, workdir_preset
from mammokit.errors import InputFileError, MissingFileError, UsageError
from mammokit.models.checkpoint import save_checkpoint
from mammokit.training.common import (
    autocast,
    load_run_config,
    out_of_memory_is_fatal,
    resolve_device,
    set_determinism,
    use_channels_last,
    write_run_config,
)
from mammokit.training.config import PatchTrainConfig
from mammokit.training.engine import LoopSettings, TrainLoop, check_run_folder
from mammokit.training.losses import l2_param_groups
from mammokit.training.metrics import multiclass_metrics
from mammokit.training.patches import (
    CLASS_NAMES,
    PatchImage,
    extract_patch,
    load_patch_image,
    sample_patches,
)
from mammokit.training.sampling import batches
from mammokit.transforms import augment_patch
from mammokit.utils.io import write_csv_atomic
from mammokit.utils.log import get_logger, progress
from mammokit.utils.seed import derive_seed, rng_for

log = get_logger(__name__)


def load_patch_images(
    exams: list[dict], workdir: Path, masks_dir: Path | None, image_dir: str,
    boxes: dict | None = None, labels: dict | None = None, counts: dict | None = None,
) -> tuple[list[PatchImage], list[dict[str, str]]]:
    """Every usable image of ``exams`` with its lesion localisation (masks and / or ``boxes``,
    ``{(exam_id, view): [Box]}``); unreadable ones are returned as excluded rows.

    With ``labels`` (``{exam_id: row}``): an image of a breast labelled malignant (benign) without
    a malignant (benign) mask or box is excluded too (its lesion would be sampled as normal
    tissue). ``counts`` (updated in place) gets ``unlocalised_malignant_breasts`` /
    ``unlocalised_benign_breasts`` (labelled breasts with no localisation in any view) and
    ``unlocalised_images`` (images left out for that reason), which are also logged.

    Raises:
        MissingFileError: an explicit mask path that does not exist, for a breast whose label
            says it has that lesion.
    """
    from mammokit.errors import MammokitError

    loaded: list[tuple[dict, str, PatchImage]] = []
    excluded: list[dict[str, str]] = []
    todo = [(e, v, i) for e in exams for v in VIEWS for i in range(len(e.get(v) or []))]
    for exam, view, index in progress(todo, desc="load patch images"):
        exam_id = str(exam.get("exam_id"))
        row = labels.get(exam_id) if labels is not None else None
        try:
            image = load_patch_image(workdir, exam, view, index, masks_dir, image_dir,
                                     boxes=(boxes or {}).get((exam_id, view)), labels=row)
        except MissingFileError:
            raise
        except (MammokitError, ValueError, OSError) as exc:
            excluded.append({"exam_id": exam_id, "image": exam[view][index], "reason": str(exc)})
            log.warning("excluding image %s: %s", exam[view][index], exc)
            continue
        loaded.append((exam, view, image))
    counts = counts if counts is not None else {}
    for key in ("unlocalised_malignant_breasts", "unlocalised_benign_breasts", "unlocalised_images"):
        counts.setdefault(key, 0)
    if labels is None:
        return [im for *_, im in loaded], excluded
    # Per breast and class: is the lesion the label speaks of localised in any of its views?
    localised: dict[tuple[str, str, str], bool] = {}
    for exam, view, image in loaded:
        for cls in ("malignant", "benign"):
            key = (str(exam.get("exam_id")), view[0], cls)
            localised[key] = localised.get(key, False) or bool(getattr(image, cls).any())
    images = []
    for exam, view, image in loaded:
        exam_id = str(exam.get("exam_id"))
        row = labels.get(exam_id) or {}
        side = "left" if view.startswith("L") else "right"
        missing = [cls for cls in ("malignant", "benign")
                   if int(row.get(f"{side}_{cls}") or 0) == 1 and not getattr(image, cls).any()]
        if missing:
            reason = f"{side} breast labelled {' and '.join(missing)} but no {' / '.join(missing)} mask or box in this view"
            excluded.append({"exam_id": exam_id, "image": image.name, "reason": reason})
            counts["unlocalised_images"] += 1
            continue
        images.append(image)
    for (exam_id, _side, cls), ok in localised.items():
        side = "left" if _side == "L" else "right"
        if not ok and int((labels.get(exam_id) or {}).get(f"{side}_{cls}") or 0) == 1:
            counts[f"unlocalised_{cls}_breasts"] += 1
    if counts["unlocalised_images"]:
        log.warning(
            "%d malignant and %d benign breast(s) have no mask or box at all; %d image(s) of labelled breasts "
            "without a mask or box in their view are left out of patch training (listed in excluded_images.csv)",
            counts["unlocalised_malignant_breasts"], counts["unlocalised_benign_breasts"], counts["unlocalised_images"],
        )
    return images, excluded


def patch_batch(
    images: list[PatchImage], items: list[tuple[int, int, int, int]], size: int, rng: np.random.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut (and with ``rng``, augment) patches: ``x [N, 1, P, P]`` float32, ``y [N]`` long."""
    xs = []
    for i, y0, x0, _ in items:
        p = extract_patch(images[i], y0, x0, size)
        xs.append(augment_patch(p, rng) if rng is not None else p)
    x = torch.from_numpy(np.stack(xs)[:, None])
    y = torch.tensor([it[3] for it in items], dtype=torch.long)
    return x, y


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: list[PatchImage],
    items: list[tuple[int, int, int, int]],
    config: PatchTrainConfig,
    size: int,
    device: torch.device,
    epoch: int,
    start_step: int = 0,
    accum: dict | None = None,
    on_step=None,
) -> dict[str, float]:
    """One epoch over ``items`` (batches of ``config.batch_size`` from ``start_step``);
    returns ``{"train_loss", "train_accuracy", "stopped"}``."""
    model.train()
    cl = use_channels_last(device, config.channels_last)
    accum = accum if accum else {"loss": 0.0, "correct": 0, "n": 0}
    steps = batches(items, config.batch_size)
    stopped = False
    for step in progress(range(start_step, len(steps)), desc=f"patch epoch {epoch}"):
        rng = rng_for(config.seed, "patch-augment", epoch, step)
        x, y = patch_batch(images, steps[step], size, rng)
        x = x.to(device, non_blocking=True)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device)
        with out_of_memory_is_fatal(device, "patches per step"):
            with autocast(device, config.amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accum["loss"] += float(loss.detach()) * len(y)
        accum["correct"] += int((logits.argmax(1) == y).sum())
        accum["n"] += len(y)
        if on_step is not None and on_step(step, accum):
            stopped = True
            break
    n = max(accum["n"], 1)
    return {"train_loss": accum["loss"] / n, "train_accuracy": accum["correct"] / n, "stopped": int(stopped)}


@torch.no_grad()
def evaluate(
    model: nn.Module, images: list[PatchImage], items: list[tuple[int, int, int, int]], size: int,
    device: torch.device, batch_size: int = 64, amp: bool = True,
) -> dict[str, float]:
    """Validation loss, one-vs-rest AUC per class, mean AUC and accuracy (``val_``-prefixed)."""
    model.eval()
    probs, losses, ys = [], [], []
    for chunk in batches(items, batch_size):
        x, y = patch_batch(images, chunk, size, None)
        with autocast(device, amp):
            logits = model(x.to(device)).float()
        losses.append(F.cross_entropy(logits, y.to(device), reduction="sum").item())
        probs.append(torch.softmax(logits, 1).cpu().numpy())
        ys.append(y.numpy())
    p, t = np.concatenate(probs), np.concatenate(ys)
    metrics = multiclass_metrics(p, t, CLASS_NAMES)
    return {"val_loss": float(sum(losses) / len(t)), **{f"val_{k}": v for k, v in metrics.items()}}


def train_patch(
    workdir: str | Path, masks_dir: str | Path, labels: str | Path, out: str | Path, epochs: int = 50, **kwargs: Any
) -> dict[str, Any]:
    """Train the patch classifier; ``kwargs`` are :class:`PatchTrainConfig` fields."""
    return train_patch_config(PatchTrainConfig(workdir=workdir, masks_dir=masks_dir, labels=labels, out=out, epochs=epochs, **kwargs))


def resume_patch(run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """Continue the patch run in ``run_dir`` (its ``config.json``; ``overrides`` e.g. device)."""
    config = load_run_config(run_dir, PatchTrainConfig)
    config.stop_after_steps = None
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    return train_patch_config(config, resume=True)


def _split_exams(config: PatchTrainConfig, exams: list[dict], labels: dict | None = None) -> tuple[list[dict], list[dict]]:
    from mammokit.data.manifest import read_labels
    from mammokit.training.datasets import TRAIN_SPLITS, VAL_SPLITS, split_by_patient

    labels = labels if labels is not None else read_labels(config.labels)
    known = [e for e in exams if str(e.get("exam_id")) in labels]
    if config.val_fraction is not None or not any(labels[str(e["exam_id"])].get("split") for e in known):
        if config.val_fraction is None:
            raise InputFileError(f"{config.labels}: no split column (train/val); give --val-fraction to split by patient")
        pid = {str(e["exam_id"]): str(labels[str(e["exam_id"])].get("patient_id") or e.get("patient_id") or e["exam_id"]) for e in known}
        held = split_by_patient(list(pid.values()), config.val_fraction, config.seed)
        return [e for e in known if pid[str(e["exam_id"])] not in held], [e for e in known if pid[str(e["exam_id"])] in held]
    split = {k: str(v.get("split") or "").lower() for k, v in labels.items()}
    return ([e for e in known if split[str(e["exam_id"])] in TRAIN_SPLITS],
            [e for e in known if split[str(e["exam_id"])] in VAL_SPLITS])


def train_patch_config(config: PatchTrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train (or with ``resume``, continue) the patch classifier described by ``config``.

    Returns ``{"best_score", "best_epoch", "epochs", "stopped", "checkpoint", "history"}``.
    """
    from mammokit.data.examlist import load_exams
    from mammokit.models import create_model

    set_determinism(config.deterministic)
    device = resolve_device(config.device)
    run = Path(config.out)
    check_run_folder(run, resume)
    from mammokit.data.boxes import read_boxes
    from mammokit.data.manifest import read_labels

    workdir = Path(config.workdir)
    masks_dir = Path(config.masks_dir) if config.masks_dir is not None else None
    if masks_dir is not None and not masks_dir.is_dir():
        raise MissingFileError(f"{masks_dir}: masks folder not found")
    boxes = read_boxes(config.boxes) if config.boxes is not None else None
    labels = read_labels(config.labels)
    exams, meta = load_exams(workdir / "exams.json")
    preset = workdir_preset(meta, workdir / "exams.json")
    size = int(config.patch_size or preset.patch_size)
    arch = config.arch or ("densenet121_patch" if preset.patch_arch.startswith("densenet") else "patchnet_small")
    train_exams, val_exams = _split_exams(config, exams, labels)
    image_dir = str(meta.get("image_dir", "cropped"))
    if boxes is not None:
        known = {(str(e.get("exam_id")), v) for e in exams for v in VIEWS if e.get(v)}
        stray = [key for key in boxes if key not in known]
        if stray:
            log.warning("%s: %d box group(s) name an exam / view not in %s (first: %s %s)", config.boxes,
                        len(stray), workdir / "exams.json", *stray[0])
    counts: dict[str, int] = {}
    train_images, ex1 = load_patch_images(train_exams, workdir, masks_dir, image_dir, boxes, labels, counts)
    val_images, ex2 = load_patch_images(val_exams, workdir, masks_dir, image_dir, boxes, labels, counts)
    if not train_images or not val_images:
        raise InputFileError(f"{workdir}: no usable {'training' if not train_images else 'validation'} images for patch training")
    run.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(run / "excluded_images.csv", ex1 + ex2, ("exam_id", "image", "reason"))
    model_args = {"num_classes": len(CLASS_NAMES), "in_chans": 1}
    write_run_config(run, config.to_dict(), {"preset": preset.to_dict(), "arch": arch, "patch_size": size,
                                             "train_images": len(train_images), "val_images": len(val_images),
                                             "model_args": model_args, "classes": list(CLASS_NAMES),
                                             "excluded_images": len(ex1) + len(ex2), **counts})
    val_items = sample_patches(val_images, config.val_patches_per_class, size, rng_for(config.seed, "val-patches"),
                               config.lesion_fraction, config.min_tissue_fraction, config.hard_negative_fraction)
    if len({it[3] for it in val_items}) < 2:
        raise InputFileError("validation images give patches of fewer than two classes: AUC undefined (check the masks)")

    torch.manual_seed(derive_seed(config.seed, "init") % 2**63)
    build_args = dict(model_args)
    if config.imagenet_weights:
        if arch != "densenet121_patch":
            raise UsageError("--imagenet-weights applies to densenet121_patch only")
        build_args["imagenet_weights"] = config.imagenet_weights
    model = create_model(arch, **build_args).to(device)
    if use_channels_last(device, config.channels_last):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(l2_param_groups(model, config.weight_decay), lr=config.lr)
    settings = LoopSettings(config.epochs, config.patience, config.save_every, config.stop_after_steps, config.to_dict())
    loop = TrainLoop(run, model, optimizer, settings)
    torch.manual_seed(derive_seed(config.seed, "train") % 2**63)
    if resume:
        loop.load()
    hooks = _PatchHooks(config, model, optimizer, device, train_images, val_images, val_items, size, arch,
                        model_args, preset)
    summary = loop.run_epochs(hooks)
    return {**summary, "checkpoint": str(run / "best.safetensors")}


class _PatchHooks:
    """The patch trainer's side of :class:`~mammokit.training.engine.TrainLoop`."""

    def __init__(self, config, model, optimizer, device, train_images, val_images, val_items, size, arch,
                 model_args, preset):
        self.config, self.model, self.optimizer, self.device = config, model, optimizer, device
        self.train_images, self.val_images, self.val_items, self.size = train_images, val_images, val_items, size
        self.arch, self.model_args, self.preset = arch, model_args, preset
        self.items: list = []

    def new_accum(self) -> dict:
        return {"loss": 0.0, "correct": 0, "n": 0}

    def begin_epoch(self, epoch: int, start_step: int) -> int:
        c = self.config
        self.items = sample_patches(self.train_images, c.patches_per_class, self.size, rng_for(c.seed, "patches", epoch),
                                    c.lesion_fraction, c.min_tissue_fraction, c.hard_negative_fraction,
                                    c.normal_ratio)
        return len(batches(self.items, c.batch_size))

    def train_epoch(self, epoch: int, start_step: int, accum: dict, on_step) -> dict:
        return train_one_epoch(self.model, self.optimizer, self.train_images, self.items, self.config, self.size,
                               self.device, epoch, start_step, accum, on_step)

    def validate(self, epoch: int) -> dict:
        return evaluate(self.model, self.val_images, self.val_items, self.size, self.device, amp=self.config.amp)

    def throughput(self, train_time: float) -> dict:
        n = len(self.items)
        return {"train_patches": n, "train_patches_per_s": round(n / max(train_time, 1e-9), 1)}

    def save_checkpoints(self, epoch: int, row: dict, improved: bool) -> None:
        c, run = self.config, Path(self.config.out)
        extra = {"epoch": epoch, "metrics": {k: v for k, v in row.items() if isinstance(v, (int, float))},
                 "classes": list(CLASS_NAMES), "patch_size": self.size, "trainer": "mammokit.train_patch",
                 "seed": c.seed, "lesion_fraction": c.lesion_fraction, "min_tissue_fraction": c.min_tissue_fraction}
        for name in (("best.safetensors", "last.safetensors") if improved else ("last.safetensors",)):
            save_checkpoint(run / name, self.model, arch=self.arch, model_args=self.model_args, preset=self.preset,
                            extra=extra)

    def log_epoch(self, row: dict, improved: bool) -> None:
        log.info("patch epoch %d: train loss %.4f, val loss %.4f, val AUC malignant %.3f benign %.3f normal %.3f%s",
                 row["epoch"], row["train_loss"], row["val_loss"], row["val_auc_malignant"], row["val_auc_benign"],
                 row["val_auc_normal"], " (best)" if improved else "")
