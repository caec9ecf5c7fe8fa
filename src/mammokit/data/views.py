"""Load an exam's views for the breast-level models: flip, cache, sample windows, standardise.

Two steps, so that decoding happens once and the per-draw work runs on the model's device:

1. :func:`load_view` / :func:`load_exam_views` read a cropped image (and optionally its two
   heatmaps) from the work folder as ``float32 [C, H, W]`` in the model's frame: chest wall on the
   left (right-breast images mirrored; ``horizontal_flip = YES`` inverts that, as the reference's
   ``flip_image``). Channel order: image, benign heatmap, malignant heatmap (the reference's).
   A bytes-bounded LRU :class:`ImageCache` keeps decoded arrays so training epochs do not decode
   the same PNGs again.
2. :func:`make_model_inputs` samples windows (:mod:`mammokit.transforms.window`) on the CPU, cuts
   and resizes them on the device, and standardises each window's *image* channel
   ``(x - mean) / max(std, 1e-5)`` (population std, as ``np.std``). Heatmap channels are left as
   they are, as in the reference (``augment_and_normalize_image`` only normalises the image).
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mammokit.config import VIEWS, Preset
from mammokit.errors import InputFileError, MissingFileError
from mammokit.transforms import (
    crop_windows,
    sample_window,
    standardize_windows_,
    to_model_frame,
    window_noise,
)
from mammokit.views import needs_flip

if TYPE_CHECKING:
    import torch

__all__ = [
    "ImageCache",
    "MissingHeatmapsError",
    "load_view",
    "load_exam_views",
    "make_model_inputs",
    "collate",
]


class MissingHeatmapsError(MissingFileError):
    """A model needs heatmaps the work folder does not have (names the exam, view and command)."""


class ImageCache:
    """A thread-safe LRU cache of decoded arrays, bounded by total bytes.

    Args:
        max_bytes: the most bytes held (default 2 GiB; at the paper's resolution one float32
            channel of a cropped image is ~20 MB, so ~25 image-only exams). Arrays larger than
            ``max_bytes`` are not cached.

    Cached arrays are marked read-only: callers share them.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> np.ndarray | None:
        with self._lock:
            arr = self._items.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return arr

    def put(self, key, arr: np.ndarray) -> np.ndarray:
        arr.setflags(write=False)
        if arr.nbytes > self.max_bytes:
            return arr
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._items[key] = arr
            self.nbytes += arr.nbytes
            while self.nbytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.nbytes -= evicted.nbytes
        return arr

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def _exam_label(exam: Mapping) -> str:
    return str(exam.get("exam_id", "?"))


def _image_name(exam: Mapping, view: str, index: int) -> str:
    names = exam.get(view) or []
    if not 0 <= index < len(names):
        raise InputFileError(f"exam {_exam_label(exam)}: no image {index} for view {view} (it has {len(names)})")
    return names[index]


def _heatmap_paths(workdir: Path, exam: Mapping, view: str, index: int) -> tuple[Path, Path]:
    paths = []
    for field in ("heatmap_benign", "heatmap_malignant"):
        try:
            rel = exam[field][view][index]
        except (KeyError, IndexError, TypeError):
            rel = None
        if not rel:
            raise MissingHeatmapsError(
                f"{workdir}: exam {_exam_label(exam)} view {view}: no {field.replace('heatmap_', '')} heatmap "
                f"recorded (this model uses heatmaps: run `mammokit heatmaps {workdir} --patch-model ...` first)"
            )
        path = workdir / rel
        if not path.exists():
            raise MissingHeatmapsError(
                f"{path}: heatmap file missing for exam {_exam_label(exam)} view {view} "
                f"(run `mammokit heatmaps {workdir} --patch-model ...` again)"
            )
        paths.append(path)
    return paths[0], paths[1]


def load_view(
    workdir: str | Path,
    exam: Mapping,
    view: str,
    index: int = 0,
    heatmaps: bool = False,
    cache: ImageCache | None = None,
    image_dir: str = "cropped",
) -> np.ndarray:
    """One image of an exam (plus heatmaps) as the models see it.

    Args:
        workdir: the work folder (``cropped/<name>.png``, heatmap paths relative to it).
        exam: exam record from ``exams.json``.
        view: ``"L-CC"``, ... ; index: which image of that view.
        heatmaps: also read ``heatmap_benign`` / ``heatmap_malignant``.
        cache: optional :class:`ImageCache` (the returned array is then read-only).
        image_dir: image folder under ``workdir`` (``exams.json``'s ``image_dir``).

    Returns:
        ``float32 [C, H, W]``, C = 1 (image) or 3 (image, benign, malignant), chest wall left;
        image values are the PNG's 16-bit values.

    Raises:
        MissingHeatmapsError: heatmaps requested but not recorded / not on disk.
        mammokit.data.images.ImageReadError: the image cannot be read (names the file).
    """
    from mammokit.data.images import read_image

    workdir = Path(workdir)
    name = _image_name(exam, view, index)
    flip = needs_flip(view, exam.get("horizontal_flip", "NO"))
    image_path = workdir / image_dir / f"{name}.png"
    hm_paths = _heatmap_paths(workdir, exam, view, index) if heatmaps else ()
    key = (str(image_path), *map(str, hm_paths), flip)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit

    channels = [read_image(image_path).astype(np.float32)]
    if heatmaps:
        from mammokit.data.heatmap_io import read_heatmap

        for path in hm_paths:
            hm = np.asarray(read_heatmap(path), dtype=np.float32)
            if hm.shape != channels[0].shape:
                raise InputFileError(
                    f"{path}: heatmap shape {hm.shape} differs from image {image_path} shape {channels[0].shape} "
                    f"(stale heatmaps? run `mammokit heatmaps` again)"
                )
            channels.append(hm)
    # contiguous: torch cannot wrap the negative strides of a mirrored view
    arr = np.ascontiguousarray(to_model_frame(np.stack(channels), view, exam.get("horizontal_flip", "NO")))
    return cache.put(key, arr) if cache is not None else arr


