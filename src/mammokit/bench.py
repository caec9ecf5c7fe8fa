"""``python -m mammokit.bench``: speed (and accuracy beside speed) of every stage of the system.

Stages (``--stages``), per preset (``--preset``, repeatable):

* ``heatmaps``: dense patch heatmaps of one exam (4 views at the cropped sizes of
  ``docs/performance.md``: 2900 x 1800 CC, 3200 x 1900 MLO at paper scale, scaled for the other
  presets). On the same standardised images and the same patch grid: ``reference`` (fp32, 3
  repeated input channels, contiguous, patches cut on the host, batch 100: the published
  implementation's settings; on CUDA with TF32 off) and ``fast``, the library path that
  ``mammokit heatmaps`` runs (:func:`mammokit.heatmaps.sliding.patch_probabilities_many`: the
  exam's views in one patch stream, patches cut on the device, background patches once, folded
  grayscale channel, ``--dtype``, ``--channels-last``, ``--batch-size``, ``--compile`` =
  :func:`~mammokit.heatmaps.sliding.compile_patch_model`), plus ``fast-<dtype>`` rows for
  ``--compare-dtypes``. Reports patches/s, s/exam and the max abs difference of the patch
  probabilities and of the heatmaps from the fp32 reference (target <= 0.01; meaningful only
  with trained weights: ``--patch-checkpoint``). When a full exam is too slow (the
  paper preset on a CPU), only the first ``--max-patches`` patches are run and s/exam is
  extrapolated (marked ``extrapolated``).
* ``predict``: both view-wise models (image-only and image+heatmaps), 10 TTA draws per view,
  windows sampled on the CPU and cut + resized on the device from device-resident images
  (:func:`mammokit.data.views.make_model_inputs`); s/exam, fast vs fp32 reference probabilities.
* ``pipeline``: a stream of ``--exams`` exams from cropped 16-bit PNGs to predictions: PNG decode
  on background threads (overlapping the device work), pinned-memory copies, standardisation,
  heatmaps, windows, both models. exams/s, sustained (first exam excluded as warm-up).
* ``train``: view-wise image+heatmaps training steps (windows cut on the device from decoded
  images, forward, loss, backward, Adam step): exams/s and peak memory
  (``torch.cuda.max_memory_allocated`` on CUDA; the process' peak RSS ``ru_maxrss`` on the CPU).

``--ablation`` measures heatmap patches/s and accuracy for a series of lever combinations in one
run (first preset only). Timing: warm-up calls, then ``--repeats`` timed calls, median;
``torch.cuda.synchronize`` before every clock read; inputs are realistic images (the real
sample mammograms of ``../shared/data/real`` when present, else synthetic breast images), never
zeros. Weights are random (speed does not depend on them) but calibrated: batch-norm statistics
from one batch of the inputs and classifier outputs scaled to a logit spread like a trained
model's; the patch classifier's accuracy needs trained weights (``--patch-checkpoint``), since a
random DenseNet is chaotic in its inputs.

Output: a table on stdout and JSON (default ``benchmarks/results/<device-name>-<preset>.json``
per preset, or all presets in ``-o PATH``), with device, dtype, batch sizes, image sizes,
software versions and settings.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import math
import os
import platform
import random
import re
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mammokit.config import VIEWS, Preset, get_preset
from mammokit.utils.io import write_json_atomic
from mammokit.utils.seed import derive_seed

SCHEMA = "mammokit.bench/1"
STAGES = ("heatmaps", "predict", "pipeline", "train")
PAPER_CROP_SIZE = {"CC": (2900, 1800), "MLO": (3200, 1900)}
"""Cropped image size (H, W) per view kind at paper scale (docs/performance.md)."""
REFERENCE_BATCH = 100
TTA = 10
HEATMAP_DIFF_TARGET = 0.01
# One H100, paper preset (the targets); printed beside the measured figures.
H100_TARGETS = {
    "heatmaps_patches_per_s": 12000.0,
    "heatmaps_s_per_exam": 0.35,
    "predict_s_per_exam": 0.15,
    "pipeline_exams_per_s": 2.0,
    "train_exams_per_s": 20.0,
}
CPU_REFERENCE_PATCHES_PER_S = 12.0
"""The reference implementation's densenet121 heatmaps on the 2-core CPU (docs/performance.md)."""
CPU_TARGET_FACTOR = 3.0


# --------------------------------------------------------------------------------- settings


@dataclass
class Settings:
    presets: list[str]
    device: str
    dtype: str
    batch_size: int | None
    repeats: int
    warmup: int
    stages: list[str]
    compile: bool
    compile_targets: list[str]
    channels_last: bool
    exams: int
    quick: bool
    ablation: bool
    seed: int
    max_patches: int | None
    train_batch: int | None
    data: str
    time_budget: float | None
    output: str | None
    unique_exams: int = 3
    ablation_patches: int | None = None
    tta: int = 10
    stride: int | None = None
    patch_checkpoint: str | None = None
    compare_dtypes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


_DTYPE_NAMES = ("fp32", "bf16", "fp16")


def _torch_dtype(name: str):
    from mammokit.heatmaps.sliding import DTYPES

    return DTYPES[name]


def _torch():
    import torch

    return torch


def sync(device) -> None:
    torch = _torch()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], device, warmup: int, repeats: int) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (device synchronised
    before each clock read). Returns ``{"times", "median", "min", "last"}`` (seconds; ``last``
    is ``fn``'s last return value)."""
    out = None
    for _ in range(warmup):
        out = fn()
        sync(device)
    times = []
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"times": times, "median": statistics.median(times), "min": min(times), "last": out}


