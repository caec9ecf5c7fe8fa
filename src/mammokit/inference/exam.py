"""The whole pipeline in memory, for a service: decoded views of exams -> probabilities + heatmaps.

The batch commands work on a work folder (``preprocess`` -> ``heatmaps`` -> ``predict``, each
stage reading the previous stage's files). A server holds the decoded images of a study in memory
and wants the same answer without the folder. :func:`predict_exams_in_memory` runs the same
library functions on arrays:

1. **resize** (only when the image's pixel spacing is known and differs from the preset's by more
   than 5 %): the models were trained at ``0.085 / preset.scale`` mm per pixel (the paper's 85 um
   at scale 1), so a full-resolution image meets a small-preset model at the model's resolution;
2. **crop** + optimal centre (:func:`mammokit.preprocess.pipeline.preprocess_image`);
3. **heatmaps** (when a model takes image + heatmaps): every cropped view of every exam of the
   call goes through the patch classifier in one stream of batches
   (:func:`mammokit.heatmaps.compute_heatmaps_many`), the shortened strides seeded as
   ``mammokit heatmaps`` seeds them (by the image's work-folder name), so the maps are the same;
4. **windows + models**: ``tta`` windows per view (:func:`mammokit.data.views.make_model_inputs`,
   the stream seeded by ``(seed, exam_id)`` as in ``mammokit predict``), exams with the same
   views scored in one batch per model, averaged over draws and models.

Missing views follow :mod:`mammokit.models.breast` (a breast is predicted from the heads that see
one of its views; a breast without a view gets NaN). A view whose crop fails is rejected with
the reason and the exam goes on with the others.

Each view's :class:`ViewGeometry` maps a heatmap from the crop back onto the pixel grid of the
image that was given (undoing crop and resize; heatmaps are returned in the given orientation,
i.e. the model-frame flip is already undone).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mammokit.config import LABEL_COLUMNS, VIEWS, Preset, preset_of
from mammokit.errors import InputFileError, UsageError
from mammokit.utils.log import get_logger
from mammokit.utils.seed import derive_seed

log = get_logger(__name__)

__all__ = [
    "ExamInput", "ExamModels", "ExamResult", "ViewGeometry", "load_exam_models", "predict_exams_in_memory",
    "preset_pixel_mm", "file_sha256", "probabilities_by_breast",
]

PAPER_PIXEL_MM = 0.085
"""Pixel spacing of the paper's images (preset scale 1)."""

RESIZE_TOLERANCE = 0.05


def preset_pixel_mm(preset: Preset) -> float:
    """The pixel spacing (mm) a preset's models were trained at: 0.085 / scale."""
    return PAPER_PIXEL_MM / preset.scale


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ViewGeometry:
    """Where a view's crop lies in the image that was given.

    Attributes:
        shape: ``(H, W)`` of the given image.
        resized_shape: ``(h, w)`` after the resize to the preset's resolution (= ``shape`` when
            none was needed).
        window_location: ``(top, bottom, left, right)`` of the crop in the resized image
            (end-exclusive).
        flip: whether the models saw the view mirrored (chest wall on the right in the image).
    """

    shape: tuple[int, int]
    resized_shape: tuple[int, int]
    window_location: tuple[int, int, int, int]
    flip: bool

    @property
    def resized(self) -> bool:
        return tuple(self.shape) != tuple(self.resized_shape)

    def to_original(self, maps: np.ndarray) -> np.ndarray:
        """Crop-frame maps ``[C, h_crop, w_crop]`` (the given orientation) -> ``[C, H, W]`` float32
        on the given image's grid: zero outside the crop, bilinear resize back when the image was
        resized."""
        import cv2

        maps = np.asarray(maps, dtype=np.float32)
        top, bottom, left, right = self.window_location
        if maps.shape[-2:] != (bottom - top, right - left):
            raise ValueError(f"maps of shape {maps.shape[-2:]} do not fit the crop {self.window_location}")
        full = np.zeros((maps.shape[0], *self.resized_shape), dtype=np.float32)
        full[:, top:bottom, left:right] = maps
        if not self.resized:
            return full
        h, w = self.shape
        return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in full])


