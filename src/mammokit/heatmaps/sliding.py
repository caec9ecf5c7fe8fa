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


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _resolve(device, dtype) -> tuple[torch.device, torch.dtype]:
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype in (None, "auto"):
        # fp16, not bf16, on CUDA: same speed on tensor cores and 8x finer rounding; with a trained
        # DenseNet-121 the heatmaps differ from fp32 by 7e-4 (fp16) vs 1.3e-2 (bf16) on an H100
        # (benchmarks/results). Overflowing patches are recomputed in fp32.
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or auto, got {dtype!r}")
        dtype = DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be fp32, bf16 or fp16, got {dtype}")
    return device, dtype


def default_batch_size(model: nn.Module, device: str | torch.device) -> int:
    """Patches per forward pass when the caller gives none: 512 on CUDA (fills an H100; flat
    beyond); on the CPU 4 for DenseNet-121 (its block-1 feature maps of a few patches stay in
    the caches: 1.3x more patches/s than batch 16 on a 2-core AVX2 machine) and 256 for the small
    patch network."""
    if torch.device(device).type == "cuda":
        return 512
    from torchvision.models.densenet import DenseNet

    return 4 if isinstance(getattr(model, "_orig_mod", model), DenseNet) else 256


def _constant_groups(windows: torch.Tensor, flat_y: torch.Tensor, flat_x: torch.Tensor, chunk: int = 256):
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


def _split_constant(const: torch.Tensor, value: torch.Tensor | None):
    """``(varying, const_pos, values, inverse)``: positions of the varying and the constant
    patches, the distinct constant values, and each constant patch's index into ``values``."""
    varying = torch.nonzero(~const).flatten()
    const_pos = torch.nonzero(const).flatten()
    if not len(const_pos):
        return varying, const_pos, const_pos.float(), const_pos
    values, inverse = torch.unique(value[const_pos], return_inverse=True)
    return varying, const_pos, values, inverse


