"""``mammokit preprocess``: manifest -> cropped images + exam list with window geometry.

For every image of every exam: read it (:func:`mammokit.data.images.read_image`), crop it to the
breast (:func:`~mammokit.preprocess.crop.crop_mammogram`), find the optimal window centre
(:func:`~mammokit.preprocess.center.optimal_center`), and write::

    WORKDIR/cropped/<name>.png          16-bit crop, ORIGINAL orientation (as the reference)
    WORKDIR/exams.json                  exam list (data/examlist.py) with, per image,
                                        window_location, rightmost_points, bottommost_points,
                                        distance_from_starting_side, best_center, source_paths,
                                        source_shape (the original image's [H, W]);
                                        meta: preset, preset_config, image_dir="cropped",
                                        background_threshold
    WORKDIR/preprocess_failures.csv     exam_id,view,path,reason (header only when none failed)
    WORKDIR/.preprocess/<name>.json     per-image sidecar used to resume (see below)

Failures are per image: a bad image is reported (log + failures CSV) and dropped from its exam's
view list, the exam keeps its other images and downstream stages decide what to do with a missing
view; ``strict=True`` makes the first failure fatal (:class:`PreprocessError`). A breast that does
not start at the chest-wall edge is kept (as in the reference) and reported as a warning. An
image smaller than the preset's model window (:func:`check_image_fits`: a preset for another
resolution, e.g. the paper preset on quarter-scale images) fails with the image's size and the
window's; it is never cropped into a mostly-padding window.

Resuming: after an image's PNG is written, a sidecar JSON is written atomically with its geometry
and a fingerprint (source path, source size and mtime, preset, background threshold). A re-run
with ``resume=True`` reuses every image whose sidecar fingerprint matches and whose PNG exists, and
processes the rest (failed images are retried). A killed run therefore loses at most the images
in flight; changing the preset or threshold, or touching a source file, recomputes that image.

Images are processed in parallel with ``workers`` processes; results are collected in input order,
so the output files are identical for any number of workers.
"""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mammokit.config import VIEWS, Preset, get_preset
from mammokit.data.examlist import GEOMETRY_FIELDS, HEATMAP_FIELDS, MASK_FIELDS, SOURCE_SHAPE_FIELD, save_exams
from mammokit.errors import InputFileError, UsageError
from mammokit.preprocess.center import optimal_center
from mammokit.preprocess.crop import CropError, crop_mammogram
from mammokit.utils.io import remove_stale_temporaries, write_csv_atomic, write_json_atomic
from mammokit.utils.log import get_logger, progress

log = get_logger(__name__)

IMAGE_DIR = "cropped"
SIDECAR_DIR = ".preprocess"
EXAMS_FILE = "exams.json"
FAILURES_FILE = "preprocess_failures.csv"
FAILURE_COLUMNS = ("exam_id", "view", "path", "reason")
SIDECAR_VERSION = 2  # 2: geometry holds source_shape


class PreprocessError(InputFileError):
    """A fatal preprocessing failure (``strict=True``), naming the image and the reason."""


@dataclass(frozen=True)
class ImagePreprocessResult:
    """One preprocessed image (:func:`preprocess_image`).

    Attributes:
        cropped: ``[h, w]`` cropped image, original orientation.
        geometry: the exam-list fields window_location, rightmost_points, bottommost_points,
            distance_from_starting_side, best_center (JSON-ready lists / ints).
        warnings: warnings from the crop (e.g. a likely wrong flip).
    """

    cropped: np.ndarray
    geometry: dict
    warnings: tuple[str, ...] = ()


@dataclass
class PreprocessReport:
    """Summary of a :func:`preprocess` run.

    Attributes:
        workdir: the work folder.
        exams_path: ``WORKDIR/exams.json``.
        failures_path: ``WORKDIR/preprocess_failures.csv``.
        n_images: images in the input.
        n_processed: images cropped in this run.
        n_reused: images taken from a previous run (resume).
        failures: ``{"exam_id", "view", "path", "reason"}`` per failed image, input order.
        warnings: ``{"exam_id", "view", "path", "warning"}`` per warning, input order.
        seconds: wall-clock time.
    """

    workdir: Path
    exams_path: Path
    failures_path: Path
    n_images: int = 0
    n_processed: int = 0
    n_reused: int = 0
    failures: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    exams: list[dict] | None = None  # the exam records written (or, with write=False, to write)

    @property
    def n_ok(self) -> int:
        return self.n_processed + self.n_reused

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        text = (
            f"{self.n_images} images: {self.n_processed} cropped, {self.n_reused} reused, "
            f"{self.n_failed} failed, {len(self.warnings)} warnings in {self.seconds:.1f} s -> {self.exams_path}"
        )
        if self.failures:
            text += f" (failures listed in {self.failures_path})"
        return text