@dataclass
class ExamInput:
    """One exam for :func:`predict_exams_in_memory`.

    Attributes:
        exam_id: identifier (seeds the random streams; the StudyInstanceUID in the server).
        images: ``{view: uint16 [H, W]}`` display orientation (as :func:`mammokit.data.dicom.read_dicom_pixels`
            returns: L breasts chest wall left, R breasts chest wall right), background 0.
        pixel_mm: ``{view: row spacing in mm}`` when known (enables the resize of step 1).
    """

    exam_id: str
    images: dict[str, np.ndarray]
    pixel_mm: dict[str, float | None] = field(default_factory=dict)


@dataclass
class ExamResult:
    """What the pipeline found for one exam.

    Attributes:
        exam_id: from the input.
        probabilities: ``{column: p}`` for ``LABEL_COLUMNS`` (NaN: no view of that breast).
        views_used: views that went into the models, ``VIEWS`` order.
        rejected: ``{view: reason}`` of the given views that could not be used.
        heatmaps: ``{view: float32 [2, h, w]}`` crop-frame maps, channel 0 malignant, 1 benign,
            the given orientation (empty when no model uses heatmaps).
        geometry: ``{view: ViewGeometry}`` of the used views.
    """

    exam_id: str
    probabilities: dict[str, float]
    views_used: list[str]
    rejected: dict[str, str] = field(default_factory=dict)
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)
    geometry: dict[str, ViewGeometry] = field(default_factory=dict)

    def heatmap_on_original(self, view: str) -> np.ndarray:
        """``[2, H, W]`` (malignant, benign) on the given image's grid."""
        return self.geometry[view].to_original(self.heatmaps[view])


@dataclass
class ExamModels:
    """Models loaded once for many calls: breast-level models, optional patch classifier, and the
    settings read from their checkpoints.

    ``info`` describes them for reports: ``[{"role", "path", "arch", "sha256"}]``.
    """

    models: list[Any]
    patch_model: Any
    preset: Preset
    patch_size: int
    stride: int
    device: Any
    dtype: Any
    heatmap_dtype: Any
    heatmap_batch_size: int
    info: list[dict] = field(default_factory=list)

    @property
    def needs_heatmaps(self) -> bool:
        return any(m.in_channels == 3 for m in self.models)


def load_exam_models(
    models: Sequence[str | Path],
    patch_model: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    heatmap_dtype: str = "auto",
    heatmap_batch_size: int | None = None,
    preset: Preset | str | None = None,
) -> ExamModels:
    """Load breast-level checkpoints (and the patch classifier when one needs heatmaps); the
    preset comes from the first breast model's checkpoint unless ``preset`` is given.

    Raises:
        UsageError: no model, no patch model for a heatmap model, no preset anywhere.
        MissingFileError / CheckpointError: unreadable checkpoints.
    """
    from mammokit.heatmaps import default_batch_size
    from mammokit.inference.heatmaps import load_patch_model
    from mammokit.inference.predict import load_models
    from mammokit.models.presets import AUTO, check_against_workdir
    from mammokit.utils.device import resolve_device, resolve_dtype

    if not models:
        raise UsageError("no model given (use --model CHECKPOINT)")
    dev = resolve_device(device)
    loaded = load_models(models, dev)
    chosen = preset_of(preset) if preset is not None else next((preset_of(m.preset) for m in loaded if m.preset), None)
    if chosen is None:
        raise UsageError(f"{models[0]}: no preset recorded in the checkpoint; give one (--preset)")
    # Every breast model must record the preset run at (or be silent about it).
    check_against_workdir(AUTO if preset is None else preset, chosen, f"preset {chosen.name}",
                          [(f"model {m.path}", preset_of(m.preset)) for m in loaded])
    info = [{"role": "breast", "path": str(m.path), "arch": _arch_of(m.model), "sha256": file_sha256(m.path)}
            for m in loaded]
    patch = None
    patch_size, stride = chosen.patch_size, chosen.heatmap_stride
    if any(m.in_channels == 3 for m in loaded):
        if patch_model is None:
            raise UsageError(f"{models[0]} takes image + heatmaps inputs: give the patch classifier (--patch-model)")
        patch, meta = load_patch_model(patch_model, device=dev)
        patch_preset = preset_of(meta.get("preset"))
        if patch_preset is not None:
            patch_size, stride = patch_preset.patch_size, patch_preset.heatmap_stride
            if abs(patch_preset.scale - chosen.scale) > 1e-9:
                log.warning("patch model preset %s (scale %g) differs from the breast model's %s (scale %g)",
                            patch_preset.name, patch_preset.scale, chosen.name, chosen.scale)
        info.append({"role": "patch", "path": str(patch_model), "arch": meta.get("arch"),
                     "sha256": file_sha256(patch_model)})
    return ExamModels(
        models=loaded, patch_model=patch, preset=chosen, patch_size=patch_size, stride=stride, device=dev,
        dtype=resolve_dtype(dtype, dev, "models"), heatmap_dtype=resolve_dtype(heatmap_dtype, dev, "heatmaps"),
        heatmap_batch_size=heatmap_batch_size or (default_batch_size(patch, dev) if patch is not None else 1),
        info=info,
    )


