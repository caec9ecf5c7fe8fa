"""Where the patches of a heatmap go, and how their probabilities become per-pixel maps.

Layout along one axis of length ``n`` (the reference's ``stride_list_generator`` with a fixed
stride): the first patch starts at 0 and the last ends exactly at ``n``; when
``(n - P) % stride != 0`` one more patch is added and the overlap it creates is spread over the
steps, every step ``stride - overlap // steps`` and ``overlap % steps`` of them (placed at random,
``random.Random.sample``, as the reference) one pixel shorter.

Assembly: each pixel's value is the mean, over the patches covering it, of a class probability.
With ``A_y [H, ny]`` and ``A_x [W, nx]`` the 0/1 "patch covers pixel" matrices,
``sum = A_y @ prob @ A_x^T`` and ``count = rowsum(A_y) x rowsum(A_x)`` (closed form, no loop over
patches).
"""

from __future__ import annotations

import random

import numpy as np
import torch

from mammokit.errors import InputFileError, UsageError

__all__ = ["MALIGNANT", "BENIGN", "stride_list", "patch_starts", "num_patches", "patch_grid",
           "heatmaps_from_probabilities"]

MALIGNANT, BENIGN = 0, 1
"""Patch-classifier classes of the two heatmaps (reference: ``heatmap_type=[0, 1]``)."""


def stride_list(length: int, patch_size: int, stride: int, rng: random.Random) -> list[int]:
    """Steps between consecutive patch starts along an axis of ``length`` pixels (the reference's
    ``stride_list_generator`` with ``stride_fixed``); their sum is ``length - patch_size``."""
    if length < patch_size:
        raise InputFileError(f"image side {length} is smaller than the patch size {patch_size}")
    if not 1 <= stride <= patch_size:
        # A stride past the patch side would leave pixels that no patch covers (no heatmap value).
        raise UsageError(f"heatmap stride must be between 1 and the patch size {patch_size}, got {stride}")
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


def patch_grid(h: int, w: int, patch_size: int, stride: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch starts ``(ys, xs)`` (int64 tensors) of an ``h x w`` image; rows drawn first from
    ``rng``, as the reference."""
    if h < patch_size or w < patch_size:
        raise InputFileError(f"image {h} x {w} is smaller than the {patch_size} x {patch_size} patch")
    ys = torch.from_numpy(patch_starts(h, patch_size, stride, rng))  # rows first, as the reference
    xs = torch.from_numpy(patch_starts(w, patch_size, stride, rng))
    return ys, xs


def _coverage(starts: torch.Tensor, length: int, patch_size: int, dtype: torch.dtype) -> torch.Tensor:
    """``[length, n]`` 0/1 matrix: pixel i is covered by the patch starting at ``starts[j]``."""
    pix = torch.arange(length, device=starts.device)[:, None]
    return ((pix >= starts[None]) & (pix < starts[None] + patch_size)).to(dtype)


def heatmaps_from_probabilities(
    probs: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, h: int, w: int, patch_size: int, to_cpu: bool = True
) -> torch.Tensor:
    """Per-pixel means of the malignant and benign probabilities ``probs [ny, nx, K]`` of the
    patches starting at ``ys x xs``: ``[2, H, W]`` float32 (closed form, module docstring), on
    the CPU or, with ``to_cpu=False``, on ``probs``' device."""
    if probs.shape[-1] < 2:
        raise ValueError(f"patch classifier has {probs.shape[-1]} classes; need malignant (0) and benign (1)")
    dev = probs.device
    grid = probs[..., [MALIGNANT, BENIGN]].permute(2, 0, 1).double()  # [2, ny, nx]
    a_y = _coverage(ys.to(dev), h, patch_size, torch.float64)  # [H, ny]
    a_x = _coverage(xs.to(dev), w, patch_size, torch.float64)  # [W, nx]
    total = a_y @ grid @ a_x.T  # [2, H, W]
    count = a_y.sum(1)[:, None] * a_x.sum(1)[None, :]
    maps = (total / count).float()
    return maps.cpu() if to_cpu else maps