class PresetDoesNotFitError(CropError):
    """An image smaller than the preset's model-input window (a preset for another resolution)."""


def check_image_fits(shape: Sequence[int], view: str, preset: Preset) -> None:
    """Refuse an image smaller than the preset's model window for its view.

    The window (``preset.input_size(view)``, e.g. 2677 x 1942 for a paper CC) is a part of the
    breast at the preset's pixel size; a full image smaller than it is at another resolution (the
    paper preset on quarter-scale images), and cropping it would give the model a window that is
    mostly zero padding. A breast *crop* smaller than the window is normal and is zero-padded, as
    in the reference; the whole *image* must hold the window.

    Raises:
        PresetDoesNotFitError: naming the image size, the preset and its window size.
    """
    h, w = (int(v) for v in tuple(shape)[:2])
    wh, ww = (int(v) for v in preset.input_size(view))
    if h < wh or w < ww:
        # The largest scale (3 decimals, rounded down) whose window fits this image.
        suggest = math.floor(min(h / wh, w / ww) * preset.scale * 1000) / 1000
        raise PresetDoesNotFitError(
            f"image {h}x{w} is smaller than preset {preset.name!r}'s {view} window {wh}x{ww} (H x W): the "
            f"preset is for another resolution; use a preset for these images (e.g. --preset scale:{suggest:g}, "
            f"or --preset auto with the model trained on such images)"
        )


def preprocess_image(
    image: np.ndarray,
    view: str,
    horizontal_flip: str = "NO",
    preset: Preset | str = "paper",
    background_threshold: int = 0,
) -> ImagePreprocessResult:
    """Crop one image and find its optimal centre.

    Args:
        image: ``[H, W]`` uint16 mammogram, display orientation.
        view: ``"L-CC"`` ... ``"R-MLO"``.
        horizontal_flip: the exam's "YES" / "NO".
        preset: preset name or :class:`~mammokit.config.Preset`.
        background_threshold: see :func:`~mammokit.preprocess.crop.crop_mammogram`.

    Raises:
        CropError: the image cannot be cropped (reason in the message), or
        :class:`PresetDoesNotFitError`: the image is smaller than the preset's model window.
    """
    preset = get_preset(preset)
    check_image_fits(np.shape(image), view, preset)
    crop = crop_mammogram(image, view, horizontal_flip, preset, background_threshold)
    center = optimal_center(
        crop.cropped, view, horizontal_flip, crop.rightmost_points, crop.bottommost_points, preset
    )
    geometry = crop.geometry()
    geometry["best_center"] = [int(center[0]), int(center[1])]
    geometry[SOURCE_SHAPE_FIELD] = [int(image.shape[0]), int(image.shape[1])]
    return ImagePreprocessResult(cropped=crop.cropped, geometry=geometry, warnings=crop.warnings)


# ----------------------------------------------------------------------------- per-image job


@dataclass(frozen=True)
class _Job:
    index: int
    exam_id: str
    view: str
    name: str
    source: str
    horizontal_flip: str


