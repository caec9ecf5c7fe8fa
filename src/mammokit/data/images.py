"""Read and write mammograms as 16-bit grayscale arrays.

Every image enters the pipeline through :func:`read_image`, which returns a ``uint16`` array
``[H, W]`` in display orientation with the background exactly 0, whatever the source:

* 16-bit PNG: returned as stored (the reference implementation's input format).
* 8-bit PNG: scaled to 16 bits by ``* 257`` (so 255 -> 65535 and 0 stays 0).
* DICOM (``.dcm`` / ``.dicom`` extension, or any file with the ``DICM`` marker at byte 128, so
  archives of extension-less files work): decoded by :mod:`mammokit.data.dicom` (Rescale, VOI
  LUT / window, MONOCHROME1 inversion, padding -> 0; see that module for the exact mapping).

Failures raise :class:`~mammokit.errors.ImageReadError` (a ``ValueError``) whose message names the file and the
reason, so a batch job can report the bad item and go on.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mammokit.errors import ImageReadError
from mammokit.utils.io import write_bytes_atomic

__all__ = ["ImageReadError", "is_dicom_file", "read_image", "write_png16", "write_png8", "read_png8"]

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True if ``path`` has a DICOM extension or the ``DICM`` preamble marker at byte 128.

    Only the first 132 bytes are read, so this is cheap enough to run on every file of an archive.
    """
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a mammogram (PNG or DICOM) as ``uint16`` ``[H, W]``, background 0, display orientation.

    Raises:
        ImageReadError: missing file, not an image, undecodable pixels, not 2-D grayscale...
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    if is_dicom_file(path):
        from mammokit.data.dicom import read_dicom_pixels

        return read_dicom_pixels(path)
    return _read_raster(path)


def _read_raster(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc})") from None
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    # IMREAD_UNCHANGED keeps 16-bit depth and tells us the channel count; OpenCV returns None
    # (no exception) for anything it cannot decode.
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        kind = "truncated or corrupt PNG" if data[:8].tobytes() == PNG_SIGNATURE else "not a PNG or DICOM image"
        raise ImageReadError(f"{path}: {kind}")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 4:
            image = image[:, :, :3]
        # A grayscale image saved as RGB has three equal channels; a real colour image is refused
        # rather than silently converted (a mammogram is never colour).
        if not (np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 0], image[:, :, 2])):
            raise ImageReadError(f"{path}: colour image ({channels} channels); expected a grayscale mammogram")
        image = image[:, :, 0]
    if image.ndim != 2:
        raise ImageReadError(f"{path}: expected a 2-D image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.uint16) * np.uint16(257)
    if image.dtype == np.uint16:
        return np.ascontiguousarray(image)
    raise ImageReadError(f"{path}: unsupported pixel type {image.dtype}; expected 8- or 16-bit grayscale")


def _encode_png(path: Path, array: np.ndarray, dtype: type) -> bytes:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array [H, W], got shape {array.shape}")
    if array.dtype != dtype:
        info = np.iinfo(dtype)
        if array.size and (
            not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.bool_)
        ):
            raise ValueError(f"{path}: expected an integer array, got {array.dtype}")
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"{path}: values {array.min()}..{array.max()} outside {np.dtype(dtype).name} range")
        array = array.astype(dtype)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed")
    return buf.tobytes()


def write_png16(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` ``[H, W]`` as a 16-bit grayscale PNG, atomically.

    Integer arrays in 0..65535 are accepted and stored as ``uint16``; other inputs are an error
    (no silent rescaling).
    """
    path = Path(path)
    write_bytes_atomic(path, _encode_png(path, array, np.uint16))


def write_png8(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` ``[H, W]`` (integers 0..255 or bool, e.g. a 0/255 mask) as an 8-bit PNG,
    atomically. Booleans are stored as 0/255."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * np.uint8(255)
    write_bytes_atomic(path, _encode_png(path, array, np.uint8))


def read_png8(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit grayscale PNG (e.g. a mask) as ``uint8`` ``[H, W]``."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{path}: not a readable PNG")
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ImageReadError(f"{path}: expected an 8-bit grayscale PNG, got {image.dtype} {image.shape}")
    return image
