"""Patch augmentation for the patch classifier (flips, right-angle rotations, intensity)."""

from __future__ import annotations

import numpy as np

__all__ = ["augment_patch"]


def augment_patch(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal / vertical flip, 90-degree rotation, and intensity scale (x0.9-1.1) and
    shift (+-0.1 standard deviations) of a standardised patch ``[P, P]``; float32, contiguous.

    Draws from ``rng`` in a fixed order (flip, flip, rotation, scale, shift), so the same stream
    gives the same patches."""
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1, :]
    patch = np.rot90(patch, k=int(rng.integers(4)))
    scale, shift = rng.uniform(0.9, 1.1), rng.uniform(-0.1, 0.1)
    return np.ascontiguousarray(patch * np.float32(scale) + np.float32(shift), dtype=np.float32)
