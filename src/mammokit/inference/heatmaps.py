"""``make_heatmaps``: heatmaps for every cropped image of a work folder (``mammokit heatmaps``).

Reads ``WORKDIR/exams.json`` and ``WORKDIR/<image_dir>/<name>.png``; writes
``WORKDIR/heatmaps/{malignant,benign}/<name>.png`` (and with ``reference_layout`` also
``WORKDIR/heatmap_{malignant,benign}/<name>.hdf5``), records the PNG paths in the exam list
(fields ``heatmap_malignant`` / ``heatmap_benign``, relative to WORKDIR). Resumable: images whose
heatmap files all exist are skipped. A failing image is logged, listed in
``WORKDIR/heatmap_failures.csv`` and skipped (``strict=True`` makes it fatal). The exam list's
``heatmaps`` entry records what the maps were made with (precision, device, patch model, patch
size, stride, seed).

Many processes: ``shard="i/N"`` (or torchrun's ``RANK``/``WORLD_SIZE``) computes the images of
that shard's exams, and records its failures in ``WORKDIR/.shards/heatmaps.shard-i-of-N.json``
instead of the exam list; the shard that completes the set writes the exam list and failures file
a single process writes (:mod:`mammokit.utils.shard`).
"""

from __future__ import annotations

import random
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from mammokit.config import get_preset, preset_of, workdir_preset
from mammokit.data.examlist import iter_images, load_exams, save_exams, set_image_field
from mammokit.data.heatmap_io import write_heatmap_hdf5, write_heatmap_png
from mammokit.data.images import read_image
from mammokit.errors import InputFileError, MammokitError, MissingFileError, UsageError
from mammokit.heatmaps import (
    compile_patch_model,
    compute_heatmaps_many,
    default_batch_size,
    num_patches,
)
from mammokit.models.presets import AUTO, check_against_workdir
from mammokit.transforms import from_model_frame, standardize_image, to_model_frame
from mammokit.utils.device import dtype_name, resolve_device, resolve_dtype
from mammokit.utils.io import remove_stale_temporaries, write_csv_atomic
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

log = get_logger(__name__)

FAILURES_FILE = "heatmap_failures.csv"
FAILURE_COLUMNS = ["exam_id", "view", "name", "reason"]


def heatmap_paths(name: str) -> dict[str, str]:
    """Relative paths of an image's heatmap files (native PNG and the authors' HDF5)."""
    return {
        "malignant": f"heatmaps/malignant/{name}.png",
        "benign": f"heatmaps/benign/{name}.png",
        "malignant_hdf5": f"heatmap_malignant/{name}.hdf5",
        "benign_hdf5": f"heatmap_benign/{name}.hdf5",
    }


def _is_pickle(path: Path) -> bool:
    """A torch.save file (zip or bare pickle), not a safetensors checkpoint. The safetensors
    signature is checked first: its 8-byte header length can start with 0x80, like a pickle."""
    import struct

    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= path.stat().st_size:
        return False
    return head[:2] == b"PK" or head[:1] == b"\x80"


