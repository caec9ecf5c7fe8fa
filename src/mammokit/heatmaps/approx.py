"""The shared-early-layers approximation of the heatmaps (opt-in, not exact).

The patch classifier's first layers run once on the whole image and the rest per patch, on a
crop of their output (:meth:`mammokit.models.patch.PatchDenseNet121.split`): 2-4x fewer FLOPs,
but patch borders see image context instead of zero padding and patch starts are rounded to the
trunk's stride, so the heatmaps differ from the exact ones by 0.12-0.39 (benchmarks/README.md).
Constant (background) patches stay exact.
"""

from __future__ import annotations

import torch

from mammokit.errors import UsageError
from mammokit.heatmaps.patches import constant_patches, run_batches, split_constant
from mammokit.utils.device import autocast
from mammokit.utils.log import progress

__all__ = ["approx_patch_probabilities"]


@torch.inference_mode()
def approx_patch_probabilities(
    image: torch.Tensor,
    model: torch.nn.Module,
    ys: torch.Tensor,
    xs: torch.Tensor,
    patch_size: int,
    level: int,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float32,
    show_progress: bool = False,
    dedupe: bool = True,
    channels_last: bool | None = None,
) -> torch.Tensor:
    """Approximate softmax probabilities ``[ny, nx, classes]`` of the grid ``ys x xs`` of one
    image ``[H, W]`` on the model's device, sharing the layers up to split ``level``."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    device = image.device
    use_cl = device.type == "cuda" if channels_last is None else bool(channels_last)
    flat_y, flat_x = ys.repeat_interleave(len(xs)), xs.repeat(len(ys))
    total = len(flat_y)
    windows = image.unfold(0, patch_size, 1).unfold(1, patch_size, 1)
    # Constant (background) patches stay exact: one real forward per distinct value.
    const, value = constant_patches(windows, flat_y, flat_x) if dedupe else (torch.zeros(total, dtype=torch.bool, device=device), None)
    varying, const_pos, values, inverse = split_constant(const, value)
    bar = progress(total=total, desc="patches", disable=None if show_progress else True, leave=False)
    with bar:
        probs = None
        if len(varying):
            var_probs = _shared_layer_probs(
                image, model, flat_y[varying], flat_x[varying], patch_size, batch_size, dtype,
                level, use_cl, bar,
            )
            probs = var_probs.new_empty(total, var_probs.shape[1])
            probs[varying] = var_probs
        if len(const_pos):
            in_chans = getattr(model, "in_chans", 1)

            def make(sel):
                b = values[sel].view(-1, 1, 1, 1).expand(-1, in_chans, patch_size, patch_size)
                return b.contiguous(memory_format=torch.channels_last) if use_cl else b.contiguous()

            rep_probs = run_batches(model, make, len(values), batch_size, device, dtype)
            if probs is None:
                probs = rep_probs.new_empty(total, rep_probs.shape[1])
            probs[const_pos] = rep_probs[inverse]
            bar.update(len(const_pos))
    return probs.view(len(ys), len(xs), -1)



def _shared_layer_probs(
    image, model, flat_y, flat_x, patch_size, batch_size, dtype, level, use_cl, bar
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
    with autocast(image.device, dtype):
        feats = trunk(x)[0]  # [C, Hf, Wf]
    q = patch_size // s
    fy = torch.round(flat_y.double() / s).long().clamp(0, feats.shape[1] - q)
    fx = torch.round(flat_x.double() / s).long().clamp(0, feats.shape[2] - q)
    crops = feats.unfold(1, q, 1).unfold(2, q, 1)  # [C, Hf-q+1, Wf-q+1, q, q]

    def make(sel):
        b = crops[:, fy[sel], fx[sel]].permute(1, 0, 2, 3)  # [N, C, q, q]
        return b.contiguous(memory_format=torch.channels_last) if use_cl else b.contiguous()

    return run_batches(head, make, len(flat_y), batch_size, image.device, dtype, bar)
