"""``mammokit predict``: breast-level predictions for a preprocessed work folder.

For each exam (in ``exams.json`` order):

1. its images are decoded once (:func:`mammokit.data.views.load_view`; with heatmaps when any
   model takes 3 channels), each on a thread of a pool, a few exams ahead, so decoding overlaps
   the forward passes (on a GPU, decoding 16-bit PNGs is the bottleneck);
2. ``tta`` random windows per view are sampled with the reference augmentation, from a random
   stream of its own (``derive_seed(seed, exam_id)``: results do not depend on exam order or on
   which other exams are in the folder), cut on the device and standardised
   (:func:`mammokit.data.views.make_model_inputs`); ``tta=0`` = the single deterministic window
   at ``best_center`` (the reference without ``--use-augmentation``);
3. every model scores all draws in one batch (``batch_size`` caps the draws per forward), its
   probabilities ``[tta, 4]`` are averaged over draws, then over the models given (an ensemble;
   a checkpoint that is itself an ensemble counts as one model, averaged inside). All models see
   the same windows; 1-channel models get the image channel of the 3-channel windows.

Exams missing views are scored from the views they have, by the rule of
:mod:`mammokit.models.breast` (every variant: a breast is predicted from the heads that see one of
its own views; missing views are masked); each row's ``views`` column lists the views used, and a
breast with no view at all has empty cells (and a warning), never a silently dropped row. Exams
whose images cannot be read are listed in ``<output stem>.skipped.csv`` with the reason. With
``strict=True`` the first such exam is an error instead.

On CUDA the default is bf16 autocast with channels_last tensors (``dtype="fp32"`` switches it
off); on the CPU fp32.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mammokit.config import LABEL_COLUMNS, VIEWS, Preset, preset_of, workdir_preset
from mammokit.errors import InputFileError, MammokitError, ResourceError, UsageError
from mammokit.utils.device import autocast, dtype_name, resolve_device, resolve_dtype
from mammokit.utils.io import write_csv_atomic
from mammokit.utils.log import get_logger, progress
from mammokit.utils.seed import derive_seed

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

__all__ = ["PredictResult", "predict", "predict_exams", "LoadedModel", "load_models", "skipped_path"]

EXAMS_FILE = "exams.json"


class PredictError(InputFileError):
    """An exam that cannot be scored, under ``strict=True`` (names the exam and the reason)."""


@dataclass
class PredictResult:
    """Predictions of :func:`predict`.

    Attributes:
        exam_ids: scored exams, in exam-list order.
        probabilities: ``[N, 4]`` float64, columns ``LABEL_COLUMNS``.
            NaN for a breast of an exam with no view of that breast.
        views: per scored exam, the views its prediction used (``"L-CC;R-CC;L-MLO;R-MLO"``).
        skipped: ``[(exam_id, reason)]`` of exams that could not be scored.
        output, skipped_output: files written (``None`` without ``output``).
        seconds: wall time of the scoring loop.
    """

    exam_ids: list[str]
    probabilities: np.ndarray
    views: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    output: Path | None = None
    skipped_output: Path | None = None
    seconds: float = 0.0

    def as_rows(self) -> list[dict[str, Any]]:
        """CSV rows: ``exam_id``, the four label columns (4 decimals; empty for a breast without
        views) and ``views``."""
        return [
            {"exam_id": eid, **{c: "" if p != p else f"{p:.4f}" for c, p in zip(LABEL_COLUMNS, probs)}, "views": v}
            for eid, probs, v in zip(self.exam_ids, self.probabilities, self.views)
        ]


@dataclass
class LoadedModel:
    """A breast-level model ready for inference, with what the loop needs to know about it."""

    path: str
    model: Any
    in_channels: int
    preset: Any = None


def skipped_path(output: str | Path) -> Path:
    """``predictions.csv`` -> ``predictions.skipped.csv``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.skipped.csv")


def load_models(model_paths: Sequence[str | Path], device) -> list[LoadedModel]:
    """Load breast-level cancer checkpoints (:func:`mammokit.models.load_model`) for inference."""
    import torch

    from mammokit.models import load_model

    if not model_paths:
        raise UsageError("no model given (use --model CHECKPOINT)")
    loaded = []
    for path in model_paths:
        model, meta = load_model(path, device=device)
        columns = tuple(getattr(model, "prediction_columns", ()))
        if columns != LABEL_COLUMNS or not hasattr(model, "predict_proba"):
            raise InputFileError(
                f"{path}: not a breast-level cancer model (arch {meta.get('arch')!r}, predicts {columns or '?'}); "
                f"predict needs a model predicting {', '.join(LABEL_COLUMNS)}"
            )
        in_channels = int(getattr(model, "in_channels", meta.get("model_args", {}).get("in_channels", 1)))
        if torch.device(device).type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        loaded.append(
            LoadedModel(str(path), model, in_channels, meta.get("preset"))
        )
    return loaded


