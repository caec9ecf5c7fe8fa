"""Settings of the synthetic screening-mammogram generator.

Every physical size is given in millimetres at the detector (85 um pixels at ``scale`` 1.0) and
converted to pixels with :meth:`SynthConfig.px`, so a data set generated at ``scale`` 0.25 has the
same anatomy, only sampled more coarsely (the ``small`` preset processes it consistently).

Facts and recommended values come from ``docs/synthetic-mammograms.md`` (VICTRE, M-SYNTH, Chen
2012 for the texture exponent, the paper's reader study for the finding mix).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mammokit.errors import UsageError

PIXEL_MM = 0.085
"""Pixel spacing at full scale (mm)."""

FULL_SHAPE = (3328, 2560)
"""Image size (H, W) at full scale, as the paper's images."""

MAX_12BIT = 4095

# The paper's reader-study mix (mass / calcification / asymmetry / distortion), for reference:
# malignant 21/26/12/4, benign 87/102/36/6. The defaults below give masses more weight because
# at the CPU demo's scales (1/8-1/4) a calcification particle is sub-pixel: a set drawn with the
# paper's mix would carry too little learnable malignant signal at those scales. Pass
# ``malignant_mix=PAPER_MALIGNANT_MIX`` to use the paper's proportions.
PAPER_MALIGNANT_MIX = {"mass": 21, "calcification": 26, "asymmetry": 12, "distortion": 4}
PAPER_BENIGN_MIX = {"mass": 87, "calcification": 102, "asymmetry": 36, "distortion": 6}
DEFAULT_MALIGNANT_MIX = {"mass": 50, "calcification": 25, "asymmetry": 15, "distortion": 10}
DEFAULT_BENIGN_MIX = {"mass": 50, "calcification": 40, "asymmetry": 7, "distortion": 3}

# BI-RADS density categories: prevalence in US screening and dense-area fraction ranges.
DENSITY_PREVALENCE = {"A": 0.10, "B": 0.47, "C": 0.36, "D": 0.07}
DENSITY_FRACTION = {"A": (0.05, 0.25), "B": (0.25, 0.50), "C": (0.50, 0.75), "D": (0.75, 0.90)}


@dataclass(frozen=True)
class SynthConfig:
    """All knobs of the generator.

    Attributes:
        scale: pixel scale relative to full resolution (1.0 = 85 um, 3328 x 2560 images).
        cancer_rate: probability that an exam holds a malignant finding (one breast).
        benign_rate: probability that an exam holds a benign finding (independent of cancer).
        occult_rate_malignant / occult_rate_benign: probability that a finding is occult
            (labelled but not drawn; no mask pixels), Table I of the paper: 13 % / 43 %.
        false_positive_biopsy_rate: probability that a finding-free exam was biopsied anyway.
        repeat_exam_rate: probability that a patient has a second exam (same anatomy).
        splits: train / val / test fractions, drawn per patient.
        malignant_mix / benign_mix: relative weights of finding types.
        malignant_contrast: multiplier of the intensity increment of malignant masses,
            asymmetries and distortions (1.0 = the defaults above). The CPU demo raises it: at
            1/16 scale a spiculated mass is ~10 pixels and its spicules vanish, so without a
            stronger contrast too little malignant signal survives for a few minutes of training.
        texture_beta_mean / texture_beta_std / texture_beta_range / mlo_beta_offset: power-law
            exponent of the parenchymal texture, N(3.1, 0.25) clipped to 2.5-3.5, MLO +0.1.
        dicom_monochrome1_rate / dicom_jpeg2000_rate: share of DICOM files stored inverted
            (MONOCHROME1) and JPEG 2000 lossless compressed.
    """

    scale: float = 1.0
    cancer_rate: float = 0.25
    benign_rate: float = 0.25
    occult_rate_malignant: float = 0.13
    occult_rate_benign: float = 0.43
    false_positive_biopsy_rate: float = 0.03
    repeat_exam_rate: float = 0.2
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2)
    malignant_mix: dict = field(default_factory=lambda: dict(DEFAULT_MALIGNANT_MIX))
    benign_mix: dict = field(default_factory=lambda: dict(DEFAULT_BENIGN_MIX))
    malignant_contrast: float = 1.0
    texture_beta_mean: float = 3.1
    texture_beta_std: float = 0.25
    texture_beta_range: tuple[float, float] = (2.5, 3.5)
    mlo_beta_offset: float = 0.1
    dicom_monochrome1_rate: float = 0.25
    dicom_jpeg2000_rate: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise UsageError(f"scale must be in (0, 1], got {self.scale}")
        for name in (
            "cancer_rate",
            "benign_rate",
            "occult_rate_malignant",
            "occult_rate_benign",
            "false_positive_biopsy_rate",
            "repeat_exam_rate",
            "dicom_monochrome1_rate",
            "dicom_jpeg2000_rate",
        ):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise UsageError(f"{name.replace('_', '-')} must be in [0, 1], got {value}")
        if not 0 < self.malignant_contrast <= 3:
            raise UsageError(f"malignant_contrast must be in (0, 3], got {self.malignant_contrast}")
        if len(self.splits) != 3 or any(s < 0 for s in self.splits) or abs(sum(self.splits) - 1) > 1e-6:
            raise UsageError(f"splits must be three non-negative fractions summing to 1, got {self.splits}")
        for name in ("malignant_mix", "benign_mix"):
            mix = getattr(self, name)
            unknown = set(mix) - {"mass", "calcification", "asymmetry", "distortion"}
            if unknown or not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
                raise UsageError(f"{name}: weights of mass/calcification/asymmetry/distortion, got {mix}")

    @property
    def shape(self) -> tuple[int, int]:
        """Image size (H, W) at this scale."""
        return (int(round(FULL_SHAPE[0] * self.scale)), int(round(FULL_SHAPE[1] * self.scale)))

    @property
    def px_per_mm(self) -> float:
        return self.scale / PIXEL_MM

    def px(self, mm: float) -> float:
        """Millimetres -> pixels at this scale."""
        return mm * self.px_per_mm

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
