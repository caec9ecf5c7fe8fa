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

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mammokit.config import VIEWS, workdir_preset
from mammokit.training.common import (
    autocast,
    resolve_device,
    set_determinism,
    use_channels_last,
    write_run_config,
)
from mammokit.training.config import PatchTrainConfig
from mammokit.training.early_stopping import EarlyStopping
from mammokit.training.losses import l2_param_groups
from mammokit.training.metrics import MetricsWriter, multiclass_metrics
from mammokit.training.patches import CLASS_NAMES, PatchImage, extract_patch, load_patch_image, sample_patches
from mammokit.transforms import augment_patch
from mammokit.training.sampling import batches
from mammokit.training.state import capture_rng, load_state, restore_rng, save_state
from mammokit.utils.io import write_csv_atomic
from mammokit.utils.log import get_logger, progress
from mammokit.utils.seed import derive_seed, rng_for

log = get_logger(__name__)


def load_patch_images(
    exams: list[dict], workdir: Path, masks_dir: Path, image_dir: str
) -> tuple[list[PatchImage], list[dict[str, str]]]:
    """Every image of ``exams`` with its masks; unreadable ones are returned as excluded rows."""
    images, excluded = [], []
    todo = [(e, v, i) for e in exams for v in VIEWS for i in range(len(e.get(v) or []))]
    for exam, view, index in progress(todo, desc="load patch images"):
        try:
            images.append(load_patch_image(workdir, exam, view, index, masks_dir, image_dir))
        except (ValueError, OSError) as exc:
            excluded.append({"exam_id": str(exam.get("exam_id")), "image": exam[view][index], "reason": str(exc)})
            log.warning("excluding image %s: %s", exam[view][index], exc)
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
        with autocast(device, config.amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        accum["loss"] += float(loss.detach()) * len(y)
        accum["correct"] += int((logits.argmax(1) == y).sum())
        accum["n"] += len(y)
        if on_step is not None and on_step(step, len(steps), accum):
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
    from mammokit.training.breast import load_run_config

    config = load_run_config(run_dir, PatchTrainConfig)
    config.stop_after_steps = None
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    return train_patch_config(config, resume=True)


def _split_exams(config: PatchTrainConfig, exams: list[dict]) -> tuple[list[dict], list[dict]]:
    from mammokit.data.manifest import read_labels
    from mammokit.training.datasets import TRAIN_SPLITS, VAL_SPLITS, split_by_patient

    labels = read_labels(config.labels)
    known = [e for e in exams if str(e.get("exam_id")) in labels]
    if config.val_fraction is not None or not any(labels[str(e["exam_id"])].get("split") for e in known):
        if config.val_fraction is None:
            raise ValueError(f"{config.labels}: no split column (train/val); give --val-fraction to split by patient")
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
    from mammokit.models.checkpoint import save_checkpoint

    set_determinism(config.deterministic)
    device = resolve_device(config.device)
    run = Path(config.out)
    state_path = run / "state.pt"
    if not resume and state_path.exists():
        raise ValueError(f"{run}: a run already exists here; resume it with --resume {run} or choose another --out")
    workdir, masks_dir = Path(config.workdir), Path(config.masks_dir)
    if not masks_dir.is_dir():
        raise FileNotFoundError(f"{masks_dir}: masks folder not found")
    exams, meta = load_exams(workdir / "exams.json")
    preset = workdir_preset(meta, workdir / "exams.json")
    size = int(config.patch_size or preset.patch_size)
    arch = config.arch or ("densenet121_patch" if preset.patch_arch.startswith("densenet") else "patchnet_small")
    train_exams, val_exams = _split_exams(config, exams)
    image_dir = str(meta.get("image_dir", "cropped"))
    train_images, ex1 = load_patch_images(train_exams, workdir, masks_dir, image_dir)
    val_images, ex2 = load_patch_images(val_exams, workdir, masks_dir, image_dir)
    if not train_images or not val_images:
        raise ValueError(f"{workdir}: no usable {'training' if not train_images else 'validation'} images for patch training")
    run.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(run / "excluded_images.csv", ex1 + ex2, ("exam_id", "image", "reason"))
    model_args = {"num_classes": len(CLASS_NAMES), "in_chans": 1}
    write_run_config(run, config.to_dict(), {"preset": preset.to_dict(), "arch": arch, "patch_size": size,
                                             "train_images": len(train_images), "val_images": len(val_images),
                                             "model_args": model_args, "classes": list(CLASS_NAMES)})
    val_items = sample_patches(val_images, config.val_patches_per_class, size, rng_for(config.seed, "val-patches"),
                               config.lesion_fraction, config.min_tissue_fraction)
    if len({it[3] for it in val_items}) < 2:
        raise ValueError("validation images give patches of fewer than two classes: AUC undefined (check the masks)")

    torch.manual_seed(derive_seed(config.seed, "init") % 2**63)
    build_args = dict(model_args)
    if config.imagenet_weights:
        if arch != "densenet121_patch":
            raise ValueError("--imagenet-weights applies to densenet121_patch only")
        build_args["imagenet_weights"] = config.imagenet_weights
    model = create_model(arch, **build_args).to(device)
    if use_channels_last(device, config.channels_last):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(l2_param_groups(model, config.weight_decay), lr=config.lr)
    es = EarlyStopping(config.patience)
    history: list[dict] = []
    epoch, start_step, accum = 0, 0, None
    torch.manual_seed(derive_seed(config.seed, "train") % 2**63)
    finished = False
    if resume and state_path.exists():
        st = load_state(state_path)
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
        es.load_state_dict(st["early_stopping"])
        history = list(st["history"])
        epoch, start_step, accum = int(st["epoch"]), int(st["step"]), dict(st["accum"])
        finished = bool(st.get("finished", False))
        restore_rng(st["rng"][0])
    writer = MetricsWriter(run)
    if history:
        writer.write(history)
    steps_done, stopped = 0, False

    def save(next_epoch: int, next_step: int, acc: dict | None, done: bool = False) -> None:
        save_state(state_path, model=model.state_dict(), optimizer=optimizer.state_dict(), epoch=next_epoch,
                   step=next_step, accum=dict(acc or {}), early_stopping=es.state_dict(), history=history,
                   rng=[capture_rng()], world_size=1, finished=done, config=config.to_dict())

    while not finished and epoch < config.epochs:
        items = sample_patches(train_images, config.patches_per_class, size, rng_for(config.seed, "patches", epoch),
                               config.lesion_fraction, config.min_tissue_fraction)

        def on_step(step: int, n_steps: int, acc: dict) -> bool:
            nonlocal steps_done
            steps_done += 1
            last = step == n_steps - 1
            hit = config.stop_after_steps is not None and steps_done >= config.stop_after_steps
            if not last and ((step + 1) % config.save_every == 0 or hit):
                save(epoch, step + 1, acc)
            return hit and not last

        t0 = time.perf_counter()
        stats = train_one_epoch(model, optimizer, train_images, items, config, size, device, epoch, start_step, accum, on_step)
        if stats["stopped"]:
            stopped = True
            break
        train_time = time.perf_counter() - t0
        val = evaluate(model, val_images, val_items, size, device, amp=config.amp)
        improved = es.step(val["val_mean_auc"], epoch)
        row = {"epoch": epoch, "train_loss": stats["train_loss"], "train_accuracy": stats["train_accuracy"], **val,
               "best_score": es.best, "best_epoch": es.best_epoch, "train_patches": len(items),
               "train_time_s": round(train_time, 3), "train_patches_per_s": round(len(items) / max(train_time, 1e-9), 1)}
        history.append(row)
        extra = {"epoch": epoch, "metrics": {k: v for k, v in row.items() if isinstance(v, (int, float))},
                 "classes": list(CLASS_NAMES), "patch_size": size, "trainer": "mammokit.train_patch", "seed": config.seed,
                 "lesion_fraction": config.lesion_fraction, "min_tissue_fraction": config.min_tissue_fraction}
        if improved:
            save_checkpoint(run / "best.safetensors", model, arch=arch, model_args=model_args, preset=preset, extra=extra)
        save_checkpoint(run / "last.safetensors", model, arch=arch, model_args=model_args, preset=preset, extra=extra)
        log.info("patch epoch %d: train loss %.4f, val loss %.4f, val AUC malignant %.3f benign %.3f normal %.3f%s",
                 epoch, row["train_loss"], val["val_loss"], val["val_auc_malignant"], val["val_auc_benign"],
                 val["val_auc_normal"], " (best)" if improved else "")
        epoch, start_step, accum = epoch + 1, 0, None
        finished = es.should_stop or epoch >= config.epochs
        save(epoch, 0, None, done=finished)
        writer.write(history, row)
        if config.stop_after_steps is not None and steps_done >= config.stop_after_steps and not finished:
            stopped = True
            break
    writer.close()
    return {"best_score": es.best, "best_epoch": es.best_epoch, "epochs": epoch, "stopped": stopped,
            "checkpoint": str(run / "best.safetensors"), "history": history}
