"""Heatmap files: native 16-bit PNGs and the authors' HDF5 layout.

* Native (``WORKDIR/heatmaps/{malignant,benign}/<name>.png``): uint16, value = round(p * 65535),
  same size and orientation as the cropped image (resolution 1.5e-5, far below model noise).
* Reference (``<out>/heatmap_{malignant,benign}/<name>.hdf5``): dataset ``image``, float32,
  stored transposed (width x height), lzf compression, original orientation.

:func:`read_heatmap` reads either (by extension) as float32 ``[H, W]`` in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mammokit.data.images import read_image, write_png16
from mammokit.errors import InputFileError, MissingFileError
from mammokit.utils.io import atomic_path

PNG_SCALE = 65535
HDF5_EXTENSIONS = (".hdf5", ".h5")


def _check(heatmap: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(heatmap, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{path}: a heatmap must be 2-D [H, W], got shape {arr.shape}")
    if not np.isfinite(arr).all() or arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
        raise ValueError(f"{path}: heatmap values must be probabilities in [0, 1]")
    return arr


def write_heatmap_png(path: str | Path, heatmap: np.ndarray) -> None:
    """Write a ``[H, W]`` probability map as a 16-bit PNG (round(p * 65535)), atomically."""
    path = Path(path)
    arr = _check(heatmap, path)
    write_png16(path, np.rint(arr * PNG_SCALE).astype(np.uint16))


def write_heatmap_hdf5(path: str | Path, heatmap: np.ndarray) -> None:
    """Write a ``[H, W]`` map in the authors' layout (dataset ``image``, float32, transposed, lzf)."""
    import h5py

    path = Path(path)
    arr = _check(heatmap, path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("image", data=np.ascontiguousarray(arr.T), compression="lzf")


def write_heatmap(path: str | Path, heatmap: np.ndarray) -> None:
    """Write by extension: ``.png`` native, ``.hdf5`` / ``.h5`` the authors' layout."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        write_heatmap_png(path, heatmap)
    elif suffix in HDF5_EXTENSIONS:
        write_heatmap_hdf5(path, heatmap)
    else:
        raise ValueError(f"{path}: unknown heatmap format (use .png or .hdf5)")


def read_heatmap(path: str | Path) -> np.ndarray:
    """Read a heatmap file (``.png`` native or ``.hdf5`` / ``.h5`` authors') as float32 ``[H, W]``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        arr = read_image(path)
        if arr.dtype != np.uint16:
            raise InputFileError(f"{path}: a heatmap PNG must be 16-bit, got {arr.dtype}")
        return arr.astype(np.float32) / PNG_SCALE
    if suffix in HDF5_EXTENSIONS:
        import h5py

        if not path.is_file():
            raise MissingFileError(f"{path}: heatmap not found")
        try:
            with h5py.File(path, "r") as f:
                if "image" not in f:
                    raise InputFileError(f"{path}: no dataset 'image' (not a reference heatmap)")
                data = f["image"][()]
        except OSError as exc:
            raise InputFileError(f"{path}: not a readable HDF5 file ({exc})") from None
        if data.ndim != 2:
            raise InputFileError(f"{path}: dataset 'image' must be 2-D, got shape {data.shape}")
        return np.ascontiguousarray(data.T, dtype=np.float32)
    raise InputFileError(f"{path}: unknown heatmap format (expected .png or .hdf5)")
