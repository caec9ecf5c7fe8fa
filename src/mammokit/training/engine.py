"""The one training loop: epochs, validation, early stopping, checkpoints, resume at any step.

Both trainers (the patch classifier, :mod:`.patch`, and the breast-level models, :mod:`.breast`)
run their epochs through :class:`TrainLoop`; what differs between them comes in as
:class:`LoopHooks` (how an epoch's batches are made and trained, how validation is scored, what a
checkpoint holds, what is logged).

Per epoch: ``begin_epoch`` (the epoch's batches), ``train_epoch`` (steps from ``start_step``;
after each step the loop may write the resumable state), ``validate``, the early-stopping score
(the validation mean AUC; when a label has a single class in validation the AUC is undefined and
the score falls back to minus the validation loss, with a warning), ``save_checkpoints``, then
``state.pt`` and the metrics files. The resumable state (``RUN/state.pt``) is written every
``save_every`` steps, when ``stop_after_steps`` ends a life early, and at every epoch end; it holds
the model, the optimiser, the position, the early stopping, the history and every rank's RNG
states, so a resumed run computes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch.nn as nn

from mammokit.errors import MissingFileError, UsageError
from mammokit.training import distributed as D
from mammokit.training.early_stopping import EarlyStopping
from mammokit.training.metrics import MetricsWriter
from mammokit.training.state import capture_rng, load_state, restore_rng, save_state
from mammokit.utils.log import get_logger

log = get_logger(__name__)

__all__ = ["LoopHooks", "LoopSettings", "TrainLoop", "check_run_folder", "unwrap"]

OnStep = Callable[[int, dict], bool]


class LoopHooks(Protocol):
    """What a trainer supplies to :class:`TrainLoop`."""

    def new_accum(self) -> dict:
        """Fresh running sums of an epoch (kept in the state so a resumed epoch reports the same)."""

    def begin_epoch(self, epoch: int, start_step: int) -> int:
        """Prepare the epoch's batches; return the number of steps in the whole epoch."""

    def train_epoch(self, epoch: int, start_step: int, accum: dict, on_step: OnStep) -> dict[str, float]:
        """Train the steps from ``start_step``; call ``on_step(step, accum)`` after each and stop
        when it returns True. Returns train metrics (``train_loss``...) and ``stopped`` (0/1)."""

    def validate(self, epoch: int) -> dict[str, float]:
        """Validation metrics, ``val_``-prefixed, with ``val_mean_auc`` and ``val_loss``."""

    def throughput(self, train_time: float) -> dict[str, Any]:
        """Extra row fields about the epoch's size and speed (e.g. ``train_exams_per_s``)."""

    def save_checkpoints(self, epoch: int, row: dict, improved: bool) -> None:
        """Write ``best`` (when ``improved``) and ``last`` checkpoints (called on rank 0 only)."""

    def log_epoch(self, row: dict, improved: bool) -> None:
        """One log line about the finished epoch."""


@dataclass
class LoopSettings:
    """The loop's knobs (from the trainer's config)."""

    epochs: int
    patience: int
    save_every: int
    stop_after_steps: int | None = None
    config: dict = field(default_factory=dict)  # stored in state.pt, for the record


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def check_run_folder(run: Path, resume: bool) -> Path:
    """``RUN/state.pt``, after refusing to overwrite an existing run or to resume a missing one."""
    state_path = run / "state.pt"
    if not resume and state_path.exists():
        raise UsageError(f"{run}: a run already exists here; resume it with --resume {run} or choose another --out")
    if resume and not state_path.exists() and not (run / "config.json").exists():
        raise MissingFileError(f"{run}: nothing to resume (no state.pt)")
    return state_path