def device_name(device) -> str:
    """``cpu-2core`` / ``nvidia-h100-80gb-hbm3``: a file-name-safe name of the machine."""
    torch = _torch()
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu-{os.cpu_count()}core"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def environment(device) -> dict[str, Any]:
    """Device description and software versions."""
    torch = _torch()
    device = torch.device(device)
    info: dict[str, Any] = {
        "device_type": device.type,
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=torch.cuda.get_device_name(device),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_count=torch.cuda.device_count(),
        )
    import cv2

    software = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "mammokit": _mammokit_version(),
    }
    try:
        import torchvision

        software["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - a dependency
        pass
    return {"device": info, "software": software}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mammokit_version() -> str:
    try:
        from importlib.metadata import version

        return version("mammokit")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def rss_bytes() -> int | None:
    """Current resident set size (Linux ``/proc/self/statm``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss``; KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


# --------------------------------------------------------------------------------- inputs


def crop_size(preset: Preset, view: str) -> tuple[int, int]:
    """Cropped image size (H, W) of a view at the preset's scale."""
    kind = view.split("-")[-1]
    h, w = PAPER_CROP_SIZE[kind]
    return max(preset.patch_size, round(h * preset.scale)), max(preset.patch_size, round(w * preset.scale))


def real_data_dir() -> Path | None:
    """The real sample mammograms (``MAMMOKIT_REAL_DATA`` or ``../shared/data/real`` beside the
    project or the working directory), or None."""
    candidates = []
    if os.environ.get("MAMMOKIT_REAL_DATA"):
        candidates.append(Path(os.environ["MAMMOKIT_REAL_DATA"]))
    here = Path(__file__).resolve()
    candidates += [here.parents[3] / "shared" / "data" / "real", Path.cwd().parent / "shared" / "data" / "real"]
    for c in candidates:
        if (c / "1_L_CC.png").is_file():
            return c
    return None


def _smooth_noise(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    h, w = shape
    small = rng.standard_normal((max(2, h // cell), max(2, w // cell))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def synthetic_view(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A breast-like 16-bit image ``[H, W]`` (chest wall on the left): a half-ellipse of
    multi-scale parenchymal texture with fine quantum noise, background 0."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy = h * rng.uniform(0.45, 0.55)
    inside = (xx / (0.97 * w)) ** 2 + ((yy - cy) / (0.49 * h)) ** 2 <= 1.0
    scale = max(h, w)
    tissue = (
        0.55 * _smooth_noise(shape, max(4, scale // 8), rng)
        + 0.3 * _smooth_noise(shape, max(2, scale // 40), rng)
        + 0.15 * _smooth_noise(shape, max(2, scale // 200), rng)
    )
    values = 2000 + 500 * tissue + rng.normal(0, 25, size=shape).astype(np.float32)
    values = np.clip(values, 1, 4095) * inside
    return (values * (65535 / 4095)).round().astype(np.uint16)


def _real_view(path: Path, shape: tuple[int, int], flip: bool) -> np.ndarray:
    """A real mammogram cut to its breast's bounding box and resized to ``shape`` (chest wall on
    the left)."""
    import cv2

    from mammokit.data.images import read_image

    image = read_image(path)
    if flip:
        image = image[:, ::-1]
    mask = image > np.percentile(image[image > 0], 5) if (image > 0).any() else image >= 0
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    image = np.ascontiguousarray(image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


@dataclass
class BenchExam:
    """One exam: per view a 16-bit image in ORIGINAL orientation, and the exam record."""

    record: dict
    images: dict[str, np.ndarray]  # view -> uint16 [H, W], original orientation
    source: str


def make_exams(preset: Preset, n: int, seed: int, data: str = "auto") -> list[BenchExam]:
    """``n`` exams at the preset's cropped sizes: real sample mammograms (resized, the CC images
    stand in for the MLO views too) when ``data`` is ``real`` or ``auto`` and they are present,
    else synthetic breast images."""
    real = real_data_dir() if data in ("auto", "real") else None
    if data == "real" and real is None:
        raise FileNotFoundError("--data real: real sample mammograms not found (set MAMMOKIT_REAL_DATA)")
    files = sorted(real.glob("*_CC.png")) if real else []
    exams = []
    for i in range(n):
        exam_id = f"bench{i}"
        images, centers, names = {}, {}, {}
        for j, view in enumerate(VIEWS):
            shape = crop_size(preset, view)
            flip = view.startswith("R")
            if files:
                img = _real_view(files[(i * 4 + j) % len(files)], shape, flip=flip)
            else:
                img = synthetic_view(shape, np.random.default_rng(derive_seed(seed, "image", i, view)))
            h, w = preset.input_size(view)
            centers[view] = [[shape[0] // 2, min(w // 2, shape[1] // 2)]]
            images[view] = np.ascontiguousarray(img[:, ::-1]) if flip else img  # back to original orientation
            names[view] = [f"{exam_id}_{view.replace('-', '_')}"]
        record = {"exam_id": exam_id, "horizontal_flip": "NO", **names, "best_center": centers}
        exams.append(BenchExam(record, images, f"real:{real}" if files else "synthetic"))
    return exams


def model_frame(image: np.ndarray, view: str) -> np.ndarray:
    """Original orientation -> the models' frame (chest wall on the left)."""
    return np.ascontiguousarray(image[:, ::-1]) if view.startswith("R") else image


def heatmap_channels(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth probability maps ``[2, H, W]`` (benign, malignant) for the predict and train stages."""
    rng = np.random.default_rng(seed)
    maps = [1 / (1 + np.exp(-(_smooth_noise(shape, max(4, max(shape) // 10), rng) * 1.5 - 2.5))) for _ in range(2)]
    return np.stack(maps).astype(np.float32)


# --------------------------------------------------------------------------------- patch models


def patch_arch(preset: Preset) -> str:
    return "densenet121_patch" if preset.patch_arch.startswith("densenet") else "patchnet_small"


def _first_conv_key(model) -> str:
    import torch.nn as nn

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    raise ValueError("model has no Conv2d")


def build_patch_models(preset: Preset, seed: int, calib: "np.ndarray | None" = None):
    """``(model_3ch, model_1ch)``: the patch classifier with 3 repeated input channels (the
    reference's) and the same function with the grayscale channel folded into the first kernel.
    Random weights, calibrated on ``calib`` patches ``[N, P, P]`` (see module docstring)."""
    torch = _torch()
    from mammokit.models import create_model
    from mammokit.models.patch import fold_input_channels

    arch = patch_arch(preset)
    torch.manual_seed(derive_seed(seed, "patch-model") % 2**63)
    m3 = create_model(arch, num_classes=3, in_chans=3)
    if calib is not None:
        x = torch.from_numpy(calib)[:, None].expand(-1, 3, -1, -1).contiguous()
        _calibrate(m3, lambda m: m(x), lambda out: [out])
    m3.eval()
    sd = m3.state_dict()
    key = _first_conv_key(m3)
    sd[key] = fold_input_channels(sd[key], 1)
    m1 = create_model(arch, num_classes=3, in_chans=1)
    m1.load_state_dict(sd)
    return m3.eval(), m1.eval()


def load_patch_models(path: str):
    """``(model_3ch, model_1ch)`` from a trained patch classifier (mammokit checkpoint or the
    authors' file): for the accuracy comparison, which random weights make meaningless (their
    outputs are chaotic in the inputs: a 1e-3 change of a logit flips probabilities)."""
    from mammokit.inference.heatmaps import load_patch_model
    from mammokit.models import create_model
    from mammokit.models.patch import fold_input_channels

    model, meta = load_patch_model(path)
    arch, args = meta["arch"], dict(meta.get("model_args") or {})
    sd = model.state_dict()
    key = _first_conv_key(model)
    w = sd[key]
    sd1, sd3 = dict(sd), dict(sd)
    sd1[key] = fold_input_channels(w, 1) if w.shape[1] != 1 else w
    # 3 channels carrying a third of the kernel each: the same function on a repeated channel.
    sd3[key] = sd1[key].repeat(1, 3, 1, 1) / 3
    models = []
    for ch, state in ((3, sd3), (1, sd1)):
        m = create_model(arch, **{**args, "in_chans": ch})
        m.load_state_dict(state)
        m._bench_source = f"trained: {Path(path).name}"
        models.append(m.eval())
    return tuple(models)


def _calibrate(model, forward: Callable, logits_of: Callable, logit_std: float = 2.0) -> None:
    """Batch-norm running statistics from one batch (train-mode forward, momentum 1), then the
    last linear layers scaled so the logits' std is ``logit_std``."""
    torch = _torch()
    import torch.nn as nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 1.0
    model.train()
    with torch.no_grad():
        forward(model)
    for bn, mom in zip(bns, saved):
        bn.momentum = mom
    model.eval()
    with torch.no_grad():
        outs = logits_of(forward(model))
        std = float(torch.cat([o.float().flatten() for o in outs]).std())
    if not math.isfinite(std) or std <= 0:
        return
    heads = _output_linears(model)
    with torch.no_grad():
        for lin in heads:
            lin.weight.mul_(logit_std / std)
            if lin.bias is not None:
                lin.bias.mul_(logit_std / std)


def _output_linears(model):
    import torch.nn as nn

    named = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    heads = [m for n, m in named if n.startswith("classifier") or "output_layer" in n]
    return heads or [named[-1][1]]


# --------------------------------------------------------------------------------- patch engine


@dataclass(frozen=True)
class Levers:
    """One combination of the heatmap speed levers."""

    dtype: str = "fp32"  # fp32 | bf16 | fp16
    channels_last: bool = False
    fold: bool = False  # grayscale channel folded into the first kernel (1-channel model)
    cut: str = "device"  # device | host (numpy, then copied)
    batch: int = REFERENCE_BATCH
    compile: str = "none"  # none | default | reduce-overhead

    def label(self) -> str:
        parts = [self.dtype, "cl" if self.channels_last else "contig", "fold" if self.fold else "3ch",
                 f"cut-{self.cut}", f"b{self.batch}"]
        if self.compile != "none":
            parts.append(f"compile-{self.compile}")
        return " ".join(parts)

    def as_dict(self) -> dict:
        return {"dtype": self.dtype, "channels_last": self.channels_last, "fold": self.fold, "cut": self.cut,
                "batch": self.batch, "compile": self.compile}


class PatchEngine:
    """Patch probabilities of a set of images under one :class:`Levers` combination.

    Patches of all images of an exam are batched together (only the exam's last batch is short;
    it is padded to the full batch under ``torch.compile`` so shapes stay static).
    """

    _compiled: dict = {}

    def __init__(self, models: tuple, levers: Levers, device) -> None:
        torch = _torch()
        self.torch = torch
        self.levers = levers
        self.device = torch.device(device)
        key = (id(models[0]), levers.fold, levers.channels_last, levers.compile, str(self.device))
        source, model = self._compiled.get(key, (None, None))
        if source is not models[0]:  # (ids of collected models can be reused)
            import copy

            model = copy.deepcopy(models[1] if levers.fold else models[0]).to(self.device).eval()
            if levers.channels_last:
                model = model.to(memory_format=torch.channels_last)
            if levers.compile != "none":
                model = torch.compile(model, mode=levers.compile)
            self._compiled[key] = (models[0], model)
        self.model = model
        self.in_chans = 1 if levers.fold else 3
        self.dtype = _torch_dtype(levers.dtype)

    def probabilities(self, images: list, grids: list[tuple[np.ndarray, np.ndarray]], patch: int,
                      limit: int | None = None) -> list:
        """``images``: standardised ``[H, W]`` float32 tensors (on the device for ``cut=device``,
        numpy arrays for ``cut=host``). Returns per image ``[ny * nx, K]`` float32 probabilities on
        the device (only the first ``limit`` patches of the exam when given)."""
        torch = self.torch
        lv = self.levers
        index = []  # (image, y, x) of every patch, image-major
        for i, (ys, xs) in enumerate(grids):
            yy, xx = np.meshgrid(ys, xs, indexing="ij")
            index.append(np.stack([np.full(yy.size, i), yy.ravel(), xx.ravel()], 1))
        flat = np.concatenate(index)
        if limit is not None:
            flat = flat[:limit]
        if lv.cut == "device":
            windows = [img.unfold(0, patch, 1).unfold(1, patch, 1) for img in images]
            dev_idx = torch.from_numpy(flat).to(self.device)
        else:
            from numpy.lib.stride_tricks import sliding_window_view

            windows = [sliding_window_view(np.asarray(img, dtype=np.float32), (patch, patch)) for img in images]
        fmt = torch.channels_last if lv.channels_last else torch.contiguous_format
        pad = lv.compile != "none"
        autocast = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype != torch.float32
                    else contextlib.nullcontext())
        outs = []
        with torch.inference_mode(), autocast:
            for start in range(0, len(flat), lv.batch):
                rows = flat[start : start + lv.batch]
                parts = []
                for i in np.unique(rows[:, 0]):
                    sel = np.flatnonzero(rows[:, 0] == i)
                    if lv.cut == "device":
                        r = dev_idx[start + sel[0] : start + sel[-1] + 1]
                        parts.append(windows[i][r[:, 1], r[:, 2]])
                    else:
                        arr = windows[i][rows[sel, 1], rows[sel, 2]]
                        t = torch.from_numpy(np.ascontiguousarray(arr))
                        if self.device.type == "cuda":
                            t = t.pin_memory().to(self.device, non_blocking=True)
                        parts.append(t)
                batch = torch.cat(parts) if len(parts) > 1 else parts[0]
                n = batch.shape[0]
                if pad and n < lv.batch:  # static shapes for compiled graphs: repeat real patches
                    reps = math.ceil(lv.batch / n)
                    batch = batch.repeat(reps, 1, 1)[: lv.batch]
                x = batch.unsqueeze(1).expand(-1, self.in_chans, -1, -1).contiguous(memory_format=fmt)
                if lv.compile == "reduce-overhead":
                    torch.compiler.cudagraph_mark_step_begin()
                logits = self.model(x)
                outs.append(torch.softmax(logits[:n].float(), dim=1))
        probs = torch.cat(outs)
        sizes = [len(ys) * len(xs) for ys, xs in grids]
        result, offset = [], 0
        for s in sizes:
            result.append(probs[offset : offset + s])
            offset += s
        return result


def patch_grids(shapes: list[tuple[int, int]], patch: int, stride: int, seed: int) -> list:
    """Patch starts ``(ys, xs)`` per image, drawn as :func:`compute_heatmaps` does (rows, then
    columns, from ``random.Random(seed_i)``)."""
    from mammokit.heatmaps.sliding import patch_starts

    grids = []
    for i, (h, w) in enumerate(shapes):
        rng = random.Random(derive_seed(seed, "grid", i))
        ys = patch_starts(h, patch, stride, rng)
        xs = patch_starts(w, patch, stride, rng)
        grids.append((ys, xs))
    return grids


def assemble_heatmaps(probs, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], patch: int):
    """Per-pixel heatmaps ``[2, H, W]`` (malignant, benign) of flat patch probabilities ``[ny * nx,
    K]``, on their device (:func:`mammokit.heatmaps.sliding.heatmaps_from_probabilities`)."""
    torch = _torch()
    from mammokit.heatmaps.sliding import heatmaps_from_probabilities

    return heatmaps_from_probabilities(probs.view(len(ys), len(xs), -1), torch.as_tensor(ys), torch.as_tensor(xs),
                                       shape[0], shape[1], patch, to_cpu=False)


def standardize_on(image: np.ndarray, device):
    """Whole-image standardisation as :func:`mammokit.heatmaps.sliding.standardize_image`
    (float64 statistics, population std), on ``device``; returns float32 ``[H, W]``."""
    torch = _torch()
    x = torch.as_tensor(image).to(device).double()
    return ((x - x.mean()) / x.std(correction=0).clamp_min(1e-5)).float()


# --------------------------------------------------------------------------------- context


@dataclass
class Context:
    settings: Settings
    device: Any
    fast_dtype: str  # breast models (predict, pipeline models, train)
    t_start: float
    heatmap_dtype: str = "fp32"  # patch classifier (heatmaps, pipeline heatmaps)

    def over_budget(self) -> bool:
        b = self.settings.time_budget
        return b is not None and time.perf_counter() - self.t_start > b

    def fast_levers(self, preset: Preset) -> Levers:
        s = self.settings
        compile_mode = "default" if (s.compile and "patch" in s.compile_targets) else "none"
        return Levers(dtype=self.heatmap_dtype, channels_last=s.channels_last, fold=True, cut="device",
                      batch=self.batch_for(preset), compile=compile_mode)

    def batch_for(self, preset: Preset) -> int:
        if self.settings.batch_size:
            return int(self.settings.batch_size)
        cuda = self.device.type == "cuda"
        if patch_arch(preset) == "densenet121_patch":
            return 512 if cuda else 4
        return 1024 if cuda else 256

    def reference_batch(self, preset: Preset) -> int:
        return min(REFERENCE_BATCH, self.batch_for(preset))

    def patch_limit(self, preset: Preset, total: int) -> int | None:
        s = self.settings
        if s.max_patches:
            return min(total, s.max_patches)
        if self.device.type == "cpu" and patch_arch(preset) == "densenet121_patch":
            return min(total, 32)  # a few batches: minutes per exam otherwise
        return None


# --------------------------------------------------------------------------------- stages


def _exam_images_std(exam: BenchExam, device):
    shapes = [exam.images[v].shape for v in VIEWS]
    std = [standardize_on(model_frame(exam.images[v], v), device) for v in VIEWS]
    return shapes, std


def _maxdiff(a, b) -> float:
    if isinstance(a, (list, tuple)):
        return max((_maxdiff(x, y) for x, y in zip(a, b)), default=0.0)
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


@contextlib.contextmanager
def _true_fp32(dev):
    """cuDNN and matmul TF32 off inside (PyTorch lets cuDNN use TF32 for fp32 by default)."""
    torch = _torch()
    if dev.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


_LIBRARY_MODELS: dict = {}


def _library_patch_model(ctx: Context, models, lv: Levers):
    """The folded patch model as the library runs it: on the device, channels_last as the
    levers say, compiled with :func:`mammokit.heatmaps.sliding.compile_patch_model` under
    ``--compile`` (compiled once per model and reused by the heatmaps and pipeline stages)."""
    torch = _torch()
    from mammokit.heatmaps.sliding import compile_patch_model

    key = (id(models[1]), lv.channels_last, lv.compile, str(ctx.device))
    if key in _LIBRARY_MODELS and _LIBRARY_MODELS[key][0] is models[1]:
        return _LIBRARY_MODELS[key][1]
    import copy

    model = copy.deepcopy(models[1]).to(ctx.device).eval()
    if lv.compile != "none":
        model = compile_patch_model(model, ctx.device)
    elif lv.channels_last:
        model = model.to(memory_format=torch.channels_last)
    _LIBRARY_MODELS[key] = (models[1], model)
    return model


def _first_patches(grids: list, n: int) -> list:
    """The grids cut to their first ``n`` patches in stream order (whole rows; at least one)."""
    out, left = [], n
    for ys, xs in grids:
        if left <= 0:
            break
        rows = max(1, min(len(ys), -(-left // len(xs))))
        out.append((ys[:rows], xs))
        left -= rows * len(xs)
    return out


def models_source(models) -> str:
    return getattr(models[1], "_bench_source", "random, calibrated")


def bench_heatmaps(ctx: Context, preset: Preset, exam: BenchExam, models) -> dict:
    torch = _torch()
    s, dev = ctx.settings, ctx.device
    P, stride = preset.patch_size, preset.heatmap_stride
    shapes, std = _exam_images_std(exam, dev)
    std_host = [t.cpu().numpy() for t in std]
    grids = patch_grids(shapes, P, stride, s.seed)
    total = sum(len(ys) * len(xs) for ys, xs in grids)
    limit = ctx.patch_limit(preset, total)
    n = total if limit is None else limit
    full = limit is None or limit >= total
    result: dict[str, Any] = {"patches_per_exam": total, "patches_timed": n, "extrapolated": not full,
                              "patch_size": P, "stride": stride, "arch": patch_arch(preset), "rows": []}

    ref_lv = Levers(dtype="fp32", channels_last=False, fold=False, cut="host", batch=ctx.reference_batch(preset))
    eng = PatchEngine(models, ref_lv, dev)

    def run_ref():
        probs = eng.probabilities(std_host, grids, P, limit=None if full else n)
        maps = [assemble_heatmaps(p, ys, xs, sh, P) for p, (ys, xs), sh in zip(probs, grids, shapes)] if full else None
        return probs, maps

    with _true_fp32(dev):  # the accuracy reference is plain fp32 (cuDNN's TF32 off)
        timing = time_calls(run_ref, dev, s.warmup, s.repeats)
    ref_probs, ref_maps = timing["last"]
    pps = n / timing["median"]
    result["rows"].append({"path": "reference", "levers": ref_lv.as_dict(), "label": ref_lv.label() + " (no TF32)",
                           "patches_per_s": pps, "s_per_exam": total / pps, "median_s": timing["median"],
                           "times_s": timing["times"]})
    # The library path (what `mammokit heatmaps` runs): one patch stream over the exam's views,
    # background deduplicated, optionally compiled; one row per dtype.
    from mammokit.heatmaps.sliding import patch_probabilities_many

    lv = ctx.fast_levers(preset)
    model = _library_patch_model(ctx, models, lv)
    dev_grids = [(torch.as_tensor(ys), torch.as_tensor(xs)) for ys, xs in grids]
    for dtype_name in [ctx.heatmap_dtype] + [d for d in s.compare_dtypes if d != ctx.heatmap_dtype]:
        if ctx.over_budget():
            break
        stream_grids = dev_grids if full else _first_patches(dev_grids, n)

        n_lib = sum(len(ys) * len(xs) for ys, xs in stream_grids)

        def run_lib(dtype_name=dtype_name, stream_grids=stream_grids):
            probs = patch_probabilities_many(
                std[: len(stream_grids)], model, stream_grids, P, lv.batch, _torch_dtype(dtype_name),
                channels_last=lv.channels_last, static_batch=lv.compile != "none",
            )
            maps = [assemble_heatmaps(p, ys, xs, sh, P) for p, (ys, xs), sh in zip(probs, grids, shapes)] if full else None
            probs = [p.reshape(-1, p.shape[-1]) for p in probs]
            return probs, maps

        t0 = time.perf_counter()
        timing = time_calls(run_lib, dev, max(1, s.warmup), s.repeats)
        first_call = time.perf_counter() - t0 - sum(timing["times"])
        probs, maps = timing["last"]
        pps = n_lib / timing["median"]
        label = f"library {dtype_name} {'cl' if lv.channels_last else 'contig'} fold exam-stream dedupe b{lv.batch}"
        if lv.compile != "none":
            label += " compiled(freezing)"
        row = {"path": "fast" if dtype_name == ctx.heatmap_dtype else f"fast-{dtype_name}", "levers": {**lv.as_dict(), "dtype": dtype_name},
               "label": label, "patches_per_s": pps, "s_per_exam": total / pps, "median_s": timing["median"],
               "times_s": timing["times"], "warmup_s": first_call,
               "max_abs_diff_probs": max(
                   _maxdiff(p[: min(len(p), len(r)), :2], r[: min(len(p), len(r)), :2]) for p, r in zip(probs, ref_probs))}
        if full:
            row["max_abs_diff_heatmaps"] = _maxdiff(maps, ref_maps)
        result["rows"].append(row)
    fast_row = result["rows"][1]
    result["weights"] = models_source(models)
    result["max_abs_diff"] = fast_row.get("max_abs_diff_heatmaps", fast_row["max_abs_diff_probs"])
    result["accuracy_ok"] = result["max_abs_diff"] <= HEATMAP_DIFF_TARGET
    return result


_BREAST_CACHE: dict = {}


def _breast_models(preset: Preset, seed: int, device, calib_views: dict | None):
    """Both view-wise models ``{1: image-only, 3: image+heatmaps}`` (random, calibrated), built
    once per (preset, seed, device)."""
    torch = _torch()
    from mammokit.models import create_model

    key = (preset, seed, str(device))
    if key in _BREAST_CACHE:
        return _BREAST_CACHE[key]
    models = _BREAST_CACHE[key] = {}
    for ch in (1, 3):
        torch.manual_seed(derive_seed(seed, "breast-model", ch) % 2**63)
        m = create_model("view_wise", in_channels=ch).to(device)
        if calib_views is not None:
            x = {v: t[:2, :ch] for v, t in calib_views.items()}
            _calibrate(m, lambda mod, x=x: mod(x), lambda out: list(out.values()))
        models[ch] = m.eval()
    return models


def _prepare_breast(models: dict, levers_cl: bool, compile_: bool):
    torch = _torch()
    out = {}
    for ch, m in models.items():
        import copy

        m = copy.deepcopy(m)
        if levers_cl:
            m = m.to(memory_format=torch.channels_last)
        if compile_:
            m = torch.compile(m)
        out[ch] = m
    return out


def _score(models: dict, inputs: dict, dtype, device, channels_last: bool):
    """Mean probabilities over draws per model: ``{channels: [4]}``."""
    torch = _torch()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = {}
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for ch, m in models.items():
            x = {v: t[:, :ch].contiguous(memory_format=fmt) for v, t in inputs.items()}
            logits = m(x)
            from mammokit.models import probabilities_from_logits

            core = getattr(m, "_orig_mod", m)
            out[ch] = probabilities_from_logits(logits, core.output_labels, core.task).float().mean(0)
    return out


def _device_views(exam: BenchExam, device, seed: int) -> dict:
    """``{view: [float32 [3, H, W]]}`` on ``device``: image (16-bit values) + benign + malignant maps."""
    torch = _torch()
    out = {}
    for v in VIEWS:
        img = model_frame(exam.images[v], v).astype(np.float32)
        hm = heatmap_channels(img.shape, derive_seed(seed, "heatmap", exam.record["exam_id"], v))
        out[v] = [torch.from_numpy(np.concatenate([img[None], hm])).to(device)]
    return out


def bench_predict(ctx: Context, preset: Preset, exams: list[BenchExam]) -> dict:
    torch = _torch()
    from mammokit.data.views import make_model_inputs

    s, dev = ctx.settings, ctx.device
    views = [_device_views(e, dev, s.seed) for e in exams]
    rng0 = np.random.default_rng(derive_seed(s.seed, "calib"))
    calib = make_model_inputs(views[0], exams[0].record, preset, rng0, 2, dev)
    base = _breast_models(preset, s.seed, dev, calib)
    fast_dtype = _torch_dtype(ctx.fast_dtype)
    variants = {
        "reference": (base, torch.float32, False),
        "fast": (_prepare_breast(base, s.channels_last, s.compile and "breast" in s.compile_targets),
                 fast_dtype, s.channels_last),
    }
    result: dict[str, Any] = {"tta": s.tta, "exams_timed": len(exams), "rows": []}
    probs: dict[str, dict] = {}
    for name, (models, dtype, cl) in variants.items():
        parts = {"windows": [], "models": []}
        state = {"i": 0}
        seen = probs.setdefault(name, {})

        def run(models=models, dtype=dtype, cl=cl, parts=parts):
            # One exam per call; exams cycle. TTA windows from the exam's own seeded stream.
            i = state["i"] % len(exams)
            state["i"] += 1
            rng = np.random.default_rng(derive_seed(s.seed, "tta", exams[i].record["exam_id"]))
            t0 = time.perf_counter()
            inputs = make_model_inputs(views[i], exams[i].record, preset, rng, s.tta, dev)
            sync(dev)
            t1 = time.perf_counter()
            p = _score(models, inputs, dtype, dev, cl)
            sync(dev)
            parts["windows"].append(t1 - t0)
            parts["models"].append(time.perf_counter() - t1)
            seen[i] = p  # the same exam always gets the same windows: compare across paths
            return i, p

        reps = max(s.repeats, len(exams))
        timing = time_calls(run, dev, s.warmup, reps)
        parts = {k: v[-reps:] for k, v in parts.items()}
        result["rows"].append({
            "path": name, "dtype": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32"), "channels_last": cl,
            "compile": bool(name == "fast" and s.compile and "breast" in s.compile_targets),
            "s_per_exam": timing["median"], "times_s": timing["times"],
            "windows_s_per_exam": statistics.median(parts["windows"]),
            "models_s_per_exam": statistics.median(parts["models"]),
        })
    common = sorted(set(probs["fast"]) & set(probs["reference"]))
    diff = max(_maxdiff(probs["fast"][i][ch], probs["reference"][i][ch]) for i in common for ch in (1, 3))
    result["rows"][1]["max_abs_diff_probs"] = diff
    result["max_abs_diff"] = diff
    result["batch"] = {"draws_per_forward": s.tta, "views": len(VIEWS)}
    return result


def _write_workdir(root: Path, exams: list[BenchExam]) -> None:
    from mammokit.data.images import write_png16

    for e in exams:
        for v in VIEWS:
            write_png16(root / "cropped" / f"{e.record[v][0]}.png", e.images[v])


def bench_pipeline(ctx: Context, preset: Preset, exams: list[BenchExam], patch_models) -> dict:
    """Stream of exams: decode PNGs (threads, ahead) -> pinned -> device -> heatmaps -> windows ->
    both models. exams/s over the stream after the first (warm-up) exam."""
    torch = _torch()
    from mammokit.data.images import read_image
    from mammokit.data.views import make_model_inputs

    s, dev = ctx.settings, ctx.device
    P, stride = preset.patch_size, preset.heatmap_stride
    from mammokit.heatmaps.sliding import patch_probabilities_many

    lv = ctx.fast_levers(preset)
    patch_model = _library_patch_model(ctx, patch_models, lv)
    fast_dtype = _torch_dtype(ctx.fast_dtype)
    with tempfile.TemporaryDirectory(prefix="mammokit-bench-") as tmp:
        root = Path(tmp)
        _write_workdir(root, exams)
        views0 = _device_views(exams[0], dev, s.seed)
        calib = make_model_inputs(views0, exams[0].record, preset, np.random.default_rng(0), 2, dev)
        models = _prepare_breast(_breast_models(preset, s.seed, dev, calib), s.channels_last,
                                 s.compile and "breast" in s.compile_targets)
        del views0, calib
        n_stream = max(2, s.exams)
        decode_times: list[float] = []

        def load(k: int):
            exam = exams[k % len(exams)]
            t0 = time.perf_counter()
            out = {}
            for v in VIEWS:
                img = model_frame(read_image(root / "cropped" / f"{exam.record[v][0]}.png"), v)
                t = torch.from_numpy(img.astype(np.float32))
                out[v] = t.pin_memory() if dev.type == "cuda" else t
            decode_times.append(time.perf_counter() - t0)
            return exam, out

        def process(k: int, exam: BenchExam, host: dict):
            imgs = {v: host[v].to(dev, non_blocking=True) for v in VIEWS}
            stds = [standardize_on(imgs[v], dev) for v in VIEWS]
            shapes = [tuple(imgs[v].shape) for v in VIEWS]
            grids = patch_grids(shapes, P, stride, derive_seed(s.seed, k))
            dev_grids = [(torch.as_tensor(ys), torch.as_tensor(xs)) for ys, xs in grids]
            probs = patch_probabilities_many(stds, patch_model, dev_grids, P, lv.batch, _torch_dtype(ctx.heatmap_dtype),
                                             channels_last=lv.channels_last, static_batch=lv.compile != "none")
            views = {}
            for v, p, (ys, xs), sh in zip(VIEWS, probs, grids, shapes):
                maps = assemble_heatmaps(p, ys, xs, sh, P)  # [2, H, W]: malignant, benign
                views[v] = [torch.stack([imgs[v], maps[1], maps[0]])]  # image, benign, malignant
            rng = np.random.default_rng(derive_seed(s.seed, "tta", k))
            inputs = make_model_inputs(views, exam.record, preset, rng, s.tta, dev)
            return _score(models, inputs, fast_dtype, dev, s.channels_last)

        workers = 4 if dev.type == "cuda" else 1
        per_exam = []
        done = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {k: pool.submit(load, k) for k in range(min(n_stream, workers + 1))}
            t_stream = None
            for k in range(n_stream):
                exam, host = futures.pop(k).result()
                if k + workers + 1 < n_stream:
                    futures[k + workers + 1] = pool.submit(load, k + workers + 1)
                t0 = time.perf_counter()
                process(k, exam, host)
                sync(dev)
                per_exam.append(time.perf_counter() - t0)
                done += 1
                if k == 0:
                    t_stream = time.perf_counter()  # the first exam is the warm-up
                if k >= 1 and ctx.over_budget():
                    break
            elapsed = time.perf_counter() - t_stream
            for f in futures.values():
                f.cancel()
    timed = done - 1
    return {
        "exams_requested": n_stream, "exams_done": done, "exams_timed": timed, "unique_exams": len(exams),
        "exams_per_s": timed / elapsed if timed > 0 and elapsed > 0 else None,
        "s_per_exam": elapsed / timed if timed > 0 else None,
        "compute_s_per_exam_median": statistics.median(per_exam[1:]) if timed > 0 else None,
        "decode_s_per_exam_median": statistics.median(decode_times) if decode_times else None,
        "loader_threads": workers, "pinned_memory": dev.type == "cuda",
        "levers": {**lv.as_dict(), "path": "library exam-stream dedupe"},
        "dtype": ctx.fast_dtype, "heatmap_dtype": ctx.heatmap_dtype, "tta": s.tta,
    }


def bench_train(ctx: Context, preset: Preset, exams: list[BenchExam]) -> dict:
    torch = _torch()
    from mammokit.config import LABEL_COLUMNS
    from mammokit.data.views import collate, make_model_inputs
    from mammokit.models import create_model
    from mammokit.training.losses import breast_loss, l2_param_groups

    s, dev = ctx.settings, ctx.device
    batch = s.train_batch or (4 if dev.type == "cuda" else 2)
    views = [_device_views(e, dev, s.seed) for e in exams]
    torch.manual_seed(derive_seed(s.seed, "train-init") % 2**63)
    model = create_model("view_wise", in_channels=3).to(dev)
    fmt = torch.channels_last if s.channels_last else torch.contiguous_format
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(l2_param_groups(model, 10 ** -4.5), lr=1e-5)
    use_bf16 = ctx.fast_dtype == "bf16"
    gen = np.random.default_rng(derive_seed(s.seed, "train-data"))
    tgen = torch.Generator().manual_seed(derive_seed(s.seed, "train-targets") % 2**63)
    state = {"step": 0}
    model.train()

    def step():
        k = state["step"]
        state["step"] += 1
        items = [(k * batch + b) % len(exams) for b in range(batch)]
        samples = [make_model_inputs(views[i], exams[i].record, preset, gen, 1, dev) for i in items]
        x = {v: t.contiguous(memory_format=fmt) for v, t in collate(samples).items()}
        targets = {c: torch.randint(0, 2, (batch,), generator=tgen).to(dev) for c in LABEL_COLUMNS}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model(x)
        loss, _ = breast_loss(out, model.output_labels, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    rss_before = rss_bytes()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    timing = time_calls(step, dev, s.warmup, s.repeats)
    out = {
        "batch_exams": batch, "dtype": ctx.fast_dtype, "channels_last": s.channels_last,
        "s_per_step": timing["median"], "times_s": timing["times"], "exams_per_s": batch / timing["median"],
        "loss_last": timing["last"], "inputs": "decoded images resident on the device; windows cut there",
    }
    if dev.type == "cuda":
        out["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(dev))
        out["peak_memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        out["peak_memory_bytes"] = peak_rss_bytes()
        out["peak_memory_kind"] = "ru_maxrss (process peak RSS so far)"
        out["rss_before_bytes"] = rss_before
        out["rss_after_bytes"] = rss_bytes()
    return out


def ablation_levers(ctx: Context, preset: Preset) -> list[Levers]:
    """Lever combinations, cumulative from the reference then each lever removed from the best
    eager one, then batch sizes and compiled forms (CUDA)."""
    cuda = ctx.device.type == "cuda"
    b = ctx.batch_for(preset)
    ref = Levers(dtype="fp32", channels_last=False, fold=False, cut="host", batch=ctx.reference_batch(preset))
    rows = [ref]
    if cuda:
        rows.append(Levers("fp32", False, False, "device", ref.batch))
    rows.append(Levers("fp32", False, True, "device", ref.batch))
    rows.append(Levers("fp32", True, True, "device", ref.batch))
    if cuda:
        best = Levers("bf16", True, True, "device", ref.batch)
        rows += [best, Levers("bf16", True, True, "device", b)]
        best = rows[-1]
        rows += [
            Levers("fp32", True, True, "device", b),
            Levers("bf16", False, True, "device", b),
            Levers("bf16", True, False, "device", b),
            Levers("bf16", True, True, "host", b),
            Levers("bf16", True, True, "device", 2 * b),
            Levers("bf16", True, True, "device", max(64, b // 2)),
        ]
        rows += [Levers("bf16", True, True, "device", b, compile="default"),
                 Levers("bf16", True, True, "device", b, compile="reduce-overhead")]
    else:
        rows += [Levers("fp32", False, True, "device", b), Levers("fp32", True, True, "device", b),
                 Levers("bf16", True, True, "device", b)]
    seen, out = set(), []
    for r in rows:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def bench_ablation(ctx: Context, preset: Preset, exam: BenchExam, models) -> dict:
    s, dev = ctx.settings, ctx.device
    P, stride = preset.patch_size, preset.heatmap_stride
    shapes, std = _exam_images_std(exam, dev)
    std_host = [t.cpu().numpy() for t in std]
    grids = patch_grids(shapes, P, stride, s.seed)
    total = sum(len(ys) * len(xs) for ys, xs in grids)
    n = min(total, s.ablation_patches or ctx.patch_limit(preset, total) or total)
    rows, ref = [], None
    for lv in ablation_levers(ctx, preset):
        if ctx.over_budget():
            rows.append({"label": lv.label(), "levers": lv.as_dict(), "skipped": "time budget"})
            continue
        t0 = time.perf_counter()
        try:
            eng = PatchEngine(models, lv, dev)
            imgs = std_host if lv.cut == "host" else std
            timing = time_calls(lambda: eng.probabilities(imgs, grids, P, limit=n), dev,
                                max(1, s.warmup) if lv.compile != "none" else s.warmup, s.repeats)
        except Exception as exc:  # noqa: BLE001 - one failing lever (e.g. compile) must not end the run
            rows.append({"label": lv.label(), "levers": lv.as_dict(), "error": f"{type(exc).__name__}: {exc}"[:500]})
            continue
        probs = timing["last"]
        if ref is None:
            ref = probs
        row = {"label": lv.label(), "levers": lv.as_dict(), "patches_per_s": n / timing["median"],
               "median_s": timing["median"], "times_s": timing["times"],
               "setup_and_warmup_s": time.perf_counter() - t0 - sum(timing["times"]),
               "max_abs_diff_probs": _maxdiff([p[:, :2] for p in probs], [p[:, :2] for p in ref])}
        rows.append(row)
        print(f"  ablation {preset.name}: {row['label']:<48} {row['patches_per_s']:10.1f} patches/s  "
              f"diff {row['max_abs_diff_probs']:.2e}", flush=True)
    return {"preset": preset.name, "patches": n, "patch_size": P, "rows": rows,
            "reference": "first row (fp32, 3 channels, contiguous, host-cut patches)"}


# --------------------------------------------------------------------------------- driver


def run_preset(ctx: Context, name: str, do_ablation: bool) -> dict:
    torch = _torch()
    s, dev = ctx.settings, ctx.device
    preset = get_preset(name)
    if s.stride:
        import dataclasses

        preset = dataclasses.replace(preset, heatmap_stride=int(s.stride))
    torch.manual_seed(derive_seed(s.seed, "preset", name) % 2**63)
    n_unique = max(1, min(s.unique_exams, s.exams))
    exams = make_exams(preset, n_unique, s.seed, s.data)
    sizes = {v: list(crop_size(preset, v)) for v in VIEWS}
    out: dict[str, Any] = {
        "preset": preset.to_dict(),
        "image_sizes": {"cropped": sizes, "model_input": {v: list(preset.input_size(v)) for v in VIEWS}},
        "data_source": exams[0].source,
        "batch_sizes": {"heatmaps_fast": ctx.batch_for(preset), "heatmaps_reference": ctx.reference_batch(preset),
                        "predict_draws": s.tta, "train_exams": s.train_batch or (4 if dev.type == "cuda" else 2)},
        "stages": {},
    }
    if s.patch_checkpoint:
        patch_models = load_patch_models(s.patch_checkpoint)
    else:
        patch_models = build_patch_models(preset, s.seed, _calibration_patches(exams[0], preset, s.seed))
    runners = {
        "heatmaps": lambda: bench_heatmaps(ctx, preset, exams[0], patch_models),
        "predict": lambda: bench_predict(ctx, preset, exams),
        "pipeline": lambda: bench_pipeline(ctx, preset, exams, patch_models),
        "train": lambda: bench_train(ctx, preset, exams),
    }
    if do_ablation:
        print(f"[{preset.name}] ablation ...", flush=True)
        out["ablation"] = bench_ablation(ctx, preset, exams[0], patch_models)
    for stage in s.stages:
        if ctx.over_budget():
            out["stages"][stage] = {"skipped": "time budget"}
            continue
        print(f"[{preset.name}] {stage} ...", flush=True)
        t0 = time.perf_counter()
        try:
            out["stages"][stage] = runners[stage]()
        except Exception as exc:  # noqa: BLE001 - report the stage's failure, keep the others
            import traceback

            traceback.print_exc()
            out["stages"][stage] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        out["stages"][stage]["stage_wall_s"] = time.perf_counter() - t0
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return out


def _calibration_patches(exam: BenchExam, preset: Preset, seed: int, n: int = 8) -> np.ndarray:
    """``n`` patches ``[n, P, P]`` from the standardised first view (for batch-norm statistics)."""
    from mammokit.heatmaps.sliding import standardize_image

    img = standardize_image(model_frame(exam.images["L-CC"], "L-CC")).numpy()
    P = preset.patch_size
    rng = np.random.default_rng(derive_seed(seed, "calib-patches"))
    ys = rng.integers(0, img.shape[0] - P + 1, n)
    xs = rng.integers(0, img.shape[1] // 2, n)  # breast side (chest wall left)
    return np.stack([img[y : y + P, x : x + P] for y, x in zip(ys, xs)]).astype(np.float32)


def targets_for(device_type: str) -> dict:
    return {
        "reference": "one NVIDIA H100, paper preset" if device_type == "cuda" else "2-core CPU, densenet121 256x256 fp32",
        **(H100_TARGETS if device_type == "cuda" else
           {"heatmaps_patches_per_s": CPU_TARGET_FACTOR * CPU_REFERENCE_PATCHES_PER_S}),
        "heatmaps_max_abs_diff": HEATMAP_DIFF_TARGET,
    }


def _fmt(v, unit="") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}{unit}"
        if abs(v) >= 1:
            return f"{v:.2f}{unit}"
        return f"{v:.3g}{unit}"
    return f"{v}{unit}"


def table(doc: dict) -> str:
    """The human-readable table of a bench document."""
    dev = doc["environment"]["device"]
    lines = [f"mammokit bench: {dev.get('gpu') or dev.get('cpu_model')} ({dev['device_name']}), "
             f"torch {doc['environment']['software']['torch']}, fast dtype {doc['settings']['fast_dtype']} "
             f"(heatmaps {doc['settings'].get('heatmap_dtype', doc['settings']['fast_dtype'])}), "
             f"channels_last {doc['settings']['channels_last']}, compile {doc['settings']['compile']}"]
    header = f"{'preset':<6} {'stage':<9} {'path':<10} {'measured':>22} {'target':>16} {'max|diff|':>10}  details"
    lines += [header, "-" * len(header)]
    t = doc["targets"]
    for pname, res in doc["presets"].items():
        paper_cuda = pname == "paper" and dev["device_type"] == "cuda"
        cpu_dn = dev["device_type"] == "cpu" and "densenet" in res["preset"]["patch_arch"]
        for stage, r in res["stages"].items():
            if "error" in r or "skipped" in r:
                lines.append(f"{pname:<6} {stage:<9} {'-':<10} {r.get('error') or r.get('skipped')}")
                continue
            if stage == "heatmaps":
                for row in r["rows"]:
                    tgt = ""
                    if row["path"] != "reference" and paper_cuda:
                        tgt = f">={t['heatmaps_patches_per_s']:,.0f} p/s"
                    elif row["path"] != "reference" and cpu_dn:
                        tgt = f">={t['heatmaps_patches_per_s']:.0f} p/s"
                    diff = row.get("max_abs_diff_heatmaps", row.get("max_abs_diff_probs"))
                    ext = " (extrap.)" if r["extrapolated"] else ""
                    lines.append(
                        f"{pname:<6} {stage:<9} {row['path']:<10} {_fmt(row['patches_per_s'], ' p/s'):>22} {tgt:>16} "
                        f"{_fmt(diff):>10}  {_fmt(row['s_per_exam'])} s/exam{ext}; {row['label']}; "
                        f"{r['patches_timed']}/{r['patches_per_exam']} patches {r['patch_size']}px {r['arch']}")
            elif stage == "predict":
                for row in r["rows"]:
                    tgt = f"<={t['predict_s_per_exam']} s/exam" if paper_cuda and row["path"] == "fast" else ""
                    lines.append(
                        f"{pname:<6} {stage:<9} {row['path']:<10} {_fmt(row['s_per_exam'], ' s/exam'):>22} {tgt:>16} "
                        f"{_fmt(row.get('max_abs_diff_probs')):>10}  {row['dtype']} cl={row['channels_last']}; "
                        f"windows {_fmt(row['windows_s_per_exam'])} s + 2 models {_fmt(row['models_s_per_exam'])} s; "
                        f"{r['tta']} TTA draws")
            elif stage == "pipeline":
                tgt = f">={t['pipeline_exams_per_s']} exams/s" if paper_cuda else ""
                lines.append(
                    f"{pname:<6} {stage:<9} {'fast':<10} {_fmt(r['exams_per_s'], ' exams/s'):>22} {tgt:>16} {'':>10}  "
                    f"{r['exams_timed']} exams timed ({r['unique_exams']} distinct PNG sets); decode "
                    f"{_fmt(r['decode_s_per_exam_median'])} s/exam on {r['loader_threads']} thread(s); compute "
                    f"{_fmt(r['compute_s_per_exam_median'])} s/exam")
            elif stage == "train":
                tgt = f">={t['train_exams_per_s']} exams/s" if paper_cuda else ""
                lines.append(
                    f"{pname:<6} {stage:<9} {'fast':<10} {_fmt(r['exams_per_s'], ' exams/s'):>22} {tgt:>16} {'':>10}  "
                    f"batch {r['batch_exams']} exams, {r['dtype']}, peak {r['peak_memory_bytes'] / 2**30:.2f} GiB "
                    f"({r['peak_memory_kind'].split(' ')[0]})")
        if "ablation" in res:
            lines.append(f"{pname:<6} ablation: heatmap patches/s over {res['ablation']['patches']} patches "
                         f"(diff = max |p - p_ref| of the patch probabilities)")
            for row in res["ablation"]["rows"]:
                val = _fmt(row.get("patches_per_s"), " p/s") if "patches_per_s" in row else (row.get("error") or row.get("skipped"))
                lines.append(f"{'':<6} {'':<9} {row['label']:<48} {val:>16} {_fmt(row.get('max_abs_diff_probs')):>10}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mammokit.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", action="append", choices=["paper", "half", "small", "tiny"],
                   help="repeatable; default small on CPU, paper + small on CUDA (--quick: small)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", *_DTYPE_NAMES],
                   help="dtype of the fast paths (auto: bf16 on CUDA, fp32 on CPU); references are fp32")
    p.add_argument("--compare-dtypes", default="",
                   help="comma-separated extra dtypes for which the library heatmap path is also timed, e.g. fp16")
    p.add_argument("--patch-checkpoint", default=None,
                   help="trained patch classifier (mammokit checkpoint or the authors' file) for the heatmap "
                        "stages; default: random calibrated weights (fine for speed, not for accuracy)")
    p.add_argument("--batch-size", type=int, default=None, help="patches per forward of the fast heatmap path")
    p.add_argument("--train-batch", type=int, default=None, help="exams per training step (default 4 CUDA, 2 CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; --quick 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up calls (default 1)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--compile", action="store_true", help="torch.compile the patch model / breast models")
    p.add_argument("--compile-targets", default="patch,breast", help="what --compile compiles: patch,breast")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last tensors in the fast paths (default: on CUDA only)")
    p.add_argument("--exams", type=int, default=None, help="pipeline stream length (default 100 CUDA, 3 CPU)")
    p.add_argument("--unique-exams", type=int, default=3, help="distinct exams (PNG sets) the stream cycles over")
    p.add_argument("--max-patches", type=int, default=None,
                   help="time only the first N heatmap patches of the exam (s/exam extrapolated)")
    p.add_argument("--ablation", action="store_true", help="heatmap patches/s for each lever combination")
    p.add_argument("--ablation-patches", type=int, default=None, help="patches per ablation row (default: one exam)")
    p.add_argument("--quick", action="store_true", help="CI-safe: small preset, 1 repeat, 2-exam stream, capped patches")
    p.add_argument("--data", default="auto", choices=["auto", "real", "synthetic"],
                   help="image content: real sample mammograms (resized) when present, or synthetic")
    p.add_argument("--time-budget", type=float, default=None, help="seconds; later stages are skipped past it")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--tta", type=int, default=None, help=f"TTA draws per view (default {TTA}; --quick 2)")
    p.add_argument("--stride", type=int, default=None,
                   help="heatmap stride override in pixels (default: the preset's; CI uses the patch size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default=None, help="JSON path (default benchmarks/results/<device>-<preset>.json)")
    return p.parse_args(argv)


def settings_from_args(a: argparse.Namespace, cuda: bool) -> Settings:
    stages = [x.strip() for x in a.stages.split(",") if x.strip()]
    bad_dtypes = [x for x in a.compare_dtypes.split(",") if x.strip() and x.strip() not in _DTYPE_NAMES]
    if bad_dtypes:
        raise SystemExit(f"unknown dtype(s) {bad_dtypes}; choose from {', '.join(_DTYPE_NAMES)}")
    bad = [x for x in stages if x not in STAGES]
    if bad:
        raise SystemExit(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)}")
    presets = a.preset or (["small"] if (a.quick or not cuda) else ["paper", "small"])
    return Settings(
        presets=list(dict.fromkeys(presets)), device=a.device, dtype=a.dtype, batch_size=a.batch_size,
        repeats=a.repeats if a.repeats is not None else (1 if a.quick else 3),
        warmup=a.warmup if a.warmup is not None else 1, stages=stages, compile=a.compile,
        compile_targets=[x.strip() for x in a.compile_targets.split(",") if x.strip()],
        channels_last=a.channels_last if a.channels_last is not None else cuda,
        exams=a.exams if a.exams is not None else (2 if a.quick else (100 if cuda else 3)),
        quick=a.quick, ablation=a.ablation, seed=a.seed,
        max_patches=a.max_patches if a.max_patches is not None else (256 if a.quick else None),
        train_batch=a.train_batch if a.train_batch is not None else (1 if a.quick else None), data=a.data, time_budget=a.time_budget, output=a.output,
        unique_exams=max(1, min(a.unique_exams, 1 if a.quick else a.unique_exams)),
        ablation_patches=a.ablation_patches,
        tta=a.tta if a.tta is not None else (2 if a.quick else TTA),
        stride=a.stride, patch_checkpoint=a.patch_checkpoint,
        compare_dtypes=[x.strip() for x in a.compare_dtypes.split(",") if x.strip()],
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch = _torch()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    s = settings_from_args(args, device.type == "cuda")
    # auto = the library's defaults: heatmaps fp16 on CUDA (mammokit.heatmaps.sliding), breast
    # models bf16 on CUDA (mammokit.inference.predict); fp32 on the CPU.
    fast_dtype = s.dtype if s.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    heatmap_dtype = s.dtype if s.dtype != "auto" else ("fp16" if device.type == "cuda" else "fp32")
    random.seed(s.seed)
    np.random.seed(s.seed % 2**32)
    torch.manual_seed(s.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    ctx = Context(s, device, fast_dtype, time.perf_counter(), heatmap_dtype)
    env = environment(device)
    settings_doc = {k: v for k, v in s.__dict__.items() if k != "extra"}
    settings_doc.update(fast_dtype=fast_dtype, heatmap_dtype=heatmap_dtype, reference_dtype="fp32",
                        cudnn_benchmark=device.type == "cuda")
    doc: dict[str, Any] = {"schema": SCHEMA, "created_unix": time.time(), "environment": env,
                           "settings": settings_doc, "targets": targets_for(device.type), "presets": {}}
    for i, name in enumerate(s.presets):
        doc["presets"][name] = run_preset(ctx, name, do_ablation=s.ablation and i == 0)
    doc["environment"]["device"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    doc["wall_s"] = time.perf_counter() - ctx.t_start
    print()
    print(table(doc))
    written = write_results(doc, s.output)
    for path in written:
        print(f"wrote {path}")
    return 0


def write_results(doc: dict, output: str | None) -> list[Path]:
    """One JSON per preset under ``benchmarks/results/`` by default; all presets in ``output``."""
    if output:
        write_json_atomic(output, doc)
        return [Path(output)]
    paths = []
    name = doc["environment"]["device"]["device_name"]
    for preset, res in doc["presets"].items():
        path = Path("benchmarks") / "results" / f"{name}-{preset}.json"
        write_json_atomic(path, {**doc, "presets": {preset: res}})
        paths.append(path)
    return paths


if __name__ == "__main__":
    sys.exit(main())
