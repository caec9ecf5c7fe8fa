"""Dense sliding-window patch heatmaps (paper Sec. IV-B; the reference's scheme, made fast).

Layout of the patches along one axis of length ``n`` (the reference's ``stride_list_generator``
with a fixed stride): the first patch starts at 0 and the last ends exactly at ``n``; when
``(n - P) % stride != 0`` one more patch is added and the overlap it creates is spread over the
steps, every step ``stride - overlap // steps`` and ``overlap % steps`` of them (placed at random,
``random.Random.sample``, as the reference) one pixel shorter.

Each pixel's heatmap value is the mean, over the patches covering it, of the patch classifier's
softmax probability of class 0 (malignant) and class 1 (benign).

Unlike the reference (every patch of an exam materialised in float64 on the host, then copied),
patches are cut on the device from one image tensor, one batch at a time (memory bounded by the
batch), and the per-pixel means are computed in closed form from the small grid of patch
probabilities: with ``A_y [H, ny]`` and ``A_x [W, nx]`` the 0/1 "patch covers pixel" matrices,
``sum = A_y @ prob @ A_x^T`` and ``count = rowsum(A_y) x rowsum(A_x)``.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
import torch.nn as nn

from mammokit.utils.log import get_logger, progress

log = get_logger(__name__)

MALIGNANT, BENIGN = 0, 1
"""Patch-classifier classes of the two heatmaps (reference: ``heatmap_type=[0, 1]``)."""
STD_FLOOR = 1e-5


def stride_list(length: int, patch_size: int, stride: int, rng: random.Random) -> list[int]:
    """Steps between consecutive patch starts along an axis of ``length`` pixels (the reference's
    ``stride_list_generator`` with ``stride_fixed``); their sum is ``length - patch_size``."""
    if length < patch_size:
        raise ValueError(f"image side {length} is smaller than the patch size {patch_size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    lower = (length - patch_size) // stride + 1
    left = (length - patch_size) % stride
    if left == 0:
        return [stride] * (lower - 1)
    steps = lower  # one more patch than ``lower``, so ``lower`` steps
    overlap = stride - left
    avg = stride - overlap // steps
    strides = [avg] * steps
    for i in rng.sample(range(steps), overlap % steps):
        strides[i] = avg - 1
    return strides


def patch_starts(length: int, patch_size: int, stride: int, rng: random.Random) -> np.ndarray:
    """Patch start offsets along an axis: ``[0, ..., length - patch_size]``."""
    return np.concatenate([[0], np.cumsum(stride_list(length, patch_size, stride, rng))]).astype(np.int64)


def num_patches(height: int, width: int, patch_size: int, stride: int) -> int:
    """Number of patches of an image (independent of where the shortened strides fall)."""
    rng = random.Random(0)
    return len(patch_starts(height, patch_size, stride, rng)) * len(patch_starts(width, patch_size, stride, rng))


def standardize_image(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(x - mean) / max(std, 1e-5)`` over the whole image (population std), computed in float64
    as the reference, returned as float32 ``[H, W]``."""
    x = torch.as_tensor(np.asarray(image), dtype=torch.float64)
    std = x.std(correction=0).clamp_min(STD_FLOOR)
    return ((x - x.mean()) / std).float()


def _coverage(starts: torch.Tensor, length: int, patch_size: int, dtype: torch.dtype) -> torch.Tensor:
    """``[length, n]`` 0/1 matrix: pixel i is covered by the patch starting at ``starts[j]``."""
    pix = torch.arange(length, device=starts.device)[:, None]
    return ((pix >= starts[None]) & (pix < starts[None] + patch_size)).to(dtype)


def _resolve(device, dtype) -> tuple[torch.device, torch.dtype]:
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype in (None, "auto"):
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif dtype == "fp32":
        dtype = torch.float32
    elif dtype == "bf16":
        dtype = torch.bfloat16
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be fp32 or bf16, got {dtype}")
    return device, dtype


def _constant_groups(windows: torch.Tensor, flat_y: torch.Tensor, flat_x: torch.Tensor, chunk: int = 256):
    """``(values, index)`` of the constant patches: ``index[i]`` is the position in ``values`` of
    patch i's constant value, -1 if the patch is not constant (``[N]`` int64)."""
    lo, hi = [], []
    for start in range(0, len(flat_y), chunk):
        sel = slice(start, start + chunk)
        mn, mx = windows[flat_y[sel], flat_x[sel]].flatten(1).aminmax(dim=1)
        lo.append(mn)
        hi.append(mx)
    lo, hi = torch.cat(lo), torch.cat(hi)
    const = lo == hi
    index = torch.full_like(flat_y, -1)
    if not bool(const.any()):
        return lo[:0], index
    values, inverse = torch.unique(lo[const], return_inverse=True)
    index[const] = inverse
    return values, index


