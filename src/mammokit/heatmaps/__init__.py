"""Dense patch-classifier heatmaps (paper Sec. IV-B): sliding window, file I/O, work-folder run."""

from mammokit.heatmaps.io import read_heatmap, write_heatmap, write_heatmap_hdf5, write_heatmap_png
from mammokit.heatmaps.run import heatmap_paths, load_patch_model, make_heatmaps
from mammokit.heatmaps.sliding import (
    compile_patch_model,
    compute_heatmaps,
    compute_heatmaps_many,
    heatmaps_from_probabilities,
    patch_starts,
    standardize_image,
    stride_list,
)

__all__ = [
    "compile_patch_model",
    "compute_heatmaps",
    "compute_heatmaps_many",
    "heatmaps_from_probabilities",
    "heatmap_paths",
    "load_patch_model",
    "make_heatmaps",
    "patch_starts",
    "read_heatmap",
    "standardize_image",
    "stride_list",
    "write_heatmap",
    "write_heatmap_hdf5",
    "write_heatmap_png",
]
