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
) -> torch.Tensor:
    """Softmax probabilities of every patch of the grid ``ys x xs``: ``[ny, nx, num_classes]``.

    Patches are gathered from a strided view of ``image`` (``[H, W]``, on the model's device) one
    batch at a time; the model sees ``[N, in_chans, P, P]``.
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
    use_cl = device.type == "cuda"
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    )
    out = []
    total = ny * nx
    bar = progress(total=total, desc="patches", disable=None if show_progress else True, leave=False)
    with autocast, bar:
        for start in range(0, total, batch_size):
            sel = slice(start, min(start + batch_size, total))
            batch = windows[flat_y[sel], flat_x[sel]].unsqueeze(1)  # [N, 1, P, P]
            if in_chans != 1:
                batch = batch.expand(-1, in_chans, -1, -1)
            if use_cl:
                batch = batch.contiguous(memory_format=torch.channels_last)
            logits = model(batch)
            out.append(torch.softmax(logits.float(), dim=1))
            bar.update(sel.stop - sel.start)
    return torch.cat(out).view(ny, nx, -1)


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
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    img = img.to(device=device, dtype=torch.float32).contiguous()
    probs = patch_probabilities(
        img, model, ys.to(device), xs.to(device), patch_size, batch_size, dtype, show_progress
    )  # [ny, nx, K]
    if probs.shape[-1] < 2:
        raise ValueError(f"patch classifier has {probs.shape[-1]} classes; need malignant (0) and benign (1)")
    grid = probs[..., [MALIGNANT, BENIGN]].permute(2, 0, 1).double()  # [2, ny, nx]
    a_y = _coverage(ys.to(device), h, patch_size, torch.float64)  # [H, ny]
    a_x = _coverage(xs.to(device), w, patch_size, torch.float64)  # [W, nx]
    total = a_y @ grid @ a_x.T  # [2, H, W]
    count = a_y.sum(1)[:, None] * a_x.sum(1)[None, :]
    return (total / count).float().cpu()
