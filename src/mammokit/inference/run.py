"""``mammokit run``: raw images (PNG or DICOM) to predictions in one command.

The stages of the authors' ``run.sh``, each resumable on its own, so re-running the command after
an interruption redoes only what is missing:

1. preprocess (:func:`mammokit.preprocess.pipeline.preprocess`): crop + optimal centres into
   ``OUT/cropped`` and ``OUT/exams.json``;
2. heatmaps (:func:`mammokit.inference.heatmaps.make_heatmaps`), only when a model takes image +
   heatmaps inputs (a patch model is then required);
3. predict (:func:`mammokit.inference.predict.predict`) into ``OUT/predictions.csv`` (+
   ``OUT/predictions.skipped.csv``, ``OUT/predictions.meta.json``).

Many processes (``shard="i/N"``, ``--shard i/N``, or one shard per rank under torchrun): a shard
runs the three stages on its own exams only (split by :mod:`mammokit.utils.shard`): it writes
their cropped images, sidecars and heatmaps as one process would, and their exam records,
failures and predictions to ``OUT/.shards/run.shard-i-of-N.json``. The shard that completes the
set writes ``exams.json``, the failures files and the predictions files, the same bytes as one
process. A re-run reuses finished parts (same manifest, models and settings) and within an
unfinished shard every finished image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammokit.config import Preset, describe_preset
from mammokit.errors import MissingFileError, UsageError
from mammokit.inference.predict import PredictResult, predict
from mammokit.utils.log import get_logger
from mammokit.utils.shard import Shard, file_stamp, job_key, resolve_shard

log = get_logger(__name__)

__all__ = ["RunResult", "run", "models_need_heatmaps"]

PREDICTIONS_FILE = "predictions.csv"


@dataclass
class RunResult:
    """What :func:`run` produced: the work folder, each stage's report, the predictions."""

    workdir: Path
    preprocess: Any
    heatmaps: Any
    predictions: PredictResult

    @property
    def output(self) -> Path | None:
        return self.predictions.output


def models_need_heatmaps(model_paths: Sequence[str | Path]) -> list[str]:
    """The checkpoints among ``model_paths`` whose inputs have 3 channels (image + heatmaps),
    read from their metadata (every member of an ensemble file is checked)."""
    from mammokit.models import read_checkpoint

    need = []
    for path in model_paths:
        _, meta = read_checkpoint(path)
        specs = meta.get("members") or [{"model_args": meta.get("model_args", {})}]
        if any(int((s.get("model_args") or {}).get("in_channels", 1)) == 3 for s in specs):
            need.append(str(path))
    return need


def run(
    manifest: str | Path,
    out: str | Path,
    models: Sequence[str | Path],
    patch_model: str | Path | None = None,
    preset: Preset | str = "auto",
    tta: int = 10,
    seed: int = 0,
    workers: int = 1,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int | None = None,
    strict: bool = False,
    heatmap_dtype: str = "auto",
    heatmap_batch_size: int | None = None,
    shard: str | Shard | None = None,
) -> RunResult:
    """Every stage from a manifest of raw images to ``OUT/predictions.csv``.

    Args:
        manifest: manifest CSV (``exam_id,view,path``...; PNG or DICOM images).
        out: output folder; it is also the work folder (``cropped/``, ``exams.json``,
            ``heatmaps/``, ``predictions.csv``).
        models: breast-level checkpoints (several = an ensemble).
        patch_model: patch-classifier checkpoint; required when a model uses heatmaps.
        preset: ``"auto"`` (default): the preset the checkpoints record (models and patch
            model must agree; :func:`mammokit.models.presets.resolve_preset`); or a preset name,
            ``scale:F`` or TOML file. Every stage runs at it; an ``out`` preprocessed at another
            preset is preprocessed again (each image's fingerprint holds the preset).
        tta, seed: test-time augmentation draws and seed (see :func:`predict`).
        workers: preprocessing processes.
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` (heatmaps and models).
        dtype, batch_size: precision and TTA draws per forward of the breast-level models (see
            :func:`predict`).
        heatmap_dtype, heatmap_batch_size: precision and patches per forward of the heatmaps
            (see :func:`~mammokit.inference.heatmaps.make_heatmaps`). Separate from ``dtype``
            because the heatmaps take less rounding: ``auto`` is fp16 on CUDA (within 1e-3 of
            fp32), where the models' ``auto`` is bf16.
        strict: make the first bad image / exam fatal instead of reporting and skipping it.
        shard: ``"i/N"``: run shard i of N (see the module docstring); None: the whole job, or
            this rank's shard under torchrun.
    """
    from mammokit.models.presets import resolve_preset
    from mammokit.preprocess.pipeline import preprocess

    out = Path(out)
    if not models:
        raise UsageError("no model given (use --model CHECKPOINT)")
    for path in [*models, *([patch_model] if patch_model else [])]:
        if not Path(path).is_file():
            raise MissingFileError(f"{path}: checkpoint not found")
    need = models_need_heatmaps(models)
    if need and patch_model is None:
        raise UsageError(
            f"{', '.join(need)} take image + heatmaps inputs: give the patch classifier with --patch-model"
        )
    # Checked before the long stages so a typo or a preset mismatch fails in seconds.
    preset = resolve_preset(preset, [*models, *([patch_model] if patch_model else [])])
    sh = resolve_shard(shard)
    if sh is not None:
        from mammokit.inference.run_shard import run_shard

        settings = {"models": [file_stamp(m) for m in models], "patch_model": patch_model and file_stamp(patch_model),
                    "preset": str(getattr(preset, "name", preset)), "tta": tta, "seed": seed, "device": device,
                    "dtype": dtype, "heatmap_dtype": heatmap_dtype, "strict": strict}
        prep, heat, result = run_shard(sh, manifest, out, list(models), patch_model, need, preset, tta, seed, workers,
                                       device, dtype, batch_size, strict, heatmap_dtype, heatmap_batch_size, settings)
        return RunResult(workdir=out, preprocess=prep, heatmaps=heat, predictions=result)
    log.info("run: stage 1/3 preprocess %s -> %s at preset %s", manifest, out, describe_preset(preset))
    prep = preprocess(manifest, out, preset=preset, workers=workers, strict=strict)
    heat = None
    if need:
        from mammokit.inference.heatmaps import make_heatmaps

        log.info("run: stage 2/3 heatmaps with %s", patch_model)
        heat = make_heatmaps(out, patch_model, device=device, dtype=heatmap_dtype, batch_size=heatmap_batch_size,
                             strict=strict, preset=preset)
    else:
        log.info("run: stage 2/3 heatmaps not needed (image-only models)")
    log.info("run: stage 3/3 predict")
    result = predict(
        out, list(models), tta=tta, seed=seed, device=device, dtype=dtype, batch_size=batch_size,
        output=out / PREDICTIONS_FILE, strict=strict, preset=preset,
    )
    return RunResult(workdir=out, preprocess=prep, heatmaps=heat, predictions=result)
