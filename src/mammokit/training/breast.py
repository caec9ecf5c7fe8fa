"""Breast-level (four-view) model training: cancer models and BI-RADS pretraining (paper IV-A.1,
IV-C), single process or DistributedDataParallel under torchrun, resumable at any step.

Run folder (``config.out``)::

    config.json           resolved TrainConfig (+ preset, data sizes)
    excluded_exams.csv    exam_id,reason of the exams left out before training
    state.pt              resumable state (every ``save_every`` steps and every epoch end)
    best.safetensors      mammokit checkpoint of the best validation epoch (load_model)
    last.safetensors      the latest epoch's model
    metrics.jsonl/.csv    one row per epoch (train loss, validation loss and AUCs)
    tensorboard/          when tensorboard is installed
    ensemble.safetensors  with ensemble K > 1: the K members' best models as one checkpoint
                          (each member trained in member<k>/ like a single run)

Determinism: weights are initialised from ``derive_seed(seed, "init")``; the epoch's exam sample
and each exam's window from ``(seed, epoch, exam)``; the input noise from the torch RNG, whose
state (per rank) is saved with the model and optimiser, so resuming continues the identical
computation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from mammokit.config import LABEL_COLUMNS, Preset, workdir_preset
from mammokit.errors import UsageError
from mammokit.training import distributed as D
from mammokit.training.common import (
    autocast,
    load_run_config,
    loader_generator,
    out_of_memory_is_fatal,
    resolve_device,
    set_determinism,
    use_channels_last,
    write_excluded,
    write_run_config,
)
from mammokit.training.config import TrainConfig
from mammokit.training.datasets import (
    ExamDataset,
    PreparedData,
    collate_exams,
    prepare_data,
)
from mammokit.training.engine import LoopSettings, TrainLoop, check_run_folder, unwrap
from mammokit.training.losses import breast_loss, l2_param_groups
from mammokit.training.metrics import cancer_metrics, multiclass_metrics
from mammokit.training.sampling import batches, epoch_sample, shard
from mammokit.utils.log import get_logger, progress
from mammokit.utils.seed import derive_seed

log = get_logger(__name__)

BIRADS_NAMES = ("birads_0", "birads_1", "birads_2")


# ----------------------------------------------------------------------------- building blocks


def model_args_for(config: TrainConfig, preset: Preset) -> dict[str, Any]:
    noise = preset.input_noise_std if config.input_noise_std is None else config.input_noise_std
    return {"in_channels": 3 if config.heatmaps else 1, "task": config.task, "input_noise_std": float(noise)}


def build_model(config: TrainConfig, preset: Preset) -> nn.Module:
    """The breast-level model, weights from ``derive_seed(seed, "init")``; columns from
    ``config.init`` when given (heads stay freshly initialised)."""
    from mammokit.models import create_model
    from mammokit.training.transfer import init_from_checkpoint

    torch.manual_seed(derive_seed(config.seed, "init") % 2**63)
    model = create_model(config.variant, **model_args_for(config, preset))
    if config.init:
        init_from_checkpoint(model, config.init)
    return model


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, lr 1e-5, L2 10^-4.5 on weights (see :func:`mammokit.training.losses.l2_param_groups`)."""
    return torch.optim.Adam(l2_param_groups(model, config.weight_decay), lr=config.lr)


class _Batches:
    """A batch sampler whose batches are replaced every epoch (keeps DataLoader workers, and the
    decoded images they cache, alive across epochs)."""

    def __init__(self) -> None:
        self.items: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def loader_workers(requested: int | None, device: torch.device) -> int:
    """DataLoader worker processes: as requested, else 4 on CUDA (so PNG decoding and window
    sampling overlap the GPU's work; each worker keeps its own decoded-image cache across epochs)
    and 0 on the CPU (the model's threads already use the cores)."""
    if requested is not None:
        return int(requested)
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


def make_loader(dataset: ExamDataset, sampler: _Batches, config: TrainConfig, device: torch.device, seed: int):
    workers = loader_workers(config.num_workers, device)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_exams,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=loader_generator(seed),
    )


