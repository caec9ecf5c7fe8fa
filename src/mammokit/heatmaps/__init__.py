"""Dense patch-classifier heatmaps (paper Sec. IV-B): the sliding-window algorithm.

This layer takes a patch classifier *object* and standardised images in the model frame; it never
loads checkpoints or files. The work-folder stage (``mammokit heatmaps``) is
:func:`mammokit.inference.heatmaps.make_heatmaps`; heatmap files are read and written by
:mod:`mammokit.data.heatmap_io`.
"""

from mammokit.heatmaps.grid import (
    heatmaps_from_probabilities,
    num_patches,
    patch_grid,
    patch_starts,
    stride_list,
)
from mammokit.heatmaps.patches import patch_probabilities_many
from mammokit.heatmaps.sliding import (
    compile_patch_model,
    compute_heatmaps,
    compute_heatmaps_many,
    default_batch_size,
)

__all__ = [
    "compile_patch_model",
    "compute_heatmaps",
    "compute_heatmaps_many",
    "default_batch_size",
    "heatmaps_from_probabilities",
    "num_patches",
    "patch_grid",
    "patch_probabilities_many",
    "patch_starts",
    "stride_list",
]
