"""Preprocessing: crop to the breast, optimal window centres, the ``mammokit preprocess`` stage.

* :mod:`.crop` — :func:`crop_mammogram` (the reference's erosion / largest component / dilation
  crop with buffers) and :class:`CropError`.
* :mod:`.center` — :func:`optimal_center` (``best_center`` of the model-input window).
* :mod:`.pipeline` — :func:`preprocess` (manifest -> ``WORKDIR``), :func:`preprocess_exams`,
  :func:`preprocess_image`.
"""

from mammokit.preprocess.center import optimal_center
from mammokit.preprocess.crop import CropError, CropResult, crop_mammogram
from mammokit.preprocess.pipeline import (
    ImagePreprocessResult,
    PreprocessError,
    PreprocessReport,
    preprocess,
    preprocess_exams,
    preprocess_image,
)

__all__ = [
    "CropError",
    "CropResult",
    "ImagePreprocessResult",
    "PreprocessError",
    "PreprocessReport",
    "crop_mammogram",
    "optimal_center",
    "preprocess",
    "preprocess_exams",
    "preprocess_image",
]