def _score(
    m: LoadedModel, inputs: dict[str, torch.Tensor], batch_size: int, dtype, device
) -> torch.Tensor:
    """Mean probability over draws of one model: inputs ``{view: [D, C, h, w]}`` -> ``[4]``."""
    import torch

    n = next(iter(inputs.values())).shape[0]
    parts, start = [], 0
    while start < n:
        batch = {}
        for view, x in inputs.items():
            x = x[start : start + batch_size, : m.in_channels]
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            batch[view] = x
        try:
            with autocast(device, dtype):
                parts.append(m.model.predict_proba(batch).float())
        except torch.cuda.OutOfMemoryError:
            # Fewer draws per forward: the same windows, the same probabilities.
            if batch_size <= 1:
                raise ResourceError(f"{m.path}: out of GPU memory on {device} with one window per forward: "
                                    f"free the GPU or use --device cpu") from None
            del batch
            torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            log.warning("out of GPU memory: %s now scores %d TTA draws per forward", m.path, batch_size)
            continue
        start += batch_size
    return torch.cat(parts).mean(0)


def predict_exams(
    workdir: str | Path,
    exams: Sequence[dict],
    models: Sequence[LoadedModel],
    preset: Preset,
    tta: int = 10,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype=None,
    batch_size: int | None = None,
    strict: bool = False,
    image_dir: str = "cropped",
    cache=None,
    prefetch: int = 2,
    workers: int | None = None,
) -> PredictResult:
    """Score exam records with loaded models (the loop of :func:`predict`; no files written)."""
    import torch

    from mammokit.data.views import load_view, make_model_inputs

    if tta < 0:
        raise UsageError(f"tta must be >= 0, got {tta}")
    device = torch.device(device)
    dtype = dtype or torch.float32
    n_draws = max(tta, 1)
    batch_size = n_draws if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    heatmaps = any(m.in_channels == 3 for m in models)
    workdir = Path(workdir)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)

    ids, probs, used, skipped = [], [], [], []

    def skip(exam_id: str, reason: str) -> None:
        if strict:
            raise PredictError(f"{workdir}: exam {exam_id}: {reason}")
        log.warning("exam %s skipped: %s", exam_id, reason)
        skipped.append((exam_id, reason))

    start = time.perf_counter()
    # Decoding (cv2 releases the GIL) runs ahead on threads while the device computes.
    exams = list(exams)
    workers = max(1, int(workers))
    # Decoding is the bottleneck on a GPU (a full-size exam with heatmaps is 12 PNGs): every
    # image is decoded on its own thread (cv2 releases the GIL), ``prefetch`` exams ahead.
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool, torch.inference_mode():
        futures: dict[int, list] = {}

        def submit(i: int) -> None:
            if i < len(exams):
                exam = exams[i]
                futures[i] = [
                    (view, pool.submit(load_view, workdir, exam, view, k, heatmaps, cache, image_dir))
                    for view in VIEWS
                    for k in range(len(exam.get(view) or []))
                ]

        def collect(i: int):
            views: dict[str, list] = {}
            try:
                for view, future in futures.pop(i):
                    views.setdefault(view, []).append(future.result())
            except (MammokitError, OSError) as exc:  # unreadable image, missing heatmaps...
                return None, exc
            return views, None

        for i in range(prefetch + 1):
            submit(i)
        bar = progress(total=len(exams), desc="predict", unit="exam")
        for i, exam in enumerate(exams):
            submit(i + prefetch + 1)
            views, error = collect(i)
            bar.update(1)
            exam_id = str(exam.get("exam_id"))
            if error is not None:
                skip(exam_id, str(error))
                continue
            present = [v for v in VIEWS if v in views]
            try:
                rng = np.random.default_rng(derive_seed(seed, exam_id)) if tta > 0 else None
                inputs = make_model_inputs(views, exam, preset, rng, n_draws, device, augment=tta > 0)
            except MammokitError as exc:
                skip(exam_id, str(exc))
                continue
            p = torch.stack([_score(m, inputs, batch_size, dtype, device) for m in models]).mean(0)
            p = p.cpu().double().numpy()
            if len(present) < len(VIEWS):
                no_breast = sorted({LABEL_COLUMNS[i].split("_")[0] for i in np.flatnonzero(np.isnan(p))})
                log.warning("exam %s: views %s missing; scored from %s%s", exam_id,
                            ", ".join(v for v in VIEWS if v not in present), ", ".join(present),
                            f"; no prediction for the {' and '.join(no_breast)} breast" if no_breast else "")
            ids.append(exam_id)
            probs.append(p)
            used.append(";".join(present))
        bar.close()
    return PredictResult(
        exam_ids=ids,
        probabilities=np.array(probs, dtype=np.float64).reshape(-1, len(LABEL_COLUMNS)),
        views=used,
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )


