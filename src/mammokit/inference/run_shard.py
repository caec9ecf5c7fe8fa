"""One shard of ``mammokit run`` (``--shard i/N`` or a torchrun rank): the three stages on the
shard's exams, a part file, and the merge into the files one process writes.

The part (``OUT/.shards/run.shard-i-of-N.json``) holds the shard's exam records after
preprocessing, its preprocessing and heatmap failures, and its predictions, each tagged with the
exam's position in the manifest. Merging sorts them back into manifest order and writes them with
the functions the single-process stages use (:func:`mammokit.preprocess.pipeline.write_outputs`,
:func:`~mammokit.inference.heatmaps.finish_heatmaps`,
:func:`~mammokit.inference.predict.write_predictions`), so the bytes are the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mammokit.config import get_preset, workdir_preset
from mammokit.inference.predict import (
    load_models,
    predict_exams,
    prediction_meta,
    result_from_parts,
    result_part,
    write_predictions,
)
from mammokit.utils.device import resolve_device, resolve_dtype
from mammokit.utils.log import get_logger
from mammokit.utils.shard import Shard, job_key, local_rank, part_path, read_part, read_parts, shard_positions, write_part

log = get_logger(__name__)

PREDICTIONS_FILE = "predictions.csv"


def _plain(obj: Any) -> Any:
    """JSON round trip (numpy scalars -> numbers, tuples -> lists): records as a re-read
    ``exams.json`` holds them."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def run_shard(sh: Shard, manifest, out: Path, models: list, patch_model, need: list, preset, tta: int, seed: int,
              workers: int, device: str, dtype: str, batch_size, strict: bool, heatmap_dtype: str, heatmap_batch_size,
              settings: dict):
    """Run shard ``sh`` of :func:`mammokit.inference.run.run` (same arguments; ``need``: the
    models that take heatmaps; ``settings``: what goes into the job's fingerprint). Returns
    ``(preprocess report, heatmaps summary, predictions)`` of the shard (the first two None
    when its finished part was reused)."""
    from mammokit.data.manifest import manifest_to_exams, read_manifest
    from mammokit.preprocess.pipeline import exams_meta

    manifest = Path(manifest)
    exams = manifest_to_exams(read_manifest(manifest), source=manifest)
    preset = get_preset(preset)
    pmeta = _plain(exams_meta(preset, 0, {"manifest": str(manifest.resolve())}))
    key = job_key("run", settings, exams)
    positions = shard_positions([str(e["exam_id"]) for e in exams], sh)
    ppath = part_path(out, "run", sh)
    data = read_part(ppath, "run", key, sh)
    prep = heat = None
    if data is None:
        log.info("run shard %s: %d of %d exams", sh, len(positions), len(exams))
        data, prep, heat = _compute(sh, [exams[i] for i in positions], positions, len(exams), out, models, patch_model,
                                    need, preset, pmeta, tta, seed, workers, device, dtype, batch_size, strict,
                                    heatmap_dtype, heatmap_batch_size)
        write_part(ppath, "run", key, sh, data)
    else:
        log.info("run shard %s: reusing %s (same job)", sh, ppath)
    result = result_from_parts([data["predict"]])
    result.shard = sh
    parts, missing = read_parts(out, "run", "run", key, sh.count)
    result.missing_shards = missing
    if missing:
        log.info("run shard %s done; waiting for shard(s) %s to merge", sh, ", ".join(map(str, missing)))
    else:
        merged = _merge(parts, out, pmeta, bool(need))
        result.output, result.skipped_output = merged.output, merged.skipped_output
        log.info("run shard %s: all %d shards done, merged %d exams -> %s", sh, sh.count, len(merged.exam_ids),
                 merged.output)
    return prep, heat, result


def _compute(sh, exams, positions, n_job, out, models, patch_model, need, preset, pmeta, tta, seed, workers, device,
             dtype, batch_size, strict, heatmap_dtype, heatmap_batch_size):
    from mammokit.inference.heatmaps import HeatmapJob, record_heatmap_fields
    from mammokit.config import preset_of
    from mammokit.models.presets import AUTO, check_against_workdir
    from mammokit.preprocess.pipeline import preprocess_exams

    log.info("run shard %s: stage 1/3 preprocess", sh)
    prep = preprocess_exams(exams, out, preset=preset, workers=workers, strict=strict, meta={"manifest": pmeta["manifest"]},
                            write=False)
    records = _plain(prep.exams)
    at = {str(e["exam_id"]): p for e, p in zip(exams, positions)}
    prep_failures = [{**f, "position": at[str(f["exam_id"])]} for f in _plain(prep.failures)]
    heat, heat_failures, heat_info = None, [], None
    if need:
        log.info("run shard %s: stage 2/3 heatmaps with %s", sh, patch_model)
        job = HeatmapJob.create(out, pmeta, patch_model, None, heatmap_batch_size, device, heatmap_dtype, False, 0,
                                None, "auto", records, estimate_scale=n_job / max(len(records), 1))
        heat = job.compute(records, positions, strict)
        heat_failures, heat_info = _plain(heat["failures"]), job.info
        record_heatmap_fields(records, heat_failures, positions)
    log.info("run shard %s: stage 3/3 predict", sh)
    wpreset = workdir_preset(pmeta, out / "exams.json")
    dev = resolve_device(device, local_rank())
    dt = resolve_dtype(dtype, dev, "models")
    loaded = load_models(models, dev)
    check_against_workdir(AUTO, wpreset, f"work folder {out}", [(f"model {m.path}", preset_of(m.preset)) for m in loaded])
    result = predict_exams(out, records, loaded, wpreset, tta=tta, seed=seed, device=dev, dtype=dt,
                           batch_size=batch_size, strict=strict, image_dir=pmeta["image_dir"])
    data = {
        "records": [[p, r] for p, r in zip(positions, records)],
        "preprocess_failures": prep_failures,
        "heatmap_failures": heat_failures,
        "heatmap_info": heat_info,
        "predict": result_part(result, positions),
        "predict_meta": prediction_meta(models, tta, seed, dev, dt, wpreset, None),
    }
    return data, prep, heat


def _merge(parts: list[dict], out: Path, pmeta: dict, heatmaps: bool):
    """Write what one process writes, from every shard's part."""
    from mammokit.data.examlist import load_exams
    from mammokit.inference.heatmaps import finish_heatmaps
    from mammokit.preprocess.pipeline import EXAMS_FILE, write_outputs

    def ordered(name):
        return sorted((x for part in parts for x in part[name]), key=lambda x: x["position"])

    records = [r for _, r in sorted((tuple(x) for part in parts for x in part["records"]), key=lambda x: x[0])]
    write_outputs(out, records, [{k: v for k, v in f.items() if k != "position"} for f in ordered("preprocess_failures")],
                  pmeta)
    if heatmaps:
        exams, meta = load_exams(out / EXAMS_FILE)  # as the single-process heatmaps stage reads it
        finish_heatmaps(out / EXAMS_FILE, exams, meta, ordered("heatmap_failures"), parts[0]["heatmap_info"])
    merged = result_from_parts([part["predict"] for part in parts])
    write_predictions(merged, out / PREDICTIONS_FILE, parts[0]["predict_meta"])
    return merged