def load_patch_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A patch classifier from a mammokit checkpoint, or from the authors' ``.p`` file
    (converted on the fly). Returns ``(model, meta)``; ``meta["preset"]`` may be None."""
    from mammokit.models.checkpoint import load_model
    from mammokit.models.convert import reference_model

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: patch model not found")
    if _is_pickle(path):  # torch.save pickle: the authors' weights
        model, arch, args = reference_model(path, kind="patch")
        meta = {"arch": arch, "model_args": args, "preset": "paper", "extra": {"source_file": path.name}}
        model = model.to(device)
    else:
        model, meta = load_model(path, device=device)
    if getattr(model, "num_classes", 0) < 2 or meta.get("arch") not in ("densenet121_patch", "patchnet_small"):
        raise InputFileError(f"{path}: not a patch classifier (arch {meta.get('arch')!r})")
    return model.eval(), meta


def make_heatmaps(
    workdir: str | Path,
    patch_model: str | Path,
    stride: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    reference_layout: bool = False,
    seed: int = 0,
    strict: bool = False,
    patch_size: int | None = None,
    compile: bool | str = "auto",
    shard: str | Shard | None = None,
    preset: Any = AUTO,
) -> dict[str, Any]:
    """Compute and write the heatmaps of every image of a preprocessed work folder.

    The patches of an exam's views share batches. ``batch_size`` None: 512 on CUDA, 4 for
    DenseNet-121 on the CPU (:func:`~mammokit.heatmaps.sliding.default_batch_size`).
    ``compile=True`` runs the patch classifier through ``torch.compile`` with a fixed batch shape
    (the last batch of each exam is padded, in eighths of a batch): on an H100 12,400 patches/s
    (fp16) against ~5,600 eager; on a 2-core CPU 1.3x eager (benchmarks/results). Paid for with a
    one-off compilation of 1-2 minutes, so it pays on jobs of more than an exam or two.
    ``compile="auto"`` (default) compiles a DenseNet-121 patch classifier when the job is large
    enough for that to pay (:func:`should_compile`), and falls back to eager, with a warning, if
    compilation fails (no C++ compiler, no Triton...).

    Patch size and default stride come from ``preset``: ``"auto"`` (default) = the patch model
    checkpoint's recorded preset, else the work folder's (``exams.json`` meta); a patch model
    recorded at a preset other than the work folder's is a
    :class:`~mammokit.config.PresetMismatchError` naming both. An explicit ``preset`` (name,
    ``scale:F``, TOML file) must match the work folder's. The shortened strides are placed with a stream
    seeded by ``(seed, image name)``, so results do not depend on the order of the images.

    ``shard``: ``"i/N"`` computes only that shard's exams (see the module docstring); None: the
    whole job, or this rank's shard when launched by torchrun.

    Returns a summary: ``{"done", "skipped", "failed", "patches", "seconds", "patch_size", "stride",
    "precision", "shard", "missing_shards"}`` (counts of this process' images).
    """
    workdir = Path(workdir)
    exams_path = workdir / "exams.json"
    exams, meta = load_exams(exams_path)
    sh = resolve_shard(shard)
    job = HeatmapJob.create(workdir, meta, patch_model, stride, batch_size, device, dtype, reference_layout, seed,
                            patch_size, compile, exams, preset=preset)
    if sh is None:
        # Leftovers of a killed run (never taken as maps); shards share these folders, so only a
        # single process clears them.
        for folder in {str(Path(p).parent) for p in heatmap_paths("x").values()}:
            remove_stale_temporaries(workdir / folder)
        out = job.compute(exams, list(range(len(exams))), strict, exams_path=exams_path, meta=meta)
        finish_heatmaps(exams_path, exams, meta, out["failures"], job.info)
        summary = {**out, "shard": None, "missing_shards": []}
    else:
        positions = shard_positions([str(e.get("exam_id")) for e in exams], sh)
        key = job.key(exams)
        ppath = part_path(workdir, "heatmaps", sh)
        data = read_part(ppath, "heatmaps", key, sh)
        if data is None:
            data = job.compute([exams[i] for i in positions], positions, strict)
            write_part(ppath, "heatmaps", key, sh, data)
        else:
            log.info("heatmaps shard %s: reusing %s (same job)", sh, ppath)
            data = {**data, "done": 0, "skipped": data["done"] + data["skipped"], "patches": 0, "seconds": 0.0}
        parts, missing = read_parts(workdir, "heatmaps", "heatmaps", key, sh.count)
        if missing:
            log.info("heatmaps shard %s done; waiting for shard(s) %s to merge", sh, ", ".join(map(str, missing)))
        else:
            finish_heatmaps(exams_path, exams, meta, [f for part in parts for f in part["failures"]], job.info)
            log.info("heatmaps shard %s: all %d shards done, exam list merged", sh, sh.count)
        summary = {**data, "shard": str(sh), "missing_shards": missing}
    summary["failed"] = len(summary.pop("failures"))
    return {**summary, "patch_size": job.patch_size, "stride": job.stride, "precision": job.info["precision"]}


def finish_heatmaps(exams_path: Path, exams: list[dict], meta: dict, failures: list[dict], info: dict) -> None:
    """Record every image's heatmap paths (None for the ``failures``) in the exam list, with the
    job's ``info`` as its ``heatmaps`` entry, and write the failures file (in exam order) when
    any failed. The same for one process and for the merge of shards."""
    failures = sorted(failures, key=lambda f: f["position"])  # stable: the order within an exam stays
    record_heatmap_fields(exams, failures, range(len(exams)))
    save_exams(exams_path, exams, **{**meta, "heatmaps": info})
    workdir = exams_path.parent
    if failures:
        write_csv_atomic(workdir / FAILURES_FILE, [{k: f[k] for k in FAILURE_COLUMNS} for f in failures],
                         FAILURE_COLUMNS)
        log.warning("%d image(s) failed; see %s", len(failures), workdir / FAILURES_FILE)


def record_heatmap_fields(exams: list[dict], failures: list[dict], positions) -> None:
    """Set the heatmap fields of every image of ``exams`` (``positions[k]``: the job position of
    ``exams[k]``, as in the failures): the map paths, or None for a failed image."""
    failed = {(f["position"], f["name"]) for f in failures}
    for k, exam, group in _exam_groups(exams):
        _record_exam(exam, group, {name for _, _, _, name in group if (positions[k], name) in failed})


def _record_exam(exam: dict, group: list[tuple], failed: set[str]) -> None:
    """Set the heatmap fields of one exam's images, in image order: None when failed."""
    for _, view, index, name in group:
        rel = None if name in failed else heatmap_paths(name)
        set_image_field(exam, "heatmap_malignant", view, index, rel and rel["malignant"])
        set_image_field(exam, "heatmap_benign", view, index, rel and rel["benign"])


class HeatmapJob:
    """The settings of one heatmaps job and its loaded patch classifier (:meth:`create`);
    :meth:`compute` runs it over some of the job's exams."""

    @classmethod
    def create(cls, workdir, meta, patch_model, stride, batch_size, device, dtype, reference_layout, seed,
               patch_size, compile, exams, estimate_scale: float = 1.0, preset: Any = AUTO) -> HeatmapJob:
        """``exams``: the whole job's exams (the automatic compile decision is the job's);
        ``estimate_scale`` multiplies their patch estimate when only a part of the job is known
        (a shard of ``mammokit run``); ``preset``: see :func:`make_heatmaps`."""
        self = cls()
        self.workdir = Path(workdir)
        self.image_dir = self.workdir / meta.get("image_dir", "cropped")
        self.patch_model = patch_model
        self.reference_layout, self.seed = reference_layout, seed
        self._init(meta, stride, batch_size, device, dtype, patch_size, compile, exams, estimate_scale, preset)
        return self

    def key(self, exams: list[dict]) -> str:
        """The job's fingerprint: settings that change the maps, and the exam list."""
        return job_key("heatmaps", {**self.info, "patch_model": file_stamp(self.patch_model),
                                    "reference_layout": self.reference_layout, "compile": bool(self.compile)}, exams)

    def _init(self, meta, stride, batch_size, device, dtype, patch_size, compile, exams, estimate_scale,
              preset) -> None:
        workdir, patch_model, exams_path = self.workdir, self.patch_model, self.workdir / "exams.json"
        dev = resolve_device(device, local_rank())
        dt = resolve_dtype(dtype, dev, "heatmaps")
        model, model_meta = load_patch_model(patch_model, device=dev)
        if batch_size is None:
            batch_size = default_batch_size(model, dev)
        self.eager_model = model
        work_preset = workdir_preset(meta, exams_path) if (meta.get("preset_config") or meta.get("preset")) else None
        model_preset = preset_of(model_meta.get("preset"))
        if preset is not None and preset != AUTO:
            preset = get_preset(preset)
        else:
            preset = model_preset or work_preset
        if preset is None and (patch_size is None or stride is None):
            raise UsageError(f"{exams_path}: no preset recorded and none in {patch_model}; pass patch_size and stride")
        if work_preset is not None:
            check_against_workdir(preset if preset is not model_preset else AUTO, work_preset,
                                  f"work folder {workdir}", [(f"patch model {patch_model}", model_preset)])
        patch_size = patch_size or preset.patch_size
        stride = stride or preset.heatmap_stride
        images = list(iter_images(exams))
        self.wanted = ["malignant", "benign"] + (["malignant_hdf5", "benign_hdf5"] if self.reference_layout else [])
        pending = self.pending(images)
        self.auto = compile == "auto"
        if self.auto:
            # Decided on the whole job (every shard decides alike), so sharded maps equal one process'.
            estimate = int(estimate_scale * sum(_patches_estimate(exam, view, index, patch_size, stride)
                                                for exam, view, index, name in images if name in pending))
            compile = should_compile(model, dev, estimate)
            log.info("heatmaps: ~%d patches to compute: %s", estimate,
                     "compiling the patch classifier" if compile else "eager")
        elif compile not in (True, False):
            raise UsageError(f"compile must be True, False or 'auto', got {compile!r}")
        if compile:
            model = compile_patch_model(model, dev)
        log.info("heatmaps: patch %d, stride %d, batch %d, device %s, precision %s", patch_size, stride, batch_size,
                 dev, dtype_name(dt))
        self.model, self.compile, self.dev, self.dt = model, compile, dev, dt
        self.patch_size, self.stride, self.batch_size = patch_size, stride, batch_size
        self.info = {"precision": dtype_name(dt), "device": dev.type, "patch_model": Path(patch_model).name,
                     "patch_size": patch_size, "stride": stride, "seed": self.seed}

    def pending(self, images: list[tuple]) -> set[str]:
        """Names of the images whose heatmap files are not all there yet."""
        return {name for *_, name in images
                if not all((self.workdir / heatmap_paths(name)[k]).is_file() for k in self.wanted)}

    def compute(self, exams: list[dict], positions: list[int], strict: bool, exams_path: Path | None = None,
                meta: dict | None = None) -> dict[str, Any]:
        """Write the missing heatmaps of ``exams`` (``positions``: their places in the job's exam
        list). With ``exams_path``, the exam list is saved every few exams (progress of long
        single-process runs). Returns ``{"done", "skipped", "patches", "seconds", "failures"}``;
        each failure ``{"position", "exam_id", "view", "name", "reason"}``."""
        images = list(iter_images(exams))
        pending = self.pending(images)
        model, compile = self.model, self.compile
        failures: list[dict] = []
        done = skipped = patches = 0
        first_call_done = False
        t0 = time.perf_counter()
        # PNG decoding of the next images overlaps the model's work on this exam (OpenCV releases the GIL).
        reader = ThreadPoolExecutor(max_workers=2)
        decoded = _prefetch(reader, [self.image_dir / f"{name}.png" for *_, name in images if name in pending], ahead=4)

        def fail(position, exam, view, name, exc) -> None:
            log.error("exam %s %s %s: %s", exam.get("exam_id"), view, name, exc)
            failures.append({"position": position, "exam_id": exam.get("exam_id", ""), "view": view, "name": name,
                             "reason": str(exc)})

        bar = progress(total=len(images), desc="heatmaps", unit="image")
        with bar:
            # One exam at a time: the patches of its views share the model's batches.
            for n_exam, exam, group in _exam_groups(exams):
                position = positions[n_exam]
                todo = []  # (view, index, name, image)
                failed: set[str] = set()
                for _, view, index, name in group:
                    if name not in pending:
                        skipped += 1
                        continue
                    try:
                        todo.append((view, index, name, next(decoded).result()))
                    except (MammokitError, OSError) as exc:
                        if strict:
                            reader.shutdown(cancel_futures=True)
                            raise
                        fail(position, exam, view, name, exc)
                        failed.add(name)
                if todo:
                    try:
                        args = (todo, self.workdir, exam.get("horizontal_flip", "NO"))
                        rest = (self.patch_size, self.stride, self.batch_size, self.dev, self.dt,
                                self.reference_layout, self.seed)
                        try:
                            patches += _exam_heatmaps(*args, model, *rest, static_batch=compile)
                            first_call_done = True
                        except (MammokitError, OSError, ValueError):
                            raise  # the image's problem (or a bug), not the compiler's
                        except Exception as exc:  # noqa: BLE001 - only a failed automatic compile is caught here
                            # Compilation happens at the first call; later errors are the job's own.
                            if not (self.auto and compile and not first_call_done):
                                raise
                            log.warning("torch.compile of the patch classifier failed (%s: %s); continuing eager",
                                        type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
                            model, compile = self.eager_model, False
                            self.model, self.compile = model, compile
                            patches += _exam_heatmaps(*args, model, *rest, static_batch=False)
                        done += len(todo)
                    except (MammokitError, OSError) as exc:
                        if strict:
                            reader.shutdown(cancel_futures=True)
                            raise
                        for view, _, name, _ in todo:
                            fail(position, exam, view, name, exc)
                            failed.add(name)
                bar.update(len(group))
                if exams_path is not None:
                    _record_exam(exam, group, failed)
                    if (n_exam + 1) % 5 == 0:  # keep the exam list current on long runs
                        save_exams(exams_path, exams, **(meta or {}))
        reader.shutdown()
        seconds = time.perf_counter() - t0
        log.info("heatmaps: %d done, %d already there, %d failed, %d patches in %.1f s", done, skipped, len(failures),
                 patches, seconds)
        return {"done": done, "skipped": skipped, "patches": patches, "seconds": seconds, "failures": failures}

def _prefetch(pool: ThreadPoolExecutor, paths: list[Path], ahead: int):
    """Futures of ``read_image(path)`` in order, keeping ``ahead`` reads in flight."""
    futures: deque = deque()
    it = iter(paths)
    for path in islice(it, ahead):
        futures.append(pool.submit(read_image, path))
    while futures:
        future = futures.popleft()
        nxt = next(it, None)
        if nxt is not None:
            futures.append(pool.submit(read_image, nxt))
        yield future


# Patches after which torch.compile pays for its 1-2 minutes (DenseNet-121, 256 px, measured:
# CPU 10.3 -> 13.5 patches/s, 94 s to compile; H100 ~5,600 -> ~12,000 patches/s, ~80 s).
COMPILE_AFTER_PATCHES = {"cpu": 8_000, "cuda": 1_000_000}


def should_compile(model: nn.Module, device: torch.device, patches: int) -> bool:
    """Whether ``compile="auto"`` compiles: a DenseNet-121 patch classifier and a job of at least
    :data:`COMPILE_AFTER_PATCHES` patches on this device type (the small CPU-preset network is
    not compiled: its gain was not measured)."""
    from torchvision.models.densenet import DenseNet

    limit = COMPILE_AFTER_PATCHES.get(torch.device(device).type)
    return bool(limit is not None and isinstance(model, DenseNet) and patches >= limit)


def _patches_estimate(exam: dict, view: str, index: int, patch_size: int, stride: int) -> int:
    """Patches of one image from its crop box in the exam list (``window_location``: top,
    bottom, left, right), without reading the image; 0 when unknown."""
    try:
        top, bottom, left, right = exam["window_location"][view][index]
        return num_patches(int(bottom) - int(top), int(right) - int(left), patch_size, stride)
    except (KeyError, IndexError, TypeError, ValueError):
        return 0


def _exam_groups(exams: list[dict]):
    """``(k, exam, [(exam, view, index, name), ...])`` for every exam (an exam without images has
    an empty group)."""
    for k, exam in enumerate(exams):
        yield k, exam, list(iter_images([exam]))


def _exam_heatmaps(
    todo: list[tuple[str, int, str, np.ndarray]], workdir: Path, horizontal_flip: str, model: nn.Module,
    patch_size: int, stride: int, batch_size: int | None, device, dtype, reference_layout: bool, seed: int,
    static_batch: bool = False,
) -> int:
    """Heatmaps of one exam's images ``todo = [(view, index, name, image [H, W] uint16), ...]``
    (original orientation), written beside the work folder's other outputs; returns the number
    of patches. The shortened strides of each image are seeded by ``(seed, name)``."""
    inputs, rngs = [], []
    for view, _, name, image in todo:
        inputs.append(standardize_image(np.ascontiguousarray(to_model_frame(image, view, horizontal_flip))))
        rngs.append(random.Random(derive_seed(seed, name)))
    maps_all = compute_heatmaps_many(
        inputs, model, patch_size, stride, batch_size, device, dtype, rngs,
        channels_last=True if static_batch else None, static_batch=static_batch,
    )
    n = 0
    for (view, _, name, image), maps in zip(todo, maps_all):
        maps = from_model_frame(maps.numpy(), view, horizontal_flip)  # the stored orientation
        malignant, benign = np.ascontiguousarray(maps[0]), np.ascontiguousarray(maps[1])
        rel = heatmap_paths(name)
        write_heatmap_png(workdir / rel["malignant"], malignant)
        write_heatmap_png(workdir / rel["benign"], benign)
        if reference_layout:
            write_heatmap_hdf5(workdir / rel["malignant_hdf5"], malignant)
            write_heatmap_hdf5(workdir / rel["benign_hdf5"], benign)
        n += num_patches(*image.shape, patch_size, stride)
    return n