def predict(
    workdir: str | Path,
    model_paths: Sequence[str | Path],
    tta: int = 10,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int | None = None,
    output: str | Path | None = None,
    strict: bool = False,
    workers: int | None = None,
    split: str | None = None,
    preset: Any = "auto",
) -> PredictResult:
    """Predict the four breast-level probabilities of every exam of a work folder.

    Args:
        workdir: preprocessed work folder (``exams.json``, ``cropped/``; ``heatmaps/`` for models
            with heatmap inputs).
        model_paths: mammokit checkpoints (breast-level, cancer task); several = an ensemble.
        tta: random windows per exam (paper: 10); 0 = the deterministic window at best_center.
        seed: TTA seed (each exam's stream is derived from it and the exam id).
        device: ``auto`` | ``cpu`` | ``cuda`` (``cuda:1``...).
        dtype: ``auto`` (bf16 autocast on CUDA, fp32 on CPU) | ``fp32`` | ``bf16``.
        batch_size: most TTA draws per forward (default: all draws of an exam in one batch).
        output: predictions CSV to write (atomically), plus ``<stem>.skipped.csv``.
        strict: an exam that cannot be scored is an error instead of a skipped row.
        workers: image-decoding threads (default min(8, CPU count)); results do not depend on it.
        split: score only the exams whose ``split`` (from the manifest) equals this, e.g. "test".
        preset: ``"auto"`` (default): every model recorded at a preset must match the work
            folder's; otherwise a preset (name, ``scale:F``, TOML file) that must match the work
            folder's (models recorded at another then only get a warning). The windows are always
            the work folder's.

    Returns:
        :class:`PredictResult`.

    Raises:
        mammokit.data.views.MissingHeatmapsError: a model needs heatmaps and the folder has none.
    """
    from mammokit.data.examlist import load_exams
    from mammokit.data.views import MissingHeatmapsError
    from mammokit.models.presets import check_against_workdir

    workdir = Path(workdir)
    exams, meta = load_exams(workdir / EXAMS_FILE)
    if split is not None:
        exams = [e for e in exams if e.get("split") == split]
        if not exams:
            raise PredictError(f"{workdir / EXAMS_FILE}: no exam has split == {split!r}")
    preset_obj = workdir_preset(meta, workdir / EXAMS_FILE)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev, "models")
    models = load_models(model_paths, dev)
    if any(m.in_channels == 3 for m in models) and exams and not any(e.get("heatmap_malignant") for e in exams):
        needing = ", ".join(m.path for m in models if m.in_channels == 3)
        raise MissingHeatmapsError(
            f"{workdir}: no heatmaps in this work folder, but {needing} takes image + heatmaps inputs: "
            f"run `mammokit heatmaps {workdir} --patch-model PATCH_MODEL` first"
        )
    check_against_workdir(preset, preset_obj, f"work folder {workdir}",
                          [(f"model {m.path}", preset_of(m.preset)) for m in models])
    log.info(
        "predict: %d exams, %d model(s), tta %d, seed %d, device %s, %s, preset %s",
        len(exams), len(models), tta, seed, dev, dtype_name(dt), preset_obj.name,
    )
    result = predict_exams(
        workdir, exams, models, preset_obj, tta=tta, seed=seed, device=dev, dtype=dt, batch_size=batch_size,
        strict=strict, image_dir=meta.get("image_dir", "cropped"), workers=workers,
    )
    if output is not None:
        result.output = Path(output)
        write_csv_atomic(result.output, result.as_rows(), ["exam_id", *LABEL_COLUMNS, "views"])
        result.skipped_output = skipped_path(output)
        write_csv_atomic(
            result.skipped_output, [{"exam_id": e, "reason": r} for e, r in result.skipped], ["exam_id", "reason"]
        )
    n = len(result.exam_ids)
    log.info(
        "predict: %d scored, %d skipped in %.1f s (%.3f s/exam)%s",
        n, len(result.skipped), result.seconds, result.seconds / max(n, 1),
        f"; wrote {result.output}" if result.output else "",
    )
    return result
