"""Patch-classifier probabilities of every patch of an exam's images, as one stream of batches.

Patches are cut on the model's device from strided views of the images (no copy until a batch is
cut), one batch at a time, so memory is bounded by the batch. Exact savings: patches whose pixels
are all equal (the background of a cropped image, a constant after standardisation) are
evaluated once per distinct value over all images (``dedupe``). fp16 outputs that overflow are
recomputed in fp32. A CUDA out-of-memory error halves the batch and retries (same results).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mammokit.errors import ResourceError, UsageError
from mammokit.utils.device import autocast
from mammokit.utils.log import get_logger, progress

log = get_logger(__name__)

__all__ = ["patch_probabilities_many", "run_batches", "constant_patches", "split_constant"]


def constant_patches(windows: torch.Tensor, flat_y: torch.Tensor, flat_x: torch.Tensor, chunk: int = 256):
    """``(const, value)`` of the patches at ``(flat_y, flat_x)``: ``const[i]`` is True when
    every pixel of patch i has the same value, ``value[i]`` (its minimum) is that value."""
    lo, hi = [], []
    for start in range(0, len(flat_y), chunk):
        sel = slice(start, start + chunk)
        mn, mx = windows[flat_y[sel], flat_x[sel]].flatten(1).aminmax(dim=1)
        lo.append(mn)
        hi.append(mx)
    lo, hi = torch.cat(lo), torch.cat(hi)
    return lo == hi, lo


def split_constant(const: torch.Tensor, value: torch.Tensor | None):
    """``(varying, const_pos, values, inverse)``: positions of the varying and the constant
    patches, the distinct constant values, and each constant patch's index into ``values``."""
    varying = torch.nonzero(~const).flatten()
    const_pos = torch.nonzero(const).flatten()
    if not len(const_pos):
        return varying, const_pos, const_pos.float(), const_pos
    values, inverse = torch.unique(value[const_pos], return_inverse=True)
    return varying, const_pos, values, inverse


def run_batches(
    model, make_batch, total: int, batch_size: int, device: torch.device, dtype: torch.dtype, bar=None,
    static_batch: bool = False,
) -> torch.Tensor:
    """Softmax probabilities ``[total, K]`` (float32) of ``model`` over ``make_batch(sel)`` for
    consecutive slices of ``range(total)``.

    ``static_batch`` (compiled models, which recompile for every new input shape): every forward
    gets exactly ``batch_size`` patches, except the stream's tail, which runs in pieces of
    ``batch_size // 8`` when the batch is large (one more compiled shape, and at most
    ``batch_size // 8 - 1`` padded patches instead of up to ``batch_size - 1``); short forwards are
    padded by repeating their last patch and the extra outputs dropped.
    """
    out = []
    tail = batch_size // 8 if static_batch and batch_size >= 64 else batch_size
    with autocast(device, dtype):
        start = 0
        while start < total:
            size = batch_size if total - start >= batch_size else tail
            sel = slice(start, min(start + size, total))
            batch = make_batch(sel)
            n = batch.shape[0]
            if static_batch and n < size:
                pad = batch[-1:].expand(size - n, *batch.shape[1:])
                batch = torch.cat([batch, pad]).contiguous(
                    memory_format=torch.channels_last if batch.is_contiguous(memory_format=torch.channels_last)
                    and not batch.is_contiguous() else torch.contiguous_format
                )
            try:
                logits = model(batch)[:n]
            except torch.cuda.OutOfMemoryError:
                # Same patches, smaller forwards: the results do not depend on the batch size.
                batch_size, tail = _smaller_batch(batch_size, batch.device)
                del batch
                continue
            out.append(torch.softmax(logits.float(), dim=1))
            if bar is not None:
                bar.update(n)
            start = sel.stop
    return torch.cat(out) if out else torch.zeros(0)


