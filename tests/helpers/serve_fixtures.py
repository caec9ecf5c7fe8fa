"""Test fixtures for the exam pipeline and the server: tiny random-init checkpoints and synthetic
MG studies as DICOM files.

The checkpoints go through the library's writer (:func:`mammokit.models.save_checkpoint`) with a
preset at 1/16 of the paper's resolution (the demo's), so the server reads its preset, patch size
and stride from them as from trained ones. The weights are random (seeded): tests check plumbing
and formats against values computed independently, not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mammokit.config import Preset, scaled_preset

SCALE = 0.0625


def tiny_preset() -> Preset:
    return scaled_preset(f"serve{SCALE:g}", SCALE, patch_arch="patchnet_small")


def make_tiny_models(out: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """``(patch_checkpoint, breast_checkpoint)``: a width-4 patchnet_small and a view-wise model
    with image + heatmaps inputs, both random-init with ``seed``."""
    from mammokit.models import create_model, save_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    preset = tiny_preset()
    torch.manual_seed(seed)
    patch = create_model("patchnet_small", num_classes=3, in_chans=1, width=4)
    patch_path = out / "patch.safetensors"
    save_checkpoint(patch_path, patch, arch="patchnet_small", model_args={"num_classes": 3, "in_chans": 1, "width": 4},
                    preset=preset)
    breast = create_model("view_wise", in_channels=3)
    breast_path = out / "breast.safetensors"
    save_checkpoint(breast_path, breast, arch="view_wise", model_args={"in_channels": 3}, preset=preset)
    return patch_path, breast_path


def make_studies(out: str | Path, n: int = 1, seed: int = 0, **settings) -> list[dict[str, Path]]:
    """``n`` synthetic four-view studies as MG DICOM: ``[{view: path}]`` (some files MONOCHROME1,
    some JPEG 2000 lossless, as the generator mixes them)."""
    from mammokit.synth import generate

    out = Path(out)
    generate(out, n_exams=n, seed=seed, scale=SCALE, dicom=True, **settings)
    studies = []
    for exam_dir in sorted((out / "dicom").iterdir()):
        studies.append({p.stem: p for p in sorted(exam_dir.glob("*.dcm"))})
    return studies
