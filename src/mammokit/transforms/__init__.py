"""Per-image transforms shared by data loading, preprocessing, heatmaps and training.

* :mod:`.window` — model-input windows: the reference augmentation as boxes
  (:func:`sample_window`) and their cut + bicubic resize on any device (:func:`crop_windows`).
* :mod:`.intensity` — standardisation ``(x - mean) / max(std, 1e-5)`` (:func:`standardize`).
* :mod:`.flip` — to and from the model frame (chest wall on the left).
* :mod:`.augment` — patch augmentation for the patch classifier.

This layer imports nothing of mammokit above ``views``, ``config``, ``errors`` and ``utils``.
"""

from mammokit.transforms.augment import augment_patch
from mammokit.transforms.flip import from_model_frame, to_model_frame
from mammokit.transforms.intensity import (
    STD_FLOOR,
    standardize,
    standardize_image,
    standardize_windows_,
)
from mammokit.transforms.window import Window, crop_windows, sample_window, window_noise

__all__ = [
    "STD_FLOOR",
    "Window",
    "augment_patch",
    "crop_windows",
    "from_model_frame",
    "sample_window",
    "standardize",
    "standardize_image",
    "standardize_windows_",
    "to_model_frame",
    "window_noise",
]