def _to_device(views: dict[str, torch.Tensor], device: torch.device, channels_last: bool) -> dict[str, torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {v: x.to(device, non_blocking=True).contiguous(memory_format=fmt) for v, x in views.items()}


def _missing_views(core: nn.Module, batch: dict, device: torch.device):
    """``(present [B, 4] or None, label mask or None)`` of a batch: None when every exam has all
    four views (then the computation is exactly the paper's)."""
    present = batch.get("present")
    if present is None or bool(present.all()):
        return None, None
    present = present.to(device)
    return present, core.label_mask(present)


def sync_buffers(model: nn.Module, ctx: D.DistContext) -> None:
    """Give every rank rank 0's batch-norm running statistics. DDP broadcasts buffers at the start
    of each training forward, but the last forward of an epoch updates them locally; syncing
    before evaluation and saving makes every rank (and the checkpoint) the same model."""
    if ctx.enabled:
        import torch.distributed as dist

        for buf in unwrap(model).buffers():
            dist.broadcast(buf, src=0)


# ----------------------------------------------------------------------------- train / evaluate


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: torch.utils.data.DataLoader,
    global_sizes: list[int],
    local_sizes: list[int],
    device: torch.device,
    *,
    epoch: int,
    start_step: int = 0,
    ctx: D.DistContext = D.DistContext(),
    amp: bool = True,
    channels_last: bool = False,
    accum: dict | None = None,
    on_step: Callable[[int, dict], bool] | None = None,
) -> dict[str, float]:
    """Train over one epoch's batches (from ``start_step``).

    Args:
        loader: yields this rank's part of each global batch
            (``{"views": {view: [b, C, h, w]}, "targets": {label: [b]}}``).
        global_sizes: exams in each global batch (all steps of the epoch), to weight the ranks'
            losses so that the DDP gradient average equals the gradient of the global batch mean.
        local_sizes: real exams in this rank's part of each batch from ``start_step`` (0 for a
            padding exam, run only so every rank joins the all-reduce).
        accum: running sums ``{"loss": float, "n": int}`` (kept in the resumable state so a
            resumed epoch reports the same mean loss).
        on_step: called after each step with ``(step_index, accum)``; returning True stops.
    Returns:
        ``{"train_loss": mean loss per exam over the epoch, "stopped": 0 | 1}``.
    """
    model.train()
    core = unwrap(model)
    accum = accum if accum is not None else {"loss": 0.0, "n": 0}
    stopped = False
    bar = progress(loader, total=len(loader), desc=f"epoch {epoch}", disable=None if ctx.is_main else True)
    for offset, batch in enumerate(bar):
        step = start_step + offset
        views = _to_device(batch["views"], device, channels_last)
        targets = {k: v.to(device, non_blocking=True) for k, v in batch["targets"].items()}
        n_local = local_sizes[offset]
        present, mask = _missing_views(core, batch, device)
        with out_of_memory_is_fatal(device, "exams per step"):
            with autocast(device, amp):
                outputs = model(views, present)
            loss, _ = breast_loss(outputs, core.output_labels, targets, mask)
            scale = n_local * ctx.world_size / global_sizes[step]
            optimizer.zero_grad(set_to_none=True)
            (loss * scale).backward()
            optimizer.step()
        stats = torch.tensor([float(loss.detach()) * n_local, n_local], dtype=torch.float64)
        if ctx.enabled:
            import torch.distributed as dist

            dist.all_reduce(stats)
        accum["loss"] += float(stats[0])
        accum["n"] += int(stats[1])
        if ctx.is_main:
            bar.set_postfix(loss=f"{accum['loss'] / max(accum['n'], 1):.4f}")
        if on_step is not None and on_step(step, accum):
            stopped = True
            break
    mean = accum["loss"] / accum["n"] if accum["n"] else float("nan")
    return {"train_loss": mean, "stopped": int(stopped)}


