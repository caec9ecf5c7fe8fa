"""Inputs a hostile or broken archive can hold: small valid mammograms, DICOMs with raw header
bytes patched in, and a tree hash to prove the input tree is never modified.

No tests here; imported by tests/reliability/*.py and benchmarks/*.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from mammokit.data.dicom_write import write_dicom


def breast_image(h: int = 160, w: int = 120, side: str = "L", seed: int = 0) -> np.ndarray:
    """``uint16`` ``[h, w]``: a half-ellipse breast on the chest-wall side (left for ``L``, right
    for ``R``, display orientation) over an exactly-0 background; crops cleanly with ``tiny``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = xx if side == "L" else (w - 1 - xx)
    inside = ((yy - h / 2) / (0.42 * h)) ** 2 + (x / (0.7 * w)) ** 2 < 1
    texture = rng.integers(15000, 40000, size=(h, w))
    return np.where(inside, texture, 0).astype(np.uint16)


def write_patched_dicom(path: Path, replace: dict[bytes, bytes], **kwargs) -> Path:
    """Write a valid MG DICOM (:func:`write_dicom`), then replace raw byte strings in the file,
    e.g. a placeholder StudyInstanceUID by one holding ``\\x85``: pydicom would refuse (or
    re-encode) such values when writing, but an archive can hold them. Each replacement must
    keep the length, so the element lengths stay right."""
    view = kwargs.pop("view", "L-CC")
    side, kind = view.split("-")
    image = kwargs.pop("pixels", None)
    if image is None:
        image = breast_image(side=side, seed=hash(view) % 1000)
    write_dicom(path, image, laterality=side, view=kind, **kwargs)
    data = path.read_bytes()
    for old, new in replace.items():
        if len(old) != len(new):
            raise ValueError(f"replacement {old!r} -> {new!r} changes the length")
        if old not in data:
            raise ValueError(f"{old!r} not found in {path}")
        data = data.replace(old, new)
    path.write_bytes(data)
    return path


def tree_hash(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (plus modes and mtimes, so a
    rewrite with identical bytes is noticed too)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[path.relative_to(root).as_posix()] = f"{digest} {st.st_mode:o} {st.st_mtime_ns}"
    return out
