"""Dense sliding-window patch heatmaps (paper Sec. IV-B; the reference's scheme, made fast).

Each pixel's heatmap value is the mean, over the patches covering it, of the patch classifier's
softmax probability of class 0 (malignant) and class 1 (benign). The pieces:

* :mod:`.grid` — where the patches go (the reference's stride layout) and the closed-form
  per-pixel assembly;
* :mod:`.patches` — every patch of an exam's images through the model as one stream of batches
  (patches cut on the device, background patches once, fp16 overflow guard, OOM retry);
* :mod:`.approx` — the opt-in shared-early-layers approximation.

This module puts them together (:func:`compute_heatmaps_many`, :func:`compute_heatmaps`) and
prepares the model (:func:`compile_patch_model`, :func:`default_batch_size`). The images come in
already in the model frame and standardised (:mod:`mammokit.transforms`).
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn as nn

from mammokit.heatmaps.approx import approx_patch_probabilities
from mammokit.heatmaps.grid import heatmaps_from_probabilities, patch_grid
from mammokit.heatmaps.patches import patch_probabilities_many
from mammokit.utils.device import resolve_device, resolve_dtype

__all__ = ["compile_patch_model", "default_batch_size", "compute_heatmaps", "compute_heatmaps_many"]


def _resolve(device, dtype) -> tuple[torch.device, torch.dtype]:
    dev = resolve_device(device)
    return dev, resolve_dtype(dtype, dev, "heatmaps")


def compile_patch_model(model: nn.Module, device: str | torch.device) -> nn.Module:
    """``torch.compile`` a patch classifier for inference on ``device``.

    channels_last weights (oneDNN and cuDNN prefer NHWC) and Inductor's ``freezing`` (weights
    become constants: conv + following batch-norm folded, weights pre-packed for oneDNN on the
    CPU). Feed it fixed-size batches (``static_batch``) so it compiles once; the first call
    compiles (about 1-2 minutes). Only for inference (``torch.inference_mode``).
    """
    device = torch.device(device)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    # dynamic=False: each batch shape gets its own static graph (a full batch and the tail
    # pieces of _run_batches), instead of one slower dynamic-shape graph after the second shape.
    return torch.compile(model, dynamic=False, options={"freezing": True})


def default_batch_size(model: nn.Module, device: str | torch.device) -> int:
    """Patches per forward pass when the caller gives none: 512 on CUDA (fills an H100; flat
    beyond); on the CPU 4 for DenseNet-121 (its block-1 feature maps of a few patches stay in
    the caches: 1.3x more patches/s than batch 16 on a 2-core AVX2 machine) and 256 for the small
    patch network."""
    if torch.device(device).type == "cuda":
        return 512
    from torchvision.models.densenet import DenseNet

    return 4 if isinstance(getattr(model, "_orig_mod", model), DenseNet) else 256


def _as_image(image) -> torch.Tensor:
    img = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if img.ndim != 2:
        raise ValueError(f"expected an [H, W] image, got shape {tuple(img.shape)}")
    return img


def compute_heatmaps_many(
    images: list[torch.Tensor | np.ndarray],
    model: nn.Module,
    patch_size: int,
    stride: int,
    batch_size: int | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    rngs: list[random.Random | int] | None = None,
    show_progress: bool = False,
    dedupe: bool = True,
    channels_last: bool | None = None,
    static_batch: bool = False,
    to_cpu: bool = True,
    approx_shared_layers: int = 0,
) -> list[torch.Tensor]:
    """Malignant and benign heatmaps of several images (an exam's views), their patches in one
    stream of batches (a compiled model pads only the stream's last batch).

    Args:
        images: ``[H_i, W_i]`` float images, already in the model frame (chest wall on the left)
            and standardised (:func:`mammokit.transforms.standardize_image`), as the reference
            feeds its patch classifier.
        model: patch classifier (``[N, in_chans, P, P] -> [N, classes]``, class 0 malignant,
            1 benign); put in eval mode and moved to ``device``.
        patch_size, stride: patch side and nominal stride (paper: 256, 70).
        batch_size: patches per forward pass (bounds the memory); default :func:`default_batch_size`.
        device: ``"cpu"``, ``"cuda[:N]"``, ``"auto"`` (CUDA if available) or a torch device.
        dtype: ``"fp32"``, ``"bf16"``, ``"fp16"`` (autocast) or ``"auto"`` (fp16 on CUDA, fp32 on
            the CPU; :func:`mammokit.utils.device.resolve_dtype`). fp16 patches whose output
            overflows are recomputed in fp32.
        rngs: per image, the placement of the shortened strides: a ``random.Random`` or an int
            seed (the reference seeds Python's ``random`` with 0 and draws rows, then columns, per
            image); default seed 0 for every image.
        dedupe: evaluate each distinct all-constant patch (background) once (exact; default on).
        channels_last: channels_last inputs and model (default: on CUDA only).
        static_batch: every forward gets exactly ``batch_size`` patches, so a ``torch.compile``-d
            model sees few input shapes; results are unchanged.
        to_cpu: return the maps on the CPU (else on ``device``).
        approx_shared_layers: 0 (default, exact) or a split level k of
            :meth:`~mammokit.models.patch.PatchDenseNet121.split`: the first layers run once on
            the whole image, the rest per patch (approximate, :mod:`.approx`); per image.

    Returns:
        Per image ``[2, H_i, W_i]`` float32: channel 0 malignant, 1 benign, values in [0, 1].
    """
    device, dtype = _resolve(device, dtype)
    imgs = [_as_image(im) for im in images]
    if rngs is None:
        rngs = [0] * len(imgs)
    if len(rngs) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(rngs)} rngs")
    grids = [
        patch_grid(im.shape[0], im.shape[1], patch_size, stride, r if isinstance(r, random.Random) else random.Random(r))
        for im, r in zip(imgs, rngs)
    ]
    if batch_size is None:
        batch_size = default_batch_size(model, device)
    model = model.to(device).eval()
    use_cl = device.type == "cuda" if channels_last is None else bool(channels_last)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    dev_imgs = [im.to(device=device, dtype=torch.float32).contiguous() for im in imgs]
    if approx_shared_layers:
        probs = [
            approx_patch_probabilities(im, model, ys.to(device), xs.to(device), patch_size, approx_shared_layers,
                                       batch_size, dtype, show_progress, dedupe=dedupe, channels_last=use_cl)
            for im, (ys, xs) in zip(dev_imgs, grids)
        ]
    else:
        probs = patch_probabilities_many(
            dev_imgs, model, grids, patch_size, batch_size, dtype, show_progress,
            dedupe=dedupe, channels_last=use_cl, static_batch=static_batch,
        )
    return [heatmaps_from_probabilities(p, ys, xs, im.shape[0], im.shape[1], patch_size, to_cpu)
            for p, (ys, xs), im in zip(probs, grids, imgs)]


def compute_heatmaps(
    image: torch.Tensor | np.ndarray, model: nn.Module, patch_size: int, stride: int,
    rng: random.Random | int | None = 0, **options,
) -> torch.Tensor:
    """Malignant and benign heatmaps ``[2, H, W]`` of one image: :func:`compute_heatmaps_many`
    for ``[image]`` with ``rngs=[rng]``; ``options`` are its keyword arguments."""
    return compute_heatmaps_many([image], model, patch_size, stride, rngs=[0 if rng is None else rng], **options)[0]
