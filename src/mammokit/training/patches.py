"""Patch sampling for the patch classifier: which patches, with which label, from which masks.

Images are seen exactly as the heatmap generator sees them (:mod:`mammokit.inference.heatmaps`): the
cropped image flipped so the chest wall is on the left, then standardised over the whole image.
The lesion masks (uncropped, original orientation, uint8 0/255, ``<stem>_malignant.png`` and
``<stem>_benign.png`` where ``<stem>`` is the source image's file stem) are cut with the exam's
``window_location`` and flipped the same way, so mask and image pixels correspond.

Label rule (classes: 0 = malignant, 1 = benign, 2 = normal), for a ``P x P`` patch:

* the *centre region* is the central ``P/2 x P/2`` square;
* **malignant** if at least ``lesion_fraction`` of the centre region is malignant mask;
* otherwise **benign** if at least ``lesion_fraction`` of the centre region is benign mask;
* otherwise **normal** if the centre region holds no lesion pixel at all;
* otherwise ambiguous (a lesion's rim): not used;
* any patch whose breast-tissue fraction (non-zero pixels of the cropped image) is below
  ``min_tissue_fraction`` is background and rejected.

Sampling: lesion classes draw a random pixel of a lesion mask as the patch centre, jittered by
up to ``P/8`` pixels; normal patches draw a random breast-tissue pixel. Draws that do not get the
wanted label are retried (up to 20 times). Each epoch takes the same number of patches of every
class (class balance), times ``normal_ratio`` for the normal class.

Hard negatives (``hard_negative_fraction``): that share of the normal patches is centred on
*dense* tissue (tissue pixels brighter than the image's 75th tissue percentile) instead of any
tissue pixel. Uniform tissue draws land mostly on fat, so without them the classifier learns
"bright = lesion" and its benign heatmap lights up all dense tissue (measured on the demo data:
the benign map's maximum over a finding-free breast had median 0.50, as high as over a benign
finding); lesions are told from gland by their shape and edge, which only hard negatives teach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammokit.errors import InputFileError
from mammokit.transforms import standardize_image, to_model_frame
from mammokit.utils.log import get_logger

log = get_logger(__name__)

CLASS_NAMES = ("malignant", "benign", "normal")
MALIGNANT, BENIGN, NORMAL = 0, 1, 2
MAX_TRIES = 20
DENSE_QUANTILE = 0.75  # hard negatives: tissue brighter than this quantile of the image's tissue


@dataclass
class PatchImage:
    """One cropped image ready for patch sampling (model frame: chest wall left).

    Attributes:
        name: image name (``cropped/<name>.png``).
        image: standardised float32 ``[H, W]``.
        malignant, benign, tissue: bool ``[H, W]`` masks.
    """

    name: str
    exam_id: str
    image: np.ndarray
    malignant: np.ndarray
    benign: np.ndarray
    tissue: np.ndarray


def _read_mask(path: Path, shape_full: tuple[int, int] | None) -> np.ndarray | None:
    from mammokit.data.images import read_png8

    if not path.exists():
        return None
    mask = read_png8(path)
    if mask.ndim != 2:
        raise InputFileError(f"{path}: a mask must be a 2-D grayscale image, got shape {mask.shape}")
    return mask > 127


def load_patch_image(
    workdir: str | Path, exam: dict, view: str, index: int, masks_dir: str | Path, image_dir: str = "cropped"
) -> PatchImage:
    """Read a cropped image and its lesion masks (cropped with ``window_location``, flipped as
    the image): ``<source stem>_<class>.png``, else ``<image name>_<class>.png``. A missing mask
    file means no lesion of that class in the image.

    Raises:
        ValueError / ImageReadError naming the file: unreadable image, a mask whose size does not
        contain the crop window.
    """
    from mammokit.data.images import read_image

    workdir, masks_dir = Path(workdir), Path(masks_dir)
    name = exam[view][index]
    path = workdir / image_dir / f"{name}.png"
    raw = read_image(path)
    sources = (exam.get("source_paths") or {}).get(view) or []
    stem = Path(sources[index]).stem if index < len(sources) and sources[index] else name
    try:
        top, bottom, left, right = (int(v) for v in exam["window_location"][view][index])
    except (KeyError, IndexError, TypeError, ValueError):
        raise InputFileError(f"exam {exam.get('exam_id')}: no window_location for {view}[{index}] (run preprocessing)") from None
    if (bottom - top, right - left) != raw.shape:
        raise InputFileError(f"{path}: image is {raw.shape}, window_location {top, bottom, left, right} says otherwise")
    masks = {}
    for cls in ("malignant", "benign"):
        # Masks are named after the source image's stem (synthetic / reference data) or after the
        # image name <exam>_<L|R>_<CC|MLO> (``mammokit import``, whose sources are e.g. 1-1.dcm).
        mpath = masks_dir / f"{stem}_{cls}.png"
        if not mpath.exists() and stem != name:
            mpath = masks_dir / f"{name}_{cls}.png"
        full = _read_mask(mpath, None)
        if full is None:
            masks[cls] = np.zeros(raw.shape, bool)
            continue
        if full.shape[0] < bottom or full.shape[1] < right:
            raise InputFileError(f"{mpath}: mask is {full.shape}, smaller than the crop window {top, bottom, left, right}")
        masks[cls] = full[top:bottom, left:right]
    flip = exam.get("horizontal_flip", "NO")
    raw = to_model_frame(raw, view, flip)
    masks = {k: to_model_frame(v, view, flip) for k, v in masks.items()}
    image = standardize_image(np.ascontiguousarray(raw)).numpy()
    return PatchImage(
        name, str(exam.get("exam_id")), image,
        np.ascontiguousarray(masks["malignant"]), np.ascontiguousarray(masks["benign"]), np.ascontiguousarray(raw > 0),
    )


def _window(arr: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    """``arr[y0:y0+size, x0:x0+size]`` with zeros (False) outside the array."""
    H, W = arr.shape
    out = np.zeros((size, size), dtype=arr.dtype)
    t, b, l, r = max(y0, 0), min(y0 + size, H), max(x0, 0), min(x0 + size, W)
    if t < b and l < r:
        out[t - y0 : b - y0, l - x0 : r - x0] = arr[t:b, l:r]
    return out


def patch_label(img: PatchImage, y0: int, x0: int, size: int, lesion_fraction: float, min_tissue_fraction: float) -> int | None:
    """Class of the patch with top-left ``(y0, x0)`` by the module's label rule, None if unusable."""
    if _window(img.tissue, y0, x0, size).mean() < min_tissue_fraction:
        return None
    q = size // 4
    c0, c1 = y0 + q, x0 + q
    side = size - 2 * q
    mal = _window(img.malignant, c0, c1, side).mean()
    ben = _window(img.benign, c0, c1, side).mean()
    if mal >= lesion_fraction:
        return MALIGNANT
    if ben >= lesion_fraction:
        return BENIGN
    if mal == 0 and ben == 0:
        return NORMAL
    return None