def _fingerprint(source: str, preset: Preset, background_threshold: int) -> dict | None:
    try:
        stat = os.stat(source)
    except OSError:
        return None
    fingerprint = {
        "version": SIDECAR_VERSION,
        "source": str(Path(source).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "preset": preset.to_dict(),
        "background_threshold": int(background_threshold),
    }
    # Compared with the JSON sidecar, so normalise it the same way (tuples -> lists).
    return json.loads(json.dumps(fingerprint))


def _load_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or damaged: recompute


def _process(job: _Job, workdir: str, preset: Preset, background_threshold: int, resume: bool) -> dict:
    """Run one image; never raises for a bad image (returns ``{"error": reason}``)."""
    from mammokit.data.images import ImageReadError, read_image, write_png16

    out_png = Path(workdir) / IMAGE_DIR / f"{job.name}.png"
    sidecar = Path(workdir) / SIDECAR_DIR / f"{job.name}.json"
    fingerprint = _fingerprint(job.source, preset, background_threshold)
    if resume and fingerprint is not None and out_png.exists():
        previous = _load_sidecar(sidecar)
        if previous and previous.get("fingerprint") == fingerprint and "geometry" in previous:
            return {"geometry": previous["geometry"], "warnings": previous.get("warnings", []), "reused": True}
    # Only the image's own problems are recorded as its failure; a failed write (disk full,
    # read-only folder) or a bug stops the job instead of marking every image as bad.
    try:
        image = read_image(job.source)
        result = preprocess_image(image, job.view, job.horizontal_flip, preset, background_threshold)
    except ImageReadError as exc:
        return {"error": f"unreadable image: {exc}"}
    except CropError as exc:
        return {"error": f"crop failed: {exc}"}
    write_png16(out_png, result.cropped)
    record = {"fingerprint": fingerprint, "geometry": result.geometry, "warnings": list(result.warnings)}
    write_json_atomic(sidecar, record)
    return {"geometry": result.geometry, "warnings": list(result.warnings), "reused": False}


def _init_worker() -> None:
    # One OpenCV thread per process: the processes already use every core we were given.
    import cv2

    cv2.setNumThreads(1)


def _process_star(args: tuple) -> dict:
    return _process(*args)


# ----------------------------------------------------------------------------- batch


def _check_name(name: str, exam_id: str) -> None:
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or ".." in parts or "\\" in name:
        raise InputFileError(f"exam {exam_id}: image name {name!r} is not a safe relative file name")


def _jobs(exams: Sequence[dict]) -> list[_Job]:
    jobs: list[_Job] = []
    seen: dict[str, str] = {}
    for exam in exams:
        exam_id = str(exam.get("exam_id", ""))
        flip = exam.get("horizontal_flip", "NO")
        if flip not in ("YES", "NO"):
            raise InputFileError(f"exam {exam_id}: horizontal_flip must be 'YES' or 'NO', got {flip!r}")
        sources = exam.get("source_paths") or {}
        for view in VIEWS:
            names = exam.get(view, [])
            paths = sources.get(view, [])
            if len(paths) != len(names):
                raise InputFileError(
                    f"exam {exam_id}: source_paths[{view}] has {len(paths)} paths for {len(names)} images"
                )
            for name, source in zip(names, paths):
                _check_name(name, exam_id)
                if name in seen:
                    raise InputFileError(f"image name {name!r} used by exams {seen[name]} and {exam_id}")
                seen[name] = exam_id
                jobs.append(_Job(len(jobs), exam_id, view, name, str(source), flip))
    return jobs


def preprocess_exams(
    exams: Sequence[dict],
    workdir: str | os.PathLike,
    preset: Preset | str = "paper",
    workers: int = 1,
    strict: bool = False,
    background_threshold: int = 0,
    resume: bool = True,
    meta: dict[str, Any] | None = None,
    write: bool = True,
) -> PreprocessReport:
    """Preprocess exam records that carry ``source_paths`` (see :mod:`mammokit.data.examlist`).

    Args:
        exams: exam records (not modified) with image names per view and aligned ``source_paths``.
        workdir: the work folder (created).
        preset: preset name or object (erosion, buffers, input window sizes).
        workers: processes; output does not depend on it.
        strict: stop at the first failure with :class:`PreprocessError`.
        background_threshold: pixels <= this value are background (reference: 0).
        resume: reuse images finished by an earlier run with the same settings.
        meta: extra top-level keys for ``exams.json``.
        write: write ``exams.json`` and the failures file; False leaves them to the caller
            (``report.exams``; :func:`write_outputs`), as one shard of a sharded run does.

    Returns:
        :class:`PreprocessReport`; ``exams.json`` and ``preprocess_failures.csv`` are written.
    """
    start = time.perf_counter()
    preset = get_preset(preset)
    workdir = Path(workdir)
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    if background_threshold < 0:
        raise UsageError(f"background_threshold must be >= 0, got {background_threshold}")
    jobs = _jobs(exams)
    report = PreprocessReport(
        workdir=workdir, exams_path=workdir / EXAMS_FILE, failures_path=workdir / FAILURES_FILE,
        n_images=len(jobs),
    )
    (workdir / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    # Partial files of a killed earlier run (never taken as done, but not left to pile up).
    for folder in (workdir, workdir / IMAGE_DIR, workdir / SIDECAR_DIR):
        remove_stale_temporaries(folder)
    log.info(
        "preprocessing %d images of %d exams (preset %s, %d worker(s), background <= %d)",
        len(jobs), len(exams), preset.name, workers, background_threshold,
    )

    args = [(job, str(workdir), preset, int(background_threshold), resume) for job in jobs]
    results: list[dict] = []
    bar = progress(total=len(jobs), desc="preprocess", unit="img")
    pool = None
    try:
        if workers == 1 or len(jobs) <= 1:
            stream = map(_process_star, args)
        else:
            # "spawn": forking a process whose torch / OpenMP / OpenCV thread pools already run (any
            # caller that used torch first: `mammokit run`, the demo, a test session) can deadlock
            # the children.
            pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker)
            stream = pool.imap(_process_star, args, chunksize=1)  # ordered: output independent of workers
        for job, result in zip(jobs, stream):
            results.append(result)
            bar.update(1)
            if "error" in result:
                failure = {"exam_id": job.exam_id, "view": job.view, "path": job.source, "reason": result["error"]}
                report.failures.append(failure)
                log.warning("%s (%s %s): %s", job.source, job.exam_id, job.view, result["error"])
                if strict:
                    raise PreprocessError(f"{job.source}: {result['error']} (exam {job.exam_id}, {job.view})")
                continue
            for warning in result["warnings"]:
                report.warnings.append({"exam_id": job.exam_id, "view": job.view, "path": job.source, "warning": warning})
                log.warning("%s (%s %s): %s", job.source, job.exam_id, job.view, warning)
            if result["reused"]:
                report.n_reused += 1
            else:
                report.n_processed += 1
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    report.exams = _assemble(exams, jobs, results)
    if write:
        write_outputs(workdir, report.exams, report.failures, exams_meta(preset, background_threshold, meta))
    report.seconds = time.perf_counter() - start
    log.info("%s", report.summary())
    return report


def exams_meta(preset: Preset, background_threshold: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The top-level keys of the ``exams.json`` preprocessing writes."""
    return {"preset": preset.name, "preset_config": preset.to_dict(), "image_dir": IMAGE_DIR,
            "background_threshold": int(background_threshold), **(meta or {})}


def write_outputs(workdir: str | os.PathLike, exams: list[dict], failures: list[dict], meta: dict[str, Any]) -> None:
    """Write ``exams.json`` (``meta`` from :func:`exams_meta`) and the failures file."""
    workdir = Path(workdir)
    save_exams(workdir / EXAMS_FILE, exams, **meta)
    write_csv_atomic(workdir / FAILURES_FILE, failures, FAILURE_COLUMNS)


def _assemble(exams: Sequence[dict], jobs: list[_Job], results: list[dict]) -> list[dict]:
    """Exam records with only the successful images, each with its geometry fields aligned.

    Heatmap paths of the input records are dropped: they belong to an earlier crop.
    """
    by_name = {job.name: result for job, result in zip(jobs, results)}
    out = []
    for exam in exams:
        record = copy.deepcopy(exam)
        for key in HEATMAP_FIELDS:
            record.pop(key, None)
        sources = record.get("source_paths") or {}
        kept_sources: dict[str, list] = {view: [] for view in VIEWS}
        masks = {key: record[key] for key in MASK_FIELDS if isinstance(record.get(key), dict)}
        kept_masks: dict[str, dict[str, list]] = {key: {view: [] for view in VIEWS} for key in masks}
        geometry = {key: {view: [] for view in VIEWS} for key in GEOMETRY_FIELDS + (SOURCE_SHAPE_FIELD,)}
        for view in VIEWS:
            names = []
            for k, (name, source) in enumerate(zip(exam.get(view, []), sources.get(view, []))):
                result = by_name[name]
                if "error" in result:
                    continue
                names.append(name)
                kept_sources[view].append(source)
                for key, per_view in masks.items():
                    values = per_view.get(view) or []
                    kept_masks[key][view].append(values[k] if k < len(values) else None)
                for key in geometry:
                    geometry[key][view].append(result["geometry"][key])
            record[view] = names
        record["source_paths"] = kept_sources
        record.update(kept_masks)
        record.update(geometry)
        out.append(record)
    return out


def preprocess(manifest: str | os.PathLike, workdir: str | os.PathLike, **options: Any) -> PreprocessReport:
    """Preprocess every image of a manifest CSV into ``workdir`` (see the module docstring);
    ``options`` are those of :func:`preprocess_exams` (``preset``, ``workers``, ``strict``,
    ``background_threshold``, ``resume``).

    Raises:
        MissingFileError / mammokit.data.manifest.ManifestError: unreadable manifest.
        PreprocessError: with ``strict=True``, the first image that fails.
    """
    from mammokit.data.manifest import manifest_to_exams, read_manifest

    manifest = Path(manifest)
    exams = manifest_to_exams(read_manifest(manifest), source=manifest)
    return preprocess_exams(exams, workdir, meta={"manifest": str(manifest.resolve())}, **options)
