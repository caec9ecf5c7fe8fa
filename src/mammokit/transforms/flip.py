"""Mirroring to and from the model frame (chest wall on the left).

The rule of which image is mirrored lives in :meth:`mammokit.views.View.needs_flip`; these
functions apply it to arrays whose last axis is the image width (``[H, W]``, ``[C, H, W]``...).
Mirroring twice is the identity, so :func:`from_model_frame` is the same operation, named for
the direction the caller means (heatmaps go back to the stored orientation when saved).
"""

from __future__ import annotations

import numpy as np

from mammokit.views import View

__all__ = ["to_model_frame", "from_model_frame"]


def to_model_frame(array: np.ndarray, view: str | View, horizontal_flip: str = "NO") -> np.ndarray:
    """``array`` (``[..., H, W]``) as the models see it: mirrored left-right when the view's chest
    wall is on the right in storage. A view (no copy) when nothing or only a flip is needed; use
    ``np.ascontiguousarray`` before handing it to torch."""
    if View.parse(view).needs_flip(horizontal_flip):
        return array[..., ::-1]
    return array


def from_model_frame(array: np.ndarray, view: str | View, horizontal_flip: str = "NO") -> np.ndarray:
    """Back from the model frame to the stored orientation (the inverse of :func:`to_model_frame`)."""
    return to_model_frame(array, view, horizontal_flip)