def extract_patch(img: PatchImage, y0: int, x0: int, size: int) -> np.ndarray:
    """The standardised patch ``[size, size]`` float32 (zeros outside the image)."""
    return _window(img.image, y0, x0, size)


class _MaskIndex:
    """The k-th True pixel of a 2-D mask in row-major order (``np.nonzero(mask)`` order) without
    listing them all: per-row cumulative counts, then one row's nonzero columns. A full-size
    tissue mask has ~6 million True pixels; listing them for every draw made patch sampling the
    bottleneck of patch training at the paper's resolution."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.cum = np.cumsum(np.count_nonzero(mask, axis=1))  # [H] pixels up to and including each row
        self.count = int(self.cum[-1]) if len(self.cum) else 0

    def pixel(self, k: int) -> tuple[int, int]:
        row = int(np.searchsorted(self.cum, k, side="right"))
        before = int(self.cum[row - 1]) if row else 0
        return row, int(np.flatnonzero(self.mask[row])[k - before])


def _pool_mask(im: PatchImage, key) -> np.ndarray:
    """The pixels a patch centre is drawn from: a lesion mask, the tissue, or dense tissue."""
    if key == MALIGNANT:
        return im.malignant
    if key == BENIGN:
        return im.benign
    if key == "dense":
        values = im.image[im.tissue]
        if not values.size:
            return im.tissue
        return im.tissue & (im.image > np.quantile(values, DENSE_QUANTILE))
    return im.tissue


def sample_patches(
    images: list[PatchImage],
    per_class: int,
    size: int,
    rng: np.random.Generator,
    lesion_fraction: float = 0.1,
    min_tissue_fraction: float = 0.5,
    hard_negative_fraction: float = 0.0,
    normal_ratio: float = 1.0,
) -> list[tuple[int, int, int, int]]:
    """``per_class`` patches of each lesion class and ``round(normal_ratio * per_class)`` normal
    ones, ``hard_negative_fraction`` of those on dense tissue: ``[(image index, y0, x0, label)]``,
    shuffled. With the defaults (0, 1) the draws are those of earlier versions, exactly.

    A class absent from ``images`` (no mask pixels) gets no patches (logged).
    """
    pools = {
        MALIGNANT: [i for i, im in enumerate(images) if im.malignant.any()],
        BENIGN: [i for i, im in enumerate(images) if im.benign.any()],
        NORMAL: [i for i, im in enumerate(images) if im.tissue.any()],
    }
    out: list[tuple[int, int, int, int]] = []
    jitter = max(size // 8, 0)
    index: dict[tuple[int, int], _MaskIndex] = {}
    for cls, pool in pools.items():
        if not pool:
            log.warning("no %s pixels in any image: no %s patches", CLASS_NAMES[cls], CLASS_NAMES[cls])
            continue
        want = per_class if cls != NORMAL else int(round(normal_ratio * per_class))
        got = 0
        for _ in range(want * MAX_TRIES):
            if got == want:
                break
            i = int(pool[rng.integers(len(pool))])
            im = images[i]
            key = cls
            # Only drawn when asked for, so the defaults consume the stream as before.
            if cls == NORMAL and hard_negative_fraction > 0 and rng.random() < hard_negative_fraction:
                key = "dense"
            if (i, key) not in index:
                index[i, key] = _MaskIndex(_pool_mask(im, key))
            where = index[i, key]
            if where.count == 0:  # no dense pixel (a tiny image): any tissue pixel
                key = cls
                if (i, key) not in index:
                    index[i, key] = _MaskIndex(_pool_mask(im, key))
                where = index[i, key]
            k = int(rng.integers(where.count))
            dy, dx = (rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0))
            yk, xk = where.pixel(k)
            y0 = int(yk + dy - size // 2)
            x0 = int(xk + dx - size // 2)
            if patch_label(im, y0, x0, size, lesion_fraction, min_tissue_fraction) == cls:
                out.append((i, y0, x0, cls))
                got += 1
        if got < want:
            log.warning("only %d of %d %s patches found", got, want, CLASS_NAMES[cls])
    order = rng.permutation(len(out))
    return [out[j] for j in order]