def _arch_of(model) -> str:
    members = getattr(model, "members", None)
    if members is not None:
        return "ensemble(" + ",".join(sorted({getattr(m, "variant", type(m).__name__) for m in members})) + ")"
    return str(getattr(model, "variant", type(model).__name__))


@dataclass
class _Prepared:
    exam: ExamInput
    rejected: dict[str, str]
    crops: dict[str, np.ndarray] = field(default_factory=dict)  # uint16 [h, w], given orientation
    record: dict = field(default_factory=dict)  # exam-list style: best_center per view
    geometry: dict[str, ViewGeometry] = field(default_factory=dict)
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)


def _prepare(exam: ExamInput, preset: Preset) -> _Prepared:
    """Steps 1-2 for one exam (a failing view is rejected, never raised)."""
    import cv2

    from mammokit.preprocess.crop import CropError
    from mammokit.preprocess.pipeline import preprocess_image
    from mammokit.views import needs_flip

    prep = _Prepared(exam=exam, rejected={}, record={"exam_id": exam.exam_id, "best_center": {}})
    target = preset_pixel_mm(preset)
    for view in VIEWS:
        image = exam.images.get(view)
        if image is None:
            continue
        image = np.asarray(image)
        if image.ndim != 2 or image.dtype != np.uint16:
            prep.rejected[view] = f"expected a uint16 [H, W] image, got {image.dtype} {image.shape}"
            continue
        resized = image
        spacing = exam.pixel_mm.get(view)
        if spacing and abs(spacing / target - 1) > RESIZE_TOLERANCE:
            factor = spacing / target
            size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
            # INTER_AREA when shrinking: the mean of the covered pixels, as a lower-resolution detector.
            resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        try:
            result = preprocess_image(resized, view, "NO", preset)
        except CropError as exc:
            prep.rejected[view] = f"crop failed: {exc}"
            continue
        g = result.geometry
        prep.crops[view] = result.cropped
        prep.record["best_center"][view] = [g["best_center"]]
        prep.geometry[view] = ViewGeometry(
            shape=tuple(image.shape), resized_shape=tuple(resized.shape),
            window_location=tuple(int(v) for v in g["window_location"]), flip=needs_flip(view, "NO"),
        )
    return prep


def _heatmaps(preps: list[_Prepared], m: ExamModels, seed: int) -> None:
    """Step 3 for every crop of every exam, in one stream of patch batches."""
    from mammokit.data.manifest import image_name
    from mammokit.heatmaps import compute_heatmaps_many
    from mammokit.transforms import from_model_frame, standardize_image, to_model_frame

    items = [(p, view) for p in preps for view in p.crops]
    if not items:
        return
    inputs = [standardize_image(np.ascontiguousarray(to_model_frame(p.crops[v], v, "NO"))) for p, v in items]
    # Seeded by the image's name in a work folder, so the maps equal `mammokit run`'s.
    rngs = [random.Random(derive_seed(seed, image_name(p.exam.exam_id, v))) for p, v in items]
    maps = compute_heatmaps_many(inputs, m.patch_model, m.patch_size, m.stride, m.heatmap_batch_size, m.device,
                                 m.heatmap_dtype, rngs)
    for (p, view), hm in zip(items, maps):
        p.heatmaps[view] = np.ascontiguousarray(from_model_frame(hm.numpy(), view, "NO"))


