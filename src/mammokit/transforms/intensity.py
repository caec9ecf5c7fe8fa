"""Standardisation, the reference's ``(x - mean) / max(std, 1e-5)`` with the population std.

One rule, applied at two scopes:

* the whole cropped image before the patch classifier (heatmaps, patch training): statistics in
  float64 as the reference's numpy code (:func:`standardize_image`);
* each model-input window's image channel before the breast-level models, on the window's
  device in float32 (:func:`standardize_windows_`); heatmap channels are left as they are, as in
  the reference (``augment_and_normalize_image`` only normalises the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["STD_FLOOR", "standardize", "standardize_image", "standardize_windows_"]

STD_FLOOR = 1e-5
"""Lower bound of the std (a constant window would otherwise divide by zero)."""


def standardize(x: torch.Tensor, dim: int | Sequence[int] | None = None) -> torch.Tensor:
    """``(x - mean) / max(std, STD_FLOOR)`` over ``dim`` (None = all elements), population std,
    computed in ``x``'s dtype. Returns a new tensor of ``x``'s shape."""
    if dim is None:
        mean, std = x.mean(), x.std(correction=0)
    else:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True, correction=0)
    return (x - mean) / std.clamp_min(STD_FLOOR)


def standardize_image(image: np.ndarray | torch.Tensor, device=None) -> torch.Tensor:
    """A whole image ``[H, W]`` standardised with float64 statistics (as the reference), returned
    as float32 ``[H, W]`` (on ``device`` when given, else where ``image`` is)."""
    import torch

    if isinstance(image, torch.Tensor):
        x = image.to(device=device, dtype=torch.float64)
    else:
        x = torch.as_tensor(np.asarray(image), dtype=torch.float64, device=device)
    return standardize(x).float()


def standardize_windows_(x: torch.Tensor) -> torch.Tensor:
    """Standardise each window's image channel in place: ``x`` is ``[N, C, h, w]``; channel 0 of
    each window is standardised on its own, channels 1.. (heatmaps) are untouched. Returns ``x``."""
    x[:, 0] = standardize(x[:, 0], dim=(1, 2))
    return x
