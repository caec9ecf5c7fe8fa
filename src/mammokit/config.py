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

from pathlib import Path

from mammokit.errors import InputFileError, MissingFileError, UsageError
from mammokit.views import VIEWS, view_kind

__all__ = [
    "VIEWS", "LABEL_COLUMNS", "Preset", "PRESETS", "scaled_preset", "preset_from_dict", "preset_of",
    "workdir_preset", "get_preset", "preset_for_scale", "preset_from_toml", "PRESET_SPEC_HELP",
    "MATCHING_FIELDS", "preset_differences", "describe_preset", "PresetMismatchError", "check_same_preset",
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


PRESET_SPEC_HELP = (
    "a preset name (" + ", ".join(PRESETS) + "), scale:F (every size of the paper times F, e.g. "
    "scale:0.25) or a TOML file (e.g. mypreset.toml)"
)


def get_preset(name_or_preset: str | Preset) -> Preset:
    """A preset from its name (``paper``, ``half``, ``small``, ``tiny``), ``scale:F`` (the paper's
    sizes times ``F``, :func:`preset_for_scale`) or the path of a TOML file
    (:func:`preset_from_toml`)."""
    if isinstance(name_or_preset, Preset):
        return name_or_preset
    spec = str(name_or_preset)
    if spec in PRESETS:
        return PRESETS[spec]
    if spec.startswith("scale:"):
        try:
            scale = float(spec[len("scale:"):])
        except ValueError:
            raise UsageError(f"preset {spec!r}: scale:F needs a number F in (0, 1], e.g. scale:0.25") from None
        if not 0 < scale <= 1:
            raise UsageError(f"preset {spec!r}: the scale must be in (0, 1], got {scale:g}")
        return preset_for_scale(scale)
    if spec.lower().endswith(".toml") or Path(spec).is_file():
        return preset_from_toml(spec)
    raise UsageError(f"unknown preset {spec!r}; give {PRESET_SPEC_HELP}")


def preset_from_toml(path: str | Path) -> Preset:
    """A custom preset from a TOML file.

    Keys (all optional except one of ``scale`` / ``base``)::

        name = "mine"               # default: the file's stem
        base = "small"              # start from a named preset (or "scale:F")...
        scale = 0.3                 # ...or from the paper's sizes times this scale
        cc_input_size = [800, 580]  # then any Preset field overrides it (sizes as [H, W])
        heatmap_stride = 12

    ``base`` and ``scale`` together: the base preset with its ``scale`` field replaced (no size is
    rescaled). An unknown key is an error naming the key and the file.
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: preset file not found")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not a valid TOML preset file ({exc})") from None
    fields = {f.name: f for f in dataclasses.fields(Preset)}
    allowed = set(fields) | {"base"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InputFileError(
            f"{path}: unknown preset key(s) {', '.join(unknown)} (allowed: base, {', '.join(fields)})"
        )
    if "base" in doc:
        if not isinstance(doc["base"], str):
            raise InputFileError(f"{path}: base must be a preset name or scale:F, got {doc['base']!r}")
        if doc["base"].lower().endswith(".toml"):
            raise InputFileError(f"{path}: base must be a preset name or scale:F, not another file")
        start = get_preset(doc["base"])
    elif "scale" in doc:
        scale = doc["scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            raise InputFileError(f"{path}: scale must be a number in (0, 1], got {scale!r}")
        start = scaled_preset(path.stem, float(scale), doc.get("patch_arch"))
    else:
        raise InputFileError(f"{path}: a preset file needs base = \"NAME\" or scale = F")
    values = dataclasses.asdict(start)
    values["name"] = path.stem
    for key, value in doc.items():
        if key == "base":
            continue
        values[key] = _checked_field(path, key, value, fields[key].type)
    if not 0 < values["scale"] <= 1:
        raise InputFileError(f"{path}: scale must be in (0, 1], got {values['scale']!r}")
    if values["patch_size"] < 8 or values["heatmap_stride"] < 1 or values["erosion_iterations"] < 1:
        raise InputFileError(f"{path}: patch_size must be >= 8, heatmap_stride and erosion_iterations >= 1")
    return Preset(**values)


def _checked_field(path: Path, key: str, value, kind: str):
    """A TOML value checked against the Preset field's type (the annotations are strings)."""
    where = f"{path}: {key}"
    if "tuple" in kind:
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise InputFileError(f"{where} must be [H, W], two positive integers, got {value!r}")
        return (int(value[0]), int(value[1]))
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputFileError(f"{where} must be an integer >= 0, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InputFileError(f"{where} must be a number >= 0, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value:
        raise InputFileError(f"{where} must be a non-empty string, got {value!r}")
    return value


# ----------------------------------------------------------------------------- matching presets

MATCHING_FIELDS: tuple[str, ...] = (
    "scale", "cc_input_size", "mlo_input_size", "erosion_iterations", "crop_buffer", "patch_size",
)
"""The preset fields that must agree between a work folder and a model: those that decide what
a model sees (pixel scale, crop, window and patch sizes). Augmentation noise, heatmap stride,
patch architecture and the preset's name may differ."""


class PresetMismatchError(InputFileError):
    """A work folder and a model (or two models) made at different presets; names both."""


def preset_differences(a: Preset, b: Preset) -> list[str]:
    """The :data:`MATCHING_FIELDS` on which ``a`` and ``b`` differ, as ``"field a vs b"``."""
    out = []
    for key in MATCHING_FIELDS:
        x, y = getattr(a, key), getattr(b, key)
        same = abs(x - y) < 1e-9 if isinstance(x, float) else tuple(x) == tuple(y) if isinstance(x, (tuple, list)) else x == y
        if not same:
            out.append(f"{key} {_show(x)} vs {_show(y)}")
    return out


def _show(value) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_preset(preset: Preset) -> str:
    """``small (scale 0.25, CC 669x486, MLO 744x437, patch 64)``: a preset in one phrase."""
    return (
        f"{preset.name} (scale {preset.scale:g}, CC {_show(preset.cc_input_size)}, "
        f"MLO {_show(preset.mlo_input_size)}, patch {preset.patch_size})"
    )


def check_same_preset(first: Preset, first_where: str, second: Preset, second_where: str) -> None:
    """Raise :class:`PresetMismatchError` naming both when the two presets differ on a
    :data:`MATCHING_FIELDS` field (e.g. ``first_where`` = "work folder W (exams.json)",
    ``second_where`` = "model M")."""
    diff = preset_differences(first, second)
    if diff:
        raise PresetMismatchError(
            f"{first_where} was made at preset {describe_preset(first)} but {second_where} at preset "
            f"{describe_preset(second)} ({'; '.join(diff)}): preprocess the images again with "
            f"--preset auto (the model's preset) or use a model trained at the work folder's preset"
        )


def preset_for_scale(scale: float) -> Preset:
    """The named preset whose scale equals ``scale`` (e.g. the scale of a synthetic data set)."""
    for preset in PRESETS.values():
        if abs(preset.scale - scale) < 1e-9:
            return preset
    return scaled_preset(f"scale{scale:g}", scale)