class TrainLoop:
    """Runs the epochs of one training run (see the module docstring).

    Args:
        run: the run folder (``state.pt``, ``metrics.*``).
        model: the model being trained (possibly wrapped in DDP); its state is saved unwrapped.
        optimizer: its optimiser.
        settings: epochs, patience, save interval, stop request.
        ctx: this process' place in a torchrun group (default: a single process).
        sync: called before the state is saved (e.g. give every rank rank 0's batch-norm
            buffers), so every rank and the checkpoint hold the same model.
    """

    def __init__(
        self,
        run: Path,
        model: nn.Module,
        optimizer,
        settings: LoopSettings,
        ctx: D.DistContext = D.DistContext(),
        sync: Callable[[], None] = lambda: None,
    ) -> None:
        self.run, self.model, self.optimizer, self.settings, self.ctx, self.sync = \
            Path(run), model, optimizer, settings, ctx, sync
        self.state_path = self.run / "state.pt"
        self.es = EarlyStopping(settings.patience)
        self.history: list[dict] = []
        self.epoch, self.start_step = 0, 0
        self.accum: dict | None = None
        self.finished = False
        self._warned_fallback = False

    # ------------------------------------------------------------------ state
    def load(self) -> bool:
        """Restore ``state.pt`` when it exists (model, optimiser, position, early stopping,
        history, this rank's RNG states). Returns whether it did."""
        if not self.state_path.exists():
            return False
        st = load_state(self.state_path)
        unwrap(self.model).load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.es.load_state_dict(st["early_stopping"])
        self.history = list(st["history"])
        self.epoch, self.start_step, self.accum = int(st["epoch"]), int(st["step"]), dict(st["accum"])
        self.finished = bool(st.get("finished", False))
        rngs = st["rng"]
        if len(rngs) == self.ctx.world_size:
            restore_rng(rngs[self.ctx.rank])
        else:
            log.warning("resuming with %d processes, state has %d: random streams reseeded", self.ctx.world_size, len(rngs))
        log.info("resumed %s at epoch %d step %d", self.run, self.epoch, self.start_step)
        return True

    def save(self, next_epoch: int, next_step: int, accum: dict | None, done: bool = False) -> None:
        self.sync()
        rngs = D.all_gather_objects(capture_rng(), self.ctx)
        if self.ctx.is_main:
            save_state(self.state_path, model=unwrap(self.model).state_dict(), optimizer=self.optimizer.state_dict(),
                       epoch=next_epoch, step=next_step, accum=dict(accum or {}), early_stopping=self.es.state_dict(),
                       history=self.history, rng=rngs, world_size=self.ctx.world_size, finished=done,
                       config=self.settings.config)
        D.barrier(self.ctx)

    # ------------------------------------------------------------------ loop
    def score(self, val: dict[str, float]) -> float:
        """The early-stopping score: ``val_mean_auc``, or ``-val_loss`` when no AUC is defined."""
        score = val.get("val_mean_auc", math.nan)
        if score == score:
            return float(score)
        if not self._warned_fallback and self.ctx.is_main:
            log.warning("validation AUC undefined (a label has a single class in the validation split): "
                        "early stopping and the best checkpoint use the validation loss instead")
            self._warned_fallback = True
        return -float(val["val_loss"])

    def run_epochs(self, hooks: LoopHooks) -> dict[str, Any]:
        """Train until early stopping, ``epochs``, or a ``stop_after_steps`` request.

        Returns ``{"best_score", "best_epoch", "epochs", "stopped", "history"}`` (``stopped``:
        the run ended early on request; resume it later).
        """
        s, ctx = self.settings, self.ctx
        writer = MetricsWriter(self.run, enabled=ctx.is_main)
        if ctx.is_main and self.history:
            writer.write(self.history)  # a kill between the state and the metrics loses nothing
        accum = self.accum or hooks.new_accum()
        steps_done, stopped = 0, False
        while not self.finished and self.epoch < s.epochs:
            epoch = self.epoch
            n_steps = hooks.begin_epoch(epoch, self.start_step)

            def on_step(step: int, acc: dict) -> bool:
                nonlocal steps_done
                steps_done += 1
                last = step == n_steps - 1
                hit = s.stop_after_steps is not None and steps_done >= s.stop_after_steps
                if not last and ((step + 1) % s.save_every == 0 or hit):
                    self.save(epoch, step + 1, acc)
                return hit and not last

            t0 = time.perf_counter()
            stats = hooks.train_epoch(epoch, self.start_step, accum, on_step)
            if stats.pop("stopped", 0):
                stopped = True
                break
            train_time = time.perf_counter() - t0
            self.sync()
            t1 = time.perf_counter()
            val = hooks.validate(epoch)
            score = self.score(val)
            improved = self.es.step(score, epoch)
            row = {"epoch": epoch, **stats, **val, "score": score, "best_score": self.es.best,
                   "best_epoch": self.es.best_epoch, "train_time_s": round(train_time, 3),
                   "val_time_s": round(time.perf_counter() - t1, 3), **hooks.throughput(train_time)}
            self.history.append(row)
            if ctx.is_main:
                hooks.save_checkpoints(epoch, row, improved)
            hooks.log_epoch(row, improved)
            self.epoch, self.start_step, accum = epoch + 1, 0, hooks.new_accum()
            self.finished = self.es.should_stop or self.epoch >= s.epochs
            self.save(self.epoch, 0, accum, done=self.finished)
            if ctx.is_main:
                writer.write(self.history, row)
            if self.es.should_stop:
                log.info("early stopping: no improvement for %d epochs (best epoch %d)", s.patience, self.es.best_epoch)
            if s.stop_after_steps is not None and steps_done >= s.stop_after_steps and not self.finished:
                stopped = True
                break
        writer.close()
        D.barrier(ctx)
        return {"best_score": self.es.best, "best_epoch": self.es.best_epoch, "epochs": self.epoch,
                "stopped": stopped, "history": self.history}