def _model_views(p: _Prepared, heatmaps: bool) -> dict[str, np.ndarray]:
    """``{view: float32 [C, h, w]}`` in the model frame: image (+ benign, malignant heatmaps)."""
    from mammokit.transforms import to_model_frame

    out = {}
    for view, crop in p.crops.items():
        channels = [crop.astype(np.float32)]
        if heatmaps:
            channels += [p.heatmaps[view][1], p.heatmaps[view][0]]  # the models' order: benign, malignant
        out[view] = np.ascontiguousarray(to_model_frame(np.stack(channels), view, "NO"))
    return out


def predict_exams_in_memory(
    exams: Sequence[ExamInput], models: ExamModels, tta: int = 10, seed: int = 0
) -> list[ExamResult]:
    """Probabilities and heatmaps of several exams at once (module docstring). Results are in the
    order of ``exams``; an exam whose views are all rejected gets NaN probabilities and no views
    used (its ``rejected`` says why)."""
    import torch

    from mammokit.data.views import make_model_inputs
    from mammokit.utils.device import autocast

    if tta < 0:
        raise UsageError(f"tta must be >= 0, got {tta}")
    n_draws = max(tta, 1)
    preps = [_prepare(e, models.preset) for e in exams]
    with torch.inference_mode():
        if models.needs_heatmaps:
            _heatmaps(preps, models, seed)
        inputs: list[dict | None] = []
        for p in preps:
            if not p.crops:
                inputs.append(None)
                continue
            try:
                rng = np.random.default_rng(derive_seed(seed, p.exam.exam_id)) if tta > 0 else None
                inputs.append(make_model_inputs(_model_views(p, models.needs_heatmaps), p.record, models.preset, rng,
                                                n_draws, models.device, augment=tta > 0))
            except InputFileError as exc:
                for view in list(p.crops):
                    p.rejected[view] = str(exc)
                p.crops.clear()
                inputs.append(None)
        probs = [np.full(len(LABEL_COLUMNS), np.nan) for _ in preps]
        # Exams with the same views share one forward per model (draws concatenated).
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, x in enumerate(inputs):
            if x is not None:
                groups.setdefault(tuple(x), []).append(i)
        for views, idx in groups.items():
            batch = {v: torch.cat([inputs[i][v] for i in idx]) for v in views}
            per_model = []
            for m in models.models:
                x = {v: t[:, : m.in_channels] for v, t in batch.items()}
                with autocast(models.device, models.dtype):
                    per_model.append(m.model.predict_proba(x).float())
            p = torch.stack(per_model).mean(0).view(len(idx), n_draws, -1).mean(1).cpu().double().numpy()
            for row, i in enumerate(idx):
                probs[i] = p[row]
    results = []
    for prep, p in zip(preps, probs):
        used = [v for v in VIEWS if v in prep.crops]
        results.append(ExamResult(
            exam_id=prep.exam.exam_id,
            probabilities={c: float(v) for c, v in zip(LABEL_COLUMNS, p)},
            views_used=used, rejected=prep.rejected,
            heatmaps={v: prep.heatmaps[v] for v in used if v in prep.heatmaps},
            geometry={v: prep.geometry[v] for v in used},
        ))
    return results


def probabilities_by_breast(result: ExamResult) -> dict[str, dict[str, float]]:
    """``{"L": {"malignant": p, "benign": p}, "R": {...}}`` from ``result.probabilities``."""
    out: dict[str, dict[str, float]] = {}
    for column, p in result.probabilities.items():
        side, kind = column.split("_")
        out.setdefault("L" if side == "left" else "R", {})[kind] = p
    return out