def _smaller_batch(batch_size: int, device: torch.device) -> tuple[int, int]:
    """After a CUDA out-of-memory error: free the cache and halve the batch (a user-facing
    :class:`~mammokit.errors.ResourceError` once a single patch does not fit)."""
    if batch_size <= 1:
        raise ResourceError(
            f"out of GPU memory on {device} even with one patch per forward: free the GPU (other "
            f"processes?) or run on the CPU (--device cpu)"
        )
    if device.type == "cuda":
        torch.cuda.empty_cache()
    smaller = max(1, batch_size // 2)
    log.warning("out of GPU memory at %d patches per forward: retrying with %d", batch_size, smaller)
    return smaller, smaller



@torch.inference_mode()
def patch_probabilities_many(
    images: list[torch.Tensor],
    model: nn.Module,
    grids: list[tuple[torch.Tensor, torch.Tensor]],
    patch_size: int,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float32,
    show_progress: bool = False,
    dedupe: bool = True,
    channels_last: bool | None = None,
    static_batch: bool = False,
) -> list[torch.Tensor]:
    """Softmax probabilities of every patch of several images, one patch stream.

    ``images[i]`` is ``[H_i, W_i]`` on the model's device, ``grids[i] = (ys, xs)`` its patch
    starts; returns per image ``[ny_i, nx_i, num_classes]``. Patches of all images fill the same
    batches (an exam's four views: only the stream's last batch is short, which matters for
    compiled models that pad it), gathered from strided views of the images (no copy until a
    batch is cut). The model sees ``[N, in_chans, P, P]``.

    ``dedupe`` (exact): patches whose pixels are all equal (the background of a cropped image, a
    constant after standardisation) are evaluated once per distinct value, over all images.
    ``channels_last``: feed channels_last batches (default: on CUDA only).
    ``static_batch``: every forward gets exactly ``batch_size`` patches (for compiled models).
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    if len(images) != len(grids):
        raise ValueError(f"{len(images)} images but {len(grids)} patch grids")
    if not images:
        return []
    device = images[0].device
    in_chans = getattr(model, "in_chans", 1)
    use_cl = device.type == "cuda" if channels_last is None else bool(channels_last)
    # Per image: [H-P+1, W-P+1, P, P] view of every possible patch (no copy until indexed) and
    # the flat (y, x) of its grid, row-major.
    windows, flat_y, flat_x, sizes = [], [], [], []
    for img, (ys, xs) in zip(images, grids):
        windows.append(img.unfold(0, patch_size, 1).unfold(1, patch_size, 1))
        flat_y.append(ys.to(device).repeat_interleave(len(xs)))
        flat_x.append(xs.to(device).repeat(len(ys)))
        sizes.append(len(ys) * len(xs))
    image_of = torch.cat([torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(sizes)])
    fy, fx = torch.cat(flat_y), torch.cat(flat_x)
    total = len(fy)
    if dedupe:
        const, value = zip(*(constant_patches(w, y, x) for w, y, x in zip(windows, flat_y, flat_x)))
        const, value = torch.cat(const), torch.cat(value)
    else:
        const, value = torch.zeros(total, dtype=torch.bool, device=device), None
    varying, const_pos, values, inverse = split_constant(const, value)
    # One representative patch per distinct constant value (its first occurrence).
    first = torch.full((len(values),), total, dtype=torch.long, device=device)
    reps = first.scatter_reduce(0, inverse, const_pos, reduce="amin")
    todo = torch.cat([varying, reps])
    todo_img = image_of[todo].cpu()

    def make_batch(sel) -> torch.Tensor:
        """Patches at positions ``sel`` (a slice or index tensor) of ``todo``: ``[N, C, P, P]``."""
        idx, owner = todo[sel], todo_img[sel.cpu() if isinstance(sel, torch.Tensor) else sel]
        parts, start = [], 0
        # Runs of patches of the same image (todo is image-major, then the representatives).
        _, counts = torch.unique_consecutive(owner, return_counts=True)
        for c in counts.tolist():
            i = int(owner[start])
            part = idx[start : start + c]
            parts.append(windows[i][fy[part], fx[part]])
            start += c
        batch = (torch.cat(parts) if len(parts) > 1 else parts[0]).unsqueeze(1)  # [N, 1, P, P]
        if in_chans != 1:
            batch = batch.expand(-1, in_chans, -1, -1)
        if use_cl:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    bar = progress(total=len(todo), desc="patches", disable=None if show_progress else True, leave=False)
    with bar:
        both = run_batches(model, make_batch, len(todo), batch_size, device, dtype, bar, static_batch)
    if dtype == torch.float16:
        # fp16 has 5 exponent bits: a layer's activations may overflow. Those patches (non-finite
        # probabilities; one check for the whole stream, no per-batch sync) are run again in fp32.
        bad = torch.nonzero(~torch.isfinite(both).all(dim=1)).flatten()
        if len(bad):
            log.warning("fp16 overflow in %d patch(es): recomputed in fp32", len(bad))
            both[bad] = run_batches(
                model, lambda sel: make_batch(bad[sel]), len(bad), batch_size, device, torch.float32, None, static_batch
            )
    probs = both.new_empty(total, both.shape[1])
    probs[varying] = both[: len(varying)]
    if len(reps):
        probs[const_pos] = both[len(varying):][inverse]
    out, offset = [], 0
    for (ys, xs), n in zip(grids, sizes):
        out.append(probs[offset : offset + n].view(len(ys), len(xs), -1))
        offset += n
    return out
