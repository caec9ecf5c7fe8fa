"""Typed presets: every size in the system, at full resolution (``paper``) or scaled for the CPU.

The paper's numbers are defined at full resolution (85 um pixels, ~3328 x 2560 images). A smaller
preset scales *all* pixel quantities by the same factor, so a synthetic data set generated with
``mammokit synth --scale 0.25`` is processed consistently by the ``small`` preset: the crop's
erosion depth, the buffers, the model input windows, the augmentation noise, the patch size and
the heatmap stride all shrink together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mammokit.errors import InputFileError, UsageError
from mammokit.views import VIEWS, view_kind

__all__ = [
    "VIEWS", "LABEL_COLUMNS", "Preset", "PRESETS", "scaled_preset", "preset_from_dict", "preset_of",
    "workdir_preset", "get_preset", "preset_for_scale",
]

LABEL_COLUMNS: tuple[str, ...] = ("left_benign", "right_benign", "left_malignant", "right_malignant")
"""Exam-level labels and prediction columns, in the reference implementation's order."""

# Full-resolution constants of the paper / reference implementation.
PAPER_CC_INPUT = (2677, 1942)  # (H, W)
PAPER_MLO_INPUT = (2974, 1748)
PAPER_EROSION_ITERATIONS = 100
PAPER_CROP_BUFFER = 50
PAPER_MAX_CROP_NOISE = 100
PAPER_MAX_CROP_SIZE_NOISE = 100
PAPER_PATCH_SIZE = 256
PAPER_HEATMAP_STRIDE = 70


def _scaled(value: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, int(round(value * scale)))


@dataclass(frozen=True)
class Preset:
    """All resolution-dependent settings of the pipeline.

    Attributes:
        name: preset name (``paper``, ``half``, ``small``, ``tiny``).
        scale: pixel scale relative to full resolution (1.0 = 85 um pixels).
        cc_input_size: model input window for CC views, (H, W).
        mlo_input_size: model input window for MLO views, (H, W).
        erosion_iterations: binary erosion / dilation iterations of the crop.
        crop_buffer: pixels added above, below and away from the chest wall when cropping.
        max_crop_noise: maximum random shift of the window (augmentation), pixels.
        max_crop_size_noise: maximum random move of each window border (augmentation), pixels.
        patch_size: side of the patch classifier's square input, pixels.
        heatmap_stride: sliding-window stride for heatmaps, pixels.
        patch_arch: registry name of the patch classifier used by this preset.
        input_noise_std: std of the Gaussian noise added to model inputs in training only.
    """

    name: str
    scale: float
    cc_input_size: tuple[int, int]
    mlo_input_size: tuple[int, int]
    erosion_iterations: int
    crop_buffer: int
    max_crop_noise: int
    max_crop_size_noise: int
    patch_size: int
    heatmap_stride: int
    patch_arch: str
    input_noise_std: float = 0.01

    def input_size(self, view: str) -> tuple[int, int]:
        """Model input window (H, W) for a view name such as ``"L-CC"`` or a bare ``"CC"``."""
        return self.cc_input_size if view_kind(view) == "CC" else self.mlo_input_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def scaled_preset(name: str, scale: float, patch_arch: str | None = None) -> Preset:
    """Build a preset whose every pixel quantity is the paper's times ``scale``."""
    if not 0 < scale <= 1:
        raise UsageError(f"scale must be in (0, 1], got {scale}")
    return Preset(
        name=name,
        scale=scale,
        cc_input_size=(_scaled(PAPER_CC_INPUT[0], scale), _scaled(PAPER_CC_INPUT[1], scale)),
        mlo_input_size=(_scaled(PAPER_MLO_INPUT[0], scale), _scaled(PAPER_MLO_INPUT[1], scale)),
        erosion_iterations=_scaled(PAPER_EROSION_ITERATIONS, scale),
        crop_buffer=_scaled(PAPER_CROP_BUFFER, scale, minimum=0),
        max_crop_noise=_scaled(PAPER_MAX_CROP_NOISE, scale, minimum=0),
        max_crop_size_noise=_scaled(PAPER_MAX_CROP_SIZE_NOISE, scale, minimum=0),
        patch_size=_scaled(PAPER_PATCH_SIZE, scale, minimum=8),
        heatmap_stride=_scaled(PAPER_HEATMAP_STRIDE, scale),
        patch_arch=patch_arch or ("densenet121" if scale >= 0.5 else "patchnet_small"),
    )


PRESETS: dict[str, Preset] = {
    "paper": scaled_preset("paper", 1.0, patch_arch="densenet121"),
    "half": scaled_preset("half", 0.5),
    "small": scaled_preset("small", 0.25),
    "tiny": scaled_preset("tiny", 0.125),
}


def preset_from_dict(config: dict) -> Preset:
    """Rebuild a preset stored as JSON (``Preset.to_dict``; lists become tuples again)."""
    fields = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise InputFileError(f"not a preset: unknown field(s) {', '.join(unknown)}")
    return Preset(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def preset_of(value: str | dict | Preset | None) -> Preset | None:
    """A preset from a name, a stored dict or a Preset (None stays None)."""
    if value is None or isinstance(value, Preset):
        return value
    if isinstance(value, str):
        return get_preset(value)
    return preset_from_dict(value)


def workdir_preset(meta: dict, where: object = "exams.json") -> Preset:
    """The preset a work folder was preprocessed with, from its ``exams.json`` meta
    (``preset_config`` dict, else the ``preset`` name)."""
    config = meta.get("preset_config")
    if isinstance(config, dict):
        try:
            return preset_from_dict(config)
        except (TypeError, ValueError) as exc:
            raise InputFileError(f"{where}: unreadable preset_config ({exc})") from None
    if meta.get("preset"):
        return get_preset(meta["preset"])
    raise InputFileError(f"{where}: no preset recorded (run `mammokit preprocess` to make this work folder)")


def get_preset(name_or_preset: str | Preset) -> Preset:
    """Look a preset up by name (``paper``, ``half``, ``small``, ``tiny``)."""
    if isinstance(name_or_preset, Preset):
        return name_or_preset
    try:
        return PRESETS[name_or_preset]
    except KeyError:
        raise UsageError(
            f"unknown preset {name_or_preset!r}; choose one of {', '.join(PRESETS)}"
        ) from None


def preset_for_scale(scale: float) -> Preset:
    """The named preset whose scale equals ``scale`` (e.g. the scale of a synthetic data set)."""
    for preset in PRESETS.values():
        if abs(preset.scale - scale) < 1e-9:
            return preset
    return scaled_preset(f"scale{scale:g}", scale)
