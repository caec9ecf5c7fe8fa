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
off); on the CPU bf16 autocast where the CPU has bf16 hardware (AMX or AVX512-BF16), else fp32
(:func:`mammokit.utils.device.resolve_dtype`). The precision used is logged and recorded in
``<output stem>.meta.json`` beside the predictions.

Many processes: ``shard="i/N"`` (or torchrun's ``RANK``/``WORLD_SIZE``) scores only the exams of
that shard and writes them to a part file; the shard that completes the set writes the same
predictions, skipped list and metadata files a single process writes (:mod:`mammokit.utils.shard`).
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
from mammokit.utils.shard import (
    Shard,
    file_stamp,
    job_key,
    local_rank,
    part_path,
    read_part,
    read_parts,
    resolve_shard,
    shard_positions,
    write_part,
)

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

__all__ = ["PredictResult", "predict", "predict_exams", "LoadedModel", "load_models", "skipped_path", "meta_path",
           "write_predictions", "prediction_meta"]

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
        output, skipped_output: files written (``None`` without ``output``, and for a shard
            until the shard that completes the job has merged them).
        seconds: wall time of the scoring loop.
        positions, skipped_positions: index in the scored exam list of each scored / skipped exam.
        shard: the shard this result covers (None: the whole job); ``missing_shards``: shards
            whose part was not finished when this one ended (empty once merged).
    """

    exam_ids: list[str]
    probabilities: np.ndarray
    views: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    output: Path | None = None
    skipped_output: Path | None = None
    seconds: float = 0.0
    positions: list[int] = field(default_factory=list)
    skipped_positions: list[int] = field(default_factory=list)
    shard: Shard | None = None
    missing_shards: list[int] = field(default_factory=list)

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


def meta_path(output: str | Path) -> Path:
    """``predictions.csv`` -> ``predictions.meta.json`` (precision, device, models, TTA...)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.meta.json")


def prediction_meta(model_paths: Sequence[str | Path], tta: int, seed: int, device, dtype, preset: Preset,
                    split: str | None) -> dict[str, Any]:
    """What a predictions file was made with (its ``.meta.json``): the same for one process and
    for any number of shards."""
    import torch

    from mammokit import __version__

    return {"mammokit": __version__, "precision": dtype_name(dtype), "device": torch.device(device).type,
            "models": [str(p) for p in model_paths], "tta": tta, "seed": seed, "preset": preset.name,
            "split": split}


def write_predictions(result: PredictResult, output: str | Path, meta: dict[str, Any]) -> None:
    """Write the predictions CSV, ``<stem>.skipped.csv`` and ``<stem>.meta.json`` atomically."""
    from mammokit.utils.io import write_json_atomic

    result.output = Path(output)
    write_csv_atomic(result.output, result.as_rows(), ["exam_id", *LABEL_COLUMNS, "views"])
    result.skipped_output = skipped_path(output)
    write_csv_atomic(
        result.skipped_output, [{"exam_id": e, "reason": r} for e, r in result.skipped], ["exam_id", "reason"]
    )
    write_json_atomic(meta_path(output), {**meta, "exams": len(result.exam_ids), "skipped": len(result.skipped)})


def result_part(result: PredictResult, positions: Sequence[int]) -> dict[str, Any]:
    """A shard's result as JSON-ready part data, positions mapped to the whole job's exam list
    (``positions[k]`` = job position of the shard's k-th exam). Floats keep every bit."""
    return {
        "scored": [[positions[k], e, [float(x) for x in p], v] for k, e, p, v in
                   zip(result.positions, result.exam_ids, result.probabilities, result.views)],
        "skipped": [[positions[k], e, r] for k, (e, r) in zip(result.skipped_positions, result.skipped)],
        "seconds": result.seconds,
    }


def result_from_parts(parts: Sequence[dict[str, Any]]) -> PredictResult:
    """The :class:`PredictResult` of the exams of ``parts``, in job order."""
    scored = sorted((tuple(x) for part in parts for x in part["scored"]), key=lambda x: x[0])
    skipped = sorted((tuple(x) for part in parts for x in part["skipped"]), key=lambda x: x[0])
    return PredictResult(
        exam_ids=[x[1] for x in scored],
        probabilities=np.array([x[2] for x in scored], dtype=np.float64).reshape(-1, len(LABEL_COLUMNS)),
        views=[x[3] for x in scored],
        skipped=[(x[1], x[2]) for x in skipped],
        seconds=sum(float(part.get("seconds", 0.0)) for part in parts),
        positions=[x[0] for x in scored],
        skipped_positions=[x[0] for x in skipped],
    )


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
    at, skipped_at = [], []

    def skip(exam_id: str, reason: str) -> None:
        if strict:
            raise PredictError(f"{workdir}: exam {exam_id}: {reason}")
        log.warning("exam %s skipped: %s", exam_id, reason)
        skipped.append((exam_id, reason))
        skipped_at.append(i)

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
            at.append(i)
            probs.append(p)
            used.append(";".join(present))
        bar.close()
    return PredictResult(
        exam_ids=ids,
        probabilities=np.array(probs, dtype=np.float64).reshape(-1, len(LABEL_COLUMNS)),
        views=used,
        skipped=skipped,
        seconds=time.perf_counter() - start,
        positions=at,
        skipped_positions=skipped_at,
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
    shard: str | Shard | None = None,
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
        dtype: ``auto`` (bf16 autocast on CUDA and on CPUs with bf16 hardware, else fp32) |
            ``fp32`` | ``bf16``.
        batch_size: most TTA draws per forward (default: all draws of an exam in one batch).
        output: predictions CSV to write (atomically), plus ``<stem>.skipped.csv`` and
            ``<stem>.meta.json``.
        strict: an exam that cannot be scored is an error instead of a skipped row.
        workers: image-decoding threads (default min(8, CPU count)); results do not depend on it.
        split: score only the exams whose ``split`` (from the manifest) equals this, e.g. "test".
        shard: ``"i/N"``: score only shard i of N (see the module docstring; needs ``output``);
            None: the whole job, or this rank's shard when launched by torchrun.
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
    sh = resolve_shard(shard)
    if sh is not None and output is None:
        raise UsageError("a sharded predict needs an output file (its parts are written beside it)")
    dev = resolve_device(device, local_rank())
    dt = resolve_dtype(dtype, dev, "models")
    info = prediction_meta(model_paths, tta, seed, dev, dt, preset_obj, split)
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
        "predict: %d exams%s, %d model(s), tta %d, seed %d, device %s, precision %s, preset %s",
        len(exams), f" (shard {sh})" if sh else "", len(models), tta, seed, dev, dtype_name(dt), preset_obj.name,
    )

    def score(records: list[dict]) -> PredictResult:
        return predict_exams(
            workdir, records, models, preset_obj, tta=tta, seed=seed, device=dev, dtype=dt, batch_size=batch_size,
            strict=strict, image_dir=meta.get("image_dir", "cropped"), workers=workers,
        )

    if sh is not None:
        key = job_key("predict", {"models": [file_stamp(p) for p in model_paths], **info,
                                  "workdir": str(workdir.resolve())}, exams)
        result = run_shard(Path(output).parent, Path(output).name, "predict", key, sh, exams, score,
                           lambda merged: write_predictions(merged, output, info))
    else:
        result = score(exams)
        if output is not None:
            write_predictions(result, output, info)
    n = len(result.exam_ids)
    log.info(
        "predict: %d scored, %d skipped in %.1f s (%.3f s/exam)%s",
        n, len(result.skipped), result.seconds, result.seconds / max(n, 1),
        f"; wrote {result.output}" if result.output else "",
    )
    return result


def run_shard(folder: Path, stem: str, stage: str, key: str, sh: Shard, exams: list[dict], score, write) -> PredictResult:
    """One shard of a predictions job: score the shard's exams with ``score(records)`` (unless
    its part of this job is already there), write the part, and, when every part is there,
    ``write(merged_result)``. Returns the shard's result (``output`` set when it merged)."""
    ids = [str(e.get("exam_id")) for e in exams]
    positions = shard_positions(ids, sh)
    ppath = part_path(folder, stem, sh)
    data = read_part(ppath, stage, key, sh)
    if data is None:
        data = result_part(score([exams[i] for i in positions]), positions)
        write_part(ppath, stage, key, sh, data)
    else:
        log.info("%s shard %s: reusing %s (same job)", stage, sh, ppath)
    result = result_from_parts([data])
    result.shard = sh
    parts, missing = read_parts(folder, stem, stage, key, sh.count)
    result.missing_shards = missing
    if missing:
        log.info("%s shard %s done; waiting for shard(s) %s to merge", stage, sh, ", ".join(map(str, missing)))
    else:
        merged = result_from_parts(parts)
        write(merged)
        result.output, result.skipped_output = merged.output, merged.skipped_output
        log.info("%s shard %s: all %d shards done, merged %d exams", stage, sh, sh.count, len(merged.exam_ids))
    return result