@torch.no_grad()
def predict_dataset(
    model: nn.Module,
    dataset: ExamDataset,
    device: torch.device,
    *,
    ctx: D.DistContext = D.DistContext(),
    batch_size: int = 8,
    amp: bool = True,
    channels_last: bool = False,
    num_workers: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Deterministic-window predictions for every exam of ``dataset``, sharded over the ranks
    (exam ``i`` on rank ``i % world``) and gathered with all_gather.

    Returns ``(probs [N, 4] or [N, 3], targets {label: [N]}, mean loss per exam)`` in dataset
    order, identical on every rank.
    """
    from mammokit.models.breast import probabilities_from_logits

    core = unwrap(model)
    core.eval()
    mine = list(range(ctx.rank, len(dataset), ctx.world_size))
    sampler = _Batches()
    sampler.items = [[(i, -1) for i in b] for b in batches(mine, batch_size)]
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_exams,
        pin_memory=device.type == "cuda", generator=loader_generator(0),
    )
    rows: list[tuple[int, list[float], float]] = []
    for batch in progress(loader, total=len(loader), desc="validate", disable=None if ctx.is_main else True):
        views = _to_device(batch["views"], device, channels_last)
        targets = {k: v.to(device) for k, v in batch["targets"].items()}
        present, mask = _missing_views(core, batch, device)
        with autocast(device, amp):
            logits = core(views, present)
        probs = probabilities_from_logits({g: x.float() for g, x in logits.items()}, core.output_labels, core.task, mask)
        # Per-exam loss: the same sum of terms as training, for each exam on its own.
        for j, idx in enumerate(batch["index"].tolist()):
            one = {g: x[j : j + 1].float() for g, x in logits.items()}
            one_mask = None if mask is None else {g: m[j : j + 1] for g, m in mask.items()}
            loss_j, _ = breast_loss(one, core.output_labels, {k: v[j : j + 1] for k, v in targets.items()}, one_mask)
            rows.append((idx, probs[j].cpu().tolist(), float(loss_j)))
    gathered = [r for part in D.all_gather_objects(rows, ctx) for r in part]
    gathered.sort(key=lambda r: r[0])
    if [r[0] for r in gathered] != list(range(len(dataset))):
        raise RuntimeError("validation gather lost exams")
    probs_all = np.asarray([r[1] for r in gathered], dtype=np.float64)
    losses = np.asarray([r[2] for r in gathered], dtype=np.float64)
    labels = list(dataset.records[0].targets)
    targets_all = {k: np.asarray([rec.targets[k] for rec in dataset.records]) for k in labels}
    return probs_all, targets_all, float(losses.mean()) if len(losses) else float("nan")


def evaluate(
    model: nn.Module,
    dataset: ExamDataset,
    device: torch.device,
    task: str,
    **kwargs: Any,
) -> dict[str, float]:
    """Validation metrics: loss, AUC per label and ``mean_auc`` (cancer: mean over the four
    labels; BI-RADS: mean one-vs-rest AUC over the three classes), ``val_``-prefixed."""
    probs, targets, loss = predict_dataset(model, dataset, device, **kwargs)
    if task == "birads":
        metrics = multiclass_metrics(probs, targets["birads"], BIRADS_NAMES)
    else:
        metrics = cancer_metrics(probs, np.stack([targets[c] for c in LABEL_COLUMNS], axis=1))
    return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items()}}


# ----------------------------------------------------------------------------- the run


def _load_data(config: TrainConfig, ctx: D.DistContext) -> tuple[PreparedData, Preset, str]:
    from mammokit.data.examlist import load_exams
    from mammokit.data.manifest import read_labels

    workdir = Path(config.workdir)
    exams, meta = load_exams(workdir / "exams.json")
    preset = workdir_preset(meta, workdir / "exams.json")
    labels = read_labels(config.labels)
    data = prepare_data(
        exams, meta, labels, workdir, config.task, config.heatmaps, config.val_fraction, config.seed,
        check_images=ctx.is_main or not ctx.enabled,
    )
    if ctx.enabled:
        # Only rank 0 checks the image files (I/O); everyone uses its verdict.
        data = D.broadcast_object(data, ctx)
    if config.max_train_exams:
        data.train = data.train[: config.max_train_exams]
    if config.max_val_exams:
        data.val = data.val[: config.max_val_exams]
    return data, preset, str(meta.get("image_dir", "cropped"))


def _checkpoint_extra(config: TrainConfig, epoch: int, metrics: dict) -> dict:
    return {"epoch": epoch, "metrics": metrics, "task": config.task, "variant": config.variant,
            "heatmaps": config.heatmaps, "seed": config.seed, "init": config.init, "trainer": "mammokit.train_breast"}


def train_breast(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train a breast-level model (or an ensemble of ``config.ensemble`` of them).

    Args:
        config: the run's configuration (see :class:`TrainConfig`).
        resume: continue the run in ``config.out`` from its ``state.pt``.
    Returns:
        summary ``{"best_score", "best_epoch", "epochs", "checkpoint", "stopped"}``
        (``stopped``: True when ``stop_after_steps`` ended the run early; resume it later).
    """
    if config.ensemble > 1:
        return _train_ensemble(config, resume)
    return _train_single(config, resume)


def resume_breast(run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """Continue the run in ``run_dir`` with its own ``config.json`` (``overrides``: e.g. device,
    num_workers, stop_after_steps, epochs)."""
    config = load_run_config(run_dir, TrainConfig)
    config.stop_after_steps = None  # a stop request applies to the life it was given in
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    return train_breast(config, resume=True)


class _BreastHooks:
    """The breast-level trainer's side of :class:`~mammokit.training.engine.TrainLoop`."""

    def __init__(self, config, model, optimizer, device, ctx, loader, sampler, train_set, val_set, data, preset, cl):
        self.config, self.model, self.optimizer, self.device, self.ctx = config, model, optimizer, device, ctx
        self.loader, self.sampler, self.train_set, self.val_set = loader, sampler, train_set, val_set
        self.biopsied = [r.biopsied for r in data.train]
        self.preset, self.cl = preset, cl
        self.sizes: list[int] = []
        self.local_sizes: list[int] = []

    def new_accum(self) -> dict:
        return {"loss": 0.0, "n": 0}

    def begin_epoch(self, epoch: int, start_step: int) -> int:
        order = epoch_sample(self.biopsied, self.config.seed, epoch, self.config.sampling)
        global_batches = batches(order, self.config.batch_size)
        self.sizes = [len(b) for b in global_batches]
        local = []
        for b in global_batches[start_step:]:
            part = shard(b, self.ctx.rank, self.ctx.world_size)
            # An empty part (global batch smaller than the world) runs one exam with weight 0.
            local.append(([(i, epoch) for i in part], len(part)) if part else ([(b[0], epoch)], 0))
        self.sampler.items = [keys for keys, _ in local]
        self.local_sizes = [w for _, w in local]
        return len(global_batches)

    def train_epoch(self, epoch: int, start_step: int, accum: dict, on_step) -> dict:
        return train_one_epoch(
            self.model, self.optimizer, self.loader, self.sizes, self.local_sizes, self.device, epoch=epoch,
            start_step=start_step, ctx=self.ctx, amp=self.config.amp, channels_last=self.cl, accum=accum,
            on_step=on_step,
        )

    def validate(self, epoch: int) -> dict:
        return evaluate(self.model, self.val_set, self.device, self.config.task, ctx=self.ctx,
                        batch_size=self.config.eval_batch_size, amp=self.config.amp, channels_last=self.cl,
                        num_workers=0)

    def throughput(self, train_time: float) -> dict:
        n = sum(self.sizes)
        return {"train_exams": n, "train_exams_per_s": round(n / max(train_time, 1e-9), 3)}

    def save_checkpoints(self, epoch: int, row: dict, improved: bool) -> None:
        from mammokit.models.checkpoint import save_checkpoint

        run, config = Path(self.config.out), self.config
        margs = model_args_for(config, self.preset)
        extra = _checkpoint_extra(config, epoch, {k: v for k, v in row.items() if isinstance(v, (int, float))})
        for name in (("best.safetensors", "last.safetensors") if improved else ("last.safetensors",)):
            save_checkpoint(run / name, unwrap(self.model), arch=config.variant, model_args=margs,
                            preset=self.preset, extra=extra)

    def log_epoch(self, row: dict, improved: bool) -> None:
        log.info("epoch %d: train loss %.4f, val loss %.4f, val mean AUC %.4f%s", row["epoch"], row["train_loss"],
                 row["val_loss"], row["val_mean_auc"], " (best)" if improved else "")


def _train_single(config: TrainConfig, resume: bool) -> dict[str, Any]:
    set_determinism(config.deterministic)
    ctx = D.init_distributed(_device_type(config.device))
    device = resolve_device(config.device, ctx.local_rank)
    run = Path(config.out)
    check_run_folder(run, resume)

    data, preset, image_dir = _load_data(config, ctx)
    if ctx.is_main:
        run.mkdir(parents=True, exist_ok=True)
        write_excluded(run, data.excluded)
        write_run_config(run, config.to_dict(), {
            "preset": preset.to_dict(), "train_exams": len(data.train), "val_exams": len(data.val),
            "excluded_exams": len(data.excluded), "world_size": ctx.world_size, "device": str(device),
            "model_args": model_args_for(config, preset),
        })
    log.info("%s %s: %d training exams (%d biopsied), %d validation, %d excluded", config.task, config.variant,
             len(data.train), sum(r.biopsied for r in data.train), len(data.val), len(data.excluded))

    model = build_model(config, preset).to(device)
    cl = use_channels_last(device, config.channels_last)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    settings = LoopSettings(config.epochs, config.patience, config.save_every, config.stop_after_steps, config.to_dict())
    loop = TrainLoop(run, model, optimizer, settings, ctx, sync=lambda: sync_buffers(loop.model, ctx))
    # Each rank draws its own input noise; rank 0 of a single-process run keeps the seed's stream.
    torch.manual_seed(derive_seed(config.seed, "noise", ctx.rank) % 2**63)
    if resume:
        loop.load()
    if ctx.enabled:
        loop.model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    train_set = ExamDataset(data.train, config.workdir, preset, config.heatmaps, config.augment, config.seed, config.cache_images, image_dir)
    val_set = ExamDataset(data.val, config.workdir, preset, config.heatmaps, False, config.seed, config.cache_images, image_dir)
    sampler = _Batches()
    loader = make_loader(train_set, sampler, config, device, derive_seed(config.seed, "loader") % 2**63)
    hooks = _BreastHooks(config, loop.model, optimizer, device, ctx, loader, sampler, train_set, val_set, data, preset, cl)
    summary = loop.run_epochs(hooks)
    return {**summary, "checkpoint": str(run / "best.safetensors")}


def _device_type(name: str | None) -> str:
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name).type


def _member_config(config: TrainConfig, k: int) -> TrainConfig:
    member = TrainConfig.from_dict({**config.to_dict(), "ensemble": 1, "out": str(Path(config.out) / f"member{k}"),
                                    "seed": derive_seed(config.seed, "ensemble-member", k) % 2**31})
    return member


def _train_ensemble(config: TrainConfig, resume: bool) -> dict[str, Any]:
    """K members (heads from different seeds, columns from ``init``), then one ensemble file."""
    from mammokit.models.checkpoint import load_model, save_ensemble

    run = Path(config.out)
    ctx_main = D.init_distributed(_device_type(config.device)).is_main
    if not resume and (run / "config.json").exists():
        raise UsageError(f"{run}: a run already exists here; resume it with --resume {run} or choose another --out")
    if ctx_main:
        run.mkdir(parents=True, exist_ok=True)
        write_run_config(run, config.to_dict())
    summaries = []
    for k in range(config.ensemble):
        member = _member_config(config, k)
        member_run = Path(member.out)
        member_resume = resume and (member_run / "state.pt").exists()
        log.info("ensemble member %d/%d (seed %d)", k + 1, config.ensemble, member.seed)
        summary = _train_single(member, member_resume)
        summaries.append(summary)
        if summary["stopped"]:
            return {"stopped": True, "members": summaries, "checkpoint": None}
    if ctx_main:
        models, metas = zip(*(load_model(Path(s["checkpoint"])) for s in summaries))
        save_ensemble(run / "ensemble.safetensors", list(models), arch=metas[0]["arch"],
                      model_args=metas[0]["model_args"], preset=metas[0].get("preset"),
                      extra={"members": [s["checkpoint"] for s in summaries],
                             "member_best_scores": [s["best_score"] for s in summaries],
                             "task": config.task, "variant": config.variant, "trainer": "mammokit.train_breast"})
    return {"stopped": False, "members": summaries, "checkpoint": str(run / "ensemble.safetensors"),
            "best_score": float(np.mean([s["best_score"] for s in summaries]))}