def _run_batches(model, make_batch, total: int, batch_size: int, autocast, bar, static_batch: bool = False) -> torch.Tensor:
    out = []
    with autocast:
        for start in range(0, total, batch_size):
            sel = slice(start, min(start + batch_size, total))
            batch = make_batch(sel)
            n = batch.shape[0]
            if static_batch and n < batch_size:
                # A compiled model recompiles for every new batch shape: pad the last batch by
                # repeating its last patch and drop the extra outputs.
                pad = batch[-1:].expand(batch_size - n, *batch.shape[1:])
                batch = torch.cat([batch, pad]).contiguous(
                    memory_format=torch.channels_last if batch.is_contiguous(memory_format=torch.channels_last)
                    and not batch.is_contiguous() else torch.contiguous_format
                )
            logits = model(batch)[:n]
            out.append(torch.softmax(logits.float(), dim=1))
            if bar is not None:
                bar.update(sel.stop - sel.start)
    return torch.cat(out)


@torch.inference_mode()
def patch_probabilities(
    image: torch.Tensor,
    model: nn.Module,
    ys: torch.Tensor,
    xs: torch.Tensor,
    patch_size: int,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float32,
    show_progress: bool = False,
    dedupe: bool = True,
    channels_last: bool | None = None,
    approx_shared_layers: int = 0,
    static_batch: bool = False,
) -> torch.Tensor:
    """Softmax probabilities of every patch of the grid ``ys x xs``: ``[ny, nx, num_classes]``.

    Patches are gathered from a strided view of ``image`` (``[H, W]``, on the model's device) one
    batch at a time; the model sees ``[N, in_chans, P, P]``.

    ``dedupe`` (exact): patches whose pixels are all equal (the background of a cropped image,
    a constant after standardisation) are evaluated once per distinct value and the result reused.
    ``channels_last``: feed channels_last batches (default: on CUDA only).
    ``approx_shared_layers`` k > 0 (approximate, :meth:`PatchDenseNet121.split`): run the first
    layers once on the whole image and the rest per patch on a crop of their output; see
    :func:`compute_heatmaps`.
    ``static_batch``: every forward gets exactly ``batch_size`` patches (for compiled models).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = image.device
    in_chans = getattr(model, "in_chans", 1)
    # [H-P+1, W-P+1, P, P] view of every possible patch: no copy until indexed.
    windows = image.unfold(0, patch_size, 1).unfold(1, patch_size, 1)
    ny, nx = len(ys), len(xs)
    flat_y = ys.repeat_interleave(nx)
    flat_x = xs.repeat(ny)
    total = ny * nx
    use_cl = device.type == "cuda" if channels_last is None else bool(channels_last)
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    )

    def patches_of(idx: torch.Tensor) -> torch.Tensor:
        batch = windows[flat_y[idx], flat_x[idx]].unsqueeze(1)  # [N, 1, P, P]
        if in_chans != 1:
            batch = batch.expand(-1, in_chans, -1, -1)
        if use_cl:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    if dedupe:
        values, const_index = _constant_groups(windows, flat_y, flat_x)
    else:
        values, const_index = image.new_zeros(0), torch.full_like(flat_y, -1)
    varying = torch.nonzero(const_index < 0).flatten()
    # One representative patch per distinct constant value.
    reps = torch.stack([torch.nonzero(const_index == k)[0, 0] for k in range(len(values))]) if len(values) else varying[:0]
    bar = progress(total=len(varying) + len(reps), desc="patches", disable=None if show_progress else True, leave=False)
    with bar:
        if approx_shared_layers:
            var_probs = rep_probs = None
            if len(varying):
                var_probs = _shared_layer_probs(
                    image, model, flat_y[varying], flat_x[varying], patch_size, batch_size, autocast,
                    approx_shared_layers, use_cl, bar,
                )
            if len(reps):
                rep_probs = _run_batches(
                model, lambda sel: patches_of(reps[sel]), len(reps), batch_size, autocast, bar, static_batch
            )
        else:
            todo = torch.cat([varying, reps])
            both = _run_batches(
                model, lambda sel: patches_of(todo[sel]), len(todo), batch_size, autocast, bar, static_batch
            )
            var_probs, rep_probs = both[: len(varying)], both[len(varying):]
    some = var_probs if var_probs is not None and len(varying) else rep_probs
    probs = some.new_empty(total, some.shape[1])
    if len(varying):
        probs[varying] = var_probs
    if len(values):
        const = const_index >= 0
        probs[const] = rep_probs[const_index[const]]
    return probs.view(ny, nx, -1)


def _shared_layer_probs(
    image, model, flat_y, flat_x, patch_size, batch_size, autocast, level, use_cl, bar
) -> torch.Tensor:
    """Approximate probabilities of the patches at ``(flat_y, flat_x)`` (``[N, classes]``): the
    model's trunk runs once on the whole image, its head on each patch's feature crop, taken at
    the patch start rounded to the trunk's stride (so a patch may be shifted by up to half the
    stride) and, unlike the exact path, seeing image context instead of zero padding at its border
    inside the trunk."""
    if not hasattr(model, "split"):
        raise ValueError(f"approx_shared_layers needs a model with split() (PatchDenseNet121), got {type(model).__name__}")
    trunk, head, s = model.split(level)
    if patch_size % s:
        raise ValueError(f"patch size {patch_size} is not a multiple of the shared features' stride {s}")
    h, w = image.shape
    # Zero-pad bottom / right to a multiple of the stride: TF-SAME then pads the top / left as on a
    # patch (even sizes), so feature (i, j) is aligned with pixel (s * i, s * j).
    ph, pw = -h % s, -w % s
    x = torch.nn.functional.pad(image, (0, pw, 0, ph))[None, None]
    in_chans = getattr(model, "in_chans", 1)
    if in_chans != 1:
        x = x.expand(-1, in_chans, -1, -1)
    if use_cl:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast:
        feats = trunk(x)[0]  # [C, Hf, Wf]
    q = patch_size // s
    fy = torch.round(flat_y.double() / s).long().clamp(0, feats.shape[1] - q)
    fx = torch.round(flat_x.double() / s).long().clamp(0, feats.shape[2] - q)
    crops = feats.unfold(1, q, 1).unfold(2, q, 1)  # [C, Hf-q+1, Wf-q+1, q, q]

    def make(sel):
        b = crops[:, fy[sel], fx[sel]].permute(1, 0, 2, 3)  # [N, C, q, q]
        return b.contiguous(memory_format=torch.channels_last) if use_cl else b.contiguous()

    return _run_batches(head, make, len(flat_y), batch_size, autocast, bar)


def compute_heatmaps(
    image: torch.Tensor | np.ndarray,
    model: nn.Module,
    patch_size: int,
    stride: int,
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    rng: random.Random | int | None = 0,
    show_progress: bool = False,
    dedupe: bool = True,
    channels_last: bool | None = None,
    approx_shared_layers: int = 0,
    static_batch: bool = False,
) -> torch.Tensor:
    """Malignant and benign heatmaps of one image.

    Args:
        image: ``[H, W]`` float image, already flipped (chest wall on the left) and standardised
            (:func:`standardize_image`), as the reference feeds its patch classifier.
        model: patch classifier (``[N, in_chans, P, P] -> [N, classes]``, class 0 malignant,
            1 benign), in eval mode; moved to ``device``.
        patch_size, stride: patch side and nominal stride (paper: 256, 70).
        batch_size: patches per forward pass (bounds the memory).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA if available) or a torch device.
        dtype: ``"fp32"``, ``"bf16"`` (CUDA autocast + channels_last) or ``"auto"`` (bf16 on CUDA,
            fp32 on CPU).
        rng: placement of the shortened strides: a ``random.Random``, or an int seed (the
            reference seeds Python's ``random`` with 0 and draws rows, then columns, per image).
        dedupe: evaluate each distinct all-constant patch (background) once (exact; default on).
        channels_last: channels_last inputs and model (default: on CUDA only).
        approx_shared_layers: 0 (default, exact) or a split level k of
            :meth:`~mammokit.models.patch.PatchDenseNet121.split` (1: up to dense block 1, 2: up to
            dense block 2): the first layers run once on the whole image and the rest per patch.
            Approximate (patch borders see image context, patch starts rounded to 4 / 8 pixels);
            see benchmarks/cpu_heatmaps.py for the measured heatmap differences.
        static_batch: pad the last batch to ``batch_size`` so a ``torch.compile``-d model sees one
            input shape (no recompilation); results are unchanged.

    Returns:
        ``[2, H, W]`` float32 on the CPU: channel 0 malignant, 1 benign, values in [0, 1].
    """
    device, dtype = _resolve(device, dtype)
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    img = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if img.ndim != 2:
        raise ValueError(f"expected an [H, W] image, got shape {tuple(img.shape)}")
    h, w = img.shape
    if h < patch_size or w < patch_size:
        raise ValueError(f"image {h} x {w} is smaller than the {patch_size} x {patch_size} patch")
    ys = torch.from_numpy(patch_starts(h, patch_size, stride, rng))
    xs = torch.from_numpy(patch_starts(w, patch_size, stride, rng))
    model = model.to(device).eval()
    use_cl = device.type == "cuda" if channels_last is None else bool(channels_last)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    img = img.to(device=device, dtype=torch.float32).contiguous()
    probs = patch_probabilities(
        img, model, ys.to(device), xs.to(device), patch_size, batch_size, dtype, show_progress,
        dedupe=dedupe, channels_last=use_cl, approx_shared_layers=approx_shared_layers, static_batch=static_batch,
    )  # [ny, nx, K]
    if probs.shape[-1] < 2:
        raise ValueError(f"patch classifier has {probs.shape[-1]} classes; need malignant (0) and benign (1)")
    grid = probs[..., [MALIGNANT, BENIGN]].permute(2, 0, 1).double()  # [2, ny, nx]
    a_y = _coverage(ys.to(device), h, patch_size, torch.float64)  # [H, ny]
    a_x = _coverage(xs.to(device), w, patch_size, torch.float64)  # [W, nx]
    total = a_y @ grid @ a_x.T  # [2, H, W]
    count = a_y.sum(1)[:, None] * a_x.sum(1)[None, :]
    return (total / count).float().cpu()