def load_exam_views(
    workdir: str | Path,
    exam: Mapping,
    heatmaps: bool = False,
    cache: ImageCache | None = None,
    image_dir: str = "cropped",
    views: Sequence[str] = VIEWS,
) -> dict[str, list[np.ndarray]]:
    """Every image of the exam's ``views``: ``{view: [float32 [C, H, W], ...]}``.

    Views without images are left out (the caller decides whether the model can do without them).
    """
    out = {}
    for view in views:
        n = len(exam.get(view) or [])
        if n:
            out[view] = [load_view(workdir, exam, view, i, heatmaps, cache, image_dir) for i in range(n)]
    return out


def _randint(rng, high: int) -> int:
    # numpy Generator (mammokit) or legacy RandomState (exact replay of the reference's stream).
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(low=0, high=high))
    return int(rng.integers(0, high))


def make_model_inputs(
    views: Mapping[str, Any],
    exam: Mapping,
    preset: Preset,
    rng: np.random.Generator | np.random.RandomState | None = None,
    n_draws: int = 1,
    device: str | torch.device = "cpu",
    augment: bool = True,
) -> dict[str, torch.Tensor]:
    """Sample ``n_draws`` windows per view, cut them on ``device`` and standardise them.

    Args:
        views: ``{view: image}`` or ``{view: [image, ...]}`` (all images of the view, aligned with
            ``exam[view]`` and ``exam["best_center"][view]``); each image ``[C, H, W]`` numpy
            array or tensor in the model's frame (from :func:`load_view`). Views left out are
            left out of the result.
        exam: the exam record (``best_center`` per image; ``exam_id`` for messages).
        preset: window sizes and augmentation noise.
        rng: random source; required when ``augment``.
        n_draws: windows per view (TTA draws, or 1 for a training sample).
        device: where windows are cut and returned.
        augment: random windows (the reference augmentation); ``False`` = the window at
            ``best_center`` for every draw, image 0 of each view.

    Returns:
        ``{view: float32 Tensor [n_draws, C, h, w]}``, ``(h, w) = preset.input_size(view)``.

    Random draws follow the reference's order: draw-major, views in ``VIEWS`` order, per view the
    image index then the window's draws. With several images per view one is chosen per draw.
    """
    import torch

    if augment and rng is None:
        raise ValueError("make_model_inputs: augment=True needs an rng")
    if n_draws < 1:
        raise ValueError(f"make_model_inputs: n_draws must be >= 1, got {n_draws}")
    device = torch.device(device)
    noise = window_noise(preset) if augment else {"max_crop_noise": 0, "max_crop_size_noise": 0}
    images: dict[str, list] = {}
    for view in VIEWS:
        if view in views and views[view] is not None:
            v = views[view]
            images[view] = list(v) if isinstance(v, (list, tuple)) else [v]
            if not images[view]:
                del images[view]

    # 1. Sample every window (cheap, CPU, in the reference's draw order).
    chosen: dict[str, list[tuple[int, Any]]] = {v: [] for v in images}
    for _ in range(n_draws):
        for view, imgs in images.items():
            index = _randint(rng, len(imgs)) if augment else 0
            try:
                center = exam["best_center"][view][index]
            except (KeyError, IndexError, TypeError):
                raise InputFileError(
                    f"exam {_exam_label(exam)} view {view}: no best_center for image {index} "
                    f"(run `mammokit preprocess` first)"
                ) from None
            if center is None:
                raise InputFileError(f"exam {_exam_label(exam)} view {view}: image {index} has no best_center")
            shape = tuple(imgs[index].shape[-2:])
            win = sample_window(shape, view, center, preset.input_size(view), rng if augment else None, **noise)
            chosen[view].append((index, win))

    # 2. Cut on the device, one image at a time (an image goes to the device once per call).
    out = {}
    for view, imgs in images.items():
        size = preset.input_size(view)
        C = imgs[0].shape[0]
        batch = torch.empty((n_draws, C, *size), dtype=torch.float32, device=device)
        for index in sorted({i for i, _ in chosen[view]}):
            rows = [d for d, (i, _) in enumerate(chosen[view]) if i == index]
            batch[rows] = crop_windows(_to_device(imgs[index], device), [chosen[view][d][1] for d in rows], size)
        out[view] = standardize_windows_(batch)
    return out


def _to_device(image, device) -> torch.Tensor:
    import torch

    if isinstance(image, torch.Tensor):
        return image.to(device)
    with warnings.catch_warnings():
        # Cached arrays are read-only; crop_windows only reads them (it copies into new tensors).
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(image)).to(device)


def collate(samples: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-exam inputs ``[{view: [n_i, C, h, w]}, ...]`` into one batch
    ``{view: [sum n_i, C, h, w]}`` (views present in every sample)."""
    import torch

    if not samples:
        raise ValueError("collate: no samples")
    keys = [v for v in VIEWS if all(v in s for s in samples)]
    return {v: torch.cat([s[v] for s in samples], dim=0) for v in keys}