def _run_batches(model, make_batch, total: int, batch_size: int, autocast, bar, static_batch: bool = False) -> torch.Tensor:
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
    with autocast:
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
            logits = model(batch)[:n]
            out.append(torch.softmax(logits.float(), dim=1))
            if bar is not None:
                bar.update(n)
            start = sel.stop
    return torch.cat(out) if out else torch.zeros(0)


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()


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
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
        const, value = zip(*(_constant_groups(w, y, x) for w, y, x in zip(windows, flat_y, flat_x)))
        const, value = torch.cat(const), torch.cat(value)
    else:
        const, value = torch.zeros(total, dtype=torch.bool, device=device), None
    varying, const_pos, values, inverse = _split_constant(const, value)
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
        both = _run_batches(model, make_batch, len(todo), batch_size, _autocast(device, dtype), bar, static_batch)
    if dtype == torch.float16:
        # fp16 has 5 exponent bits: a layer's activations may overflow. Those patches (non-finite
        # probabilities; one check for the whole stream, no per-batch sync) are run again in fp32.
        bad = torch.nonzero(~torch.isfinite(both).all(dim=1)).flatten()
        if len(bad):
            log.warning("fp16 overflow in %d patch(es): recomputed in fp32", len(bad))
            both[bad] = _run_batches(
                model, lambda sel: make_batch(bad[sel]), len(bad), batch_size, contextlib.nullcontext(), None, static_batch
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
    """Softmax probabilities of every patch of the grid ``ys x xs`` of one image ``[H, W]``:
    ``[ny, nx, num_classes]`` (:func:`patch_probabilities_many` for one image).

    ``approx_shared_layers`` k > 0 (approximate, :meth:`PatchDenseNet121.split`): run the first
    layers once on the whole image and the rest per patch on a crop of their output; see
    :func:`compute_heatmaps`.
    """
    if not approx_shared_layers:
        return patch_probabilities_many(
            [image], model, [(ys, xs)], patch_size, batch_size, dtype, show_progress, dedupe, channels_last, static_batch
        )[0]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = image.device
    use_cl = device.type == "cuda" if channels_last is None else bool(channels_last)
    autocast = _autocast(device, dtype)
    flat_y, flat_x = ys.repeat_interleave(len(xs)), xs.repeat(len(ys))
    total = len(flat_y)
    windows = image.unfold(0, patch_size, 1).unfold(1, patch_size, 1)
    # Constant (background) patches stay exact: one real forward per distinct value.
    const, value = _constant_groups(windows, flat_y, flat_x) if dedupe else (torch.zeros(total, dtype=torch.bool, device=device), None)
    varying, const_pos, values, inverse = _split_constant(const, value)
    bar = progress(total=total, desc="patches", disable=None if show_progress else True, leave=False)
    with bar:
        probs = None
        if len(varying):
            var_probs = _shared_layer_probs(
                image, model, flat_y[varying], flat_x[varying], patch_size, batch_size, autocast,
                approx_shared_layers, use_cl, bar,
            )
            probs = var_probs.new_empty(total, var_probs.shape[1])
            probs[varying] = var_probs
        if len(const_pos):
            in_chans = getattr(model, "in_chans", 1)

            def make(sel):
                b = values[sel].view(-1, 1, 1, 1).expand(-1, in_chans, patch_size, patch_size)
                return b.contiguous(memory_format=torch.channels_last) if use_cl else b.contiguous()

            rep_probs = _run_batches(model, make, len(values), batch_size, autocast, None)
            if probs is None:
                probs = rep_probs.new_empty(total, rep_probs.shape[1])
            probs[const_pos] = rep_probs[inverse]
            bar.update(len(const_pos))
    return probs.view(len(ys), len(xs), -1)


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


def _grid(h: int, w: int, patch_size: int, stride: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    if h < patch_size or w < patch_size:
        raise ValueError(f"image {h} x {w} is smaller than the {patch_size} x {patch_size} patch")
    ys = torch.from_numpy(patch_starts(h, patch_size, stride, rng))  # rows first, as the reference
    xs = torch.from_numpy(patch_starts(w, patch_size, stride, rng))
    return ys, xs


def _as_image(image) -> torch.Tensor:
    img = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if img.ndim != 2:
        raise ValueError(f"expected an [H, W] image, got shape {tuple(img.shape)}")
    return img


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
) -> list[torch.Tensor]:
    """Heatmaps of several images (an exam's views) with their patches in one stream of batches.

    Same result per image as :func:`compute_heatmaps` with the same ``rngs[i]`` (default: seed
    0 for every image); the patches of all images share batches, so a compiled model pads only
    the last batch of the stream. Returns per image ``[2, H_i, W_i]`` float32, on the CPU (or
    left on ``device`` with ``to_cpu=False``).
    """
    device, dtype = _resolve(device, dtype)
    imgs = [_as_image(im) for im in images]
    if rngs is None:
        rngs = [0] * len(imgs)
    if len(rngs) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(rngs)} rngs")
    grids = [
        _grid(im.shape[0], im.shape[1], patch_size, stride, r if isinstance(r, random.Random) else random.Random(r))
        for im, r in zip(imgs, rngs)
    ]
    if batch_size is None:
        batch_size = default_batch_size(model, device)
    model = model.to(device).eval()
    use_cl = device.type == "cuda" if channels_last is None else bool(channels_last)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    dev_imgs = [im.to(device=device, dtype=torch.float32).contiguous() for im in imgs]
    probs = patch_probabilities_many(
        dev_imgs, model, grids, patch_size, batch_size, dtype, show_progress,
        dedupe=dedupe, channels_last=use_cl, static_batch=static_batch,
    )
    return [
        heatmaps_from_probabilities(p, ys, xs, im.shape[0], im.shape[1], patch_size, to_cpu) for p, (ys, xs), im in zip(probs, grids, imgs)
    ]


def compute_heatmaps(
    image: torch.Tensor | np.ndarray,
    model: nn.Module,
    patch_size: int,
    stride: int,
    batch_size: int | None = None,
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
        batch_size: patches per forward pass (bounds the memory); default
            :func:`default_batch_size`.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA if available) or a torch device.
        dtype: ``"fp32"``, ``"bf16"``, ``"fp16"`` (autocast) or ``"auto"`` (fp16 on CUDA, fp32
            on CPU). fp16 patches whose output overflows are recomputed in fp32.
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
    if not approx_shared_layers:
        return compute_heatmaps_many(
            [image], model, patch_size, stride, batch_size, device, dtype, [rng if rng is not None else 0],
            show_progress, dedupe, channels_last, static_batch,
        )[0]
    device, dtype = _resolve(device, dtype)
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    img = _as_image(image)
    h, w = img.shape
    ys, xs = _grid(h, w, patch_size, stride, rng)
    if batch_size is None:
        batch_size = default_batch_size(model, device)
    model = model.to(device).eval()
    use_cl = device.type == "cuda" if channels_last is None else bool(channels_last)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    img = img.to(device=device, dtype=torch.float32).contiguous()
    probs = patch_probabilities(
        img, model, ys.to(device), xs.to(device), patch_size, batch_size, dtype, show_progress,
        dedupe=dedupe, channels_last=use_cl, approx_shared_layers=approx_shared_layers, static_batch=static_batch,
    )  # [ny, nx, K]
    return heatmaps_from_probabilities(probs, ys, xs, h, w, patch_size)
