"""`mammokit embed`: the model's exam representations and their UMAP (the paper's Fig. 10).

Per exam, two representations of a breast-level model (interface in docs/ARCHITECTURE.md):

* ``columns``: the four column outputs (``forward_features``, 4 x 256) concatenated in VIEWS order;
* ``hidden``: the first fully connected layer's activations (``forward_hidden``; view-wise:
  CC and MLO, 2 x 512) concatenated in the model's output-group order.

Inputs are the deterministic window at each view's ``best_center`` (no augmentation), so the same
checkpoint gives the same vectors. Vectors are saved to ``embeddings.npz``; each representation is
projected to 2-D by UMAP (Euclidean) and plotted, coloured by the exam's label or, with readers,
coloured and sized by the readers' mean probability of malignancy (Fig. 10). UMAP is the optional
extra ``mammokit[umap]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mammokit.config import VIEWS
from mammokit.errors import InputFileError, MissingDependencyError
from mammokit.utils.log import get_logger, progress

log = get_logger(__name__)

UMAP_HINT = 'UMAP projections need the optional extra: pip install "mammokit[umap]" (umap-learn)'


class MissingOptionalDependency(MissingDependencyError):
    """An optional extra is not installed (the message says which ``pip install`` fixes it)."""


def require_umap():
    """The ``umap`` module, or MissingOptionalDependency naming ``pip install "mammokit[umap]"``."""
    try:
        import umap
    except ImportError as exc:
        raise MissingOptionalDependency(f"{UMAP_HINT}; import failed: {exc}") from None
    return umap


def project_umap(features: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP (Euclidean) of ``features`` ``[N, D]`` -> ``[N, 2]``; same seed, same projection.

    ``n_neighbors`` is capped at N - 1 so small exam sets still project.
    """
    umap = require_umap()
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 3:
        raise InputFileError(f"UMAP needs a [N, D] array with N >= 3 exams, got shape {x.shape}")
    reducer = umap.UMAP(
        n_components=2,
        metric="euclidean",
        n_neighbors=max(2, min(n_neighbors, x.shape[0] - 1)),
        min_dist=min_dist,
        random_state=seed,  # also makes UMAP single-threaded: reproducible
        init="spectral" if x.shape[0] > 10 else "random",
    )
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)


@dataclass
class EmbeddingResult:
    """What :func:`embed` computed.

    Attributes:
        exam_ids: exams embedded, ``[N]``.
        columns: column outputs ``[N, 4 * 256]``; hidden: first-FC activations ``[N, H]``.
        projections: representation name -> UMAP points ``[N, 2]`` (empty with ``project=False``).
        skipped: ``(exam_id, reason)`` of exams that could not be embedded.
        outputs: written files by role.
    """

    exam_ids: list[str]
    columns: np.ndarray
    hidden: np.ndarray
    projections: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


def extract_features(workdir: str | os.PathLike, model_ckpt: str | os.PathLike, device: str = "cpu"):
    """Per exam column outputs and first-FC activations. Returns (exam_ids, columns, hidden, skipped)."""
    import torch

    from mammokit.data.examlist import load_exams
    from mammokit.data.views import load_exam_views, make_model_inputs
    from mammokit.models.checkpoint import load_model

    workdir = Path(workdir)
    exams, meta = load_exams(workdir / "exams.json")
    from mammokit.config import workdir_preset

    preset = workdir_preset(meta, Path(workdir) / "exams.json")
    image_dir = meta.get("image_dir", "cropped")
    model, _ = load_model(model_ckpt, device=device)
    heatmaps = getattr(model, "in_channels", 1) == 3
    groups = list(getattr(model, "output_labels", {}))
    ids, cols, hids, skipped = [], [], [], []
    for exam in progress(exams, desc="embed"):
        eid = str(exam.get("exam_id"))
        try:
            views = load_exam_views(workdir, exam, heatmaps=heatmaps, image_dir=image_dir)
            missing = [v for v in VIEWS if v not in views]
            if missing:
                raise InputFileError(f"no image for {', '.join(missing)}")
            x = make_model_inputs(views, exam, preset, augment=False, device=device)
            with torch.no_grad():
                feats = model.forward_features(x)
                # BreastModel can map features to hidden activations without running the columns
                # again (halves the cost); other models go through the public forward_hidden.
                hidden = model._hidden(feats) if hasattr(model, "_hidden") else model.forward_hidden(x)
        except (OSError, ValueError, KeyError) as exc:
            skipped.append((eid, str(exc)))
            log.warning("embed: exam %s skipped: %s", eid, exc)
            continue
        order = [g for g in groups if g in hidden] or sorted(hidden)
        ids.append(eid)
        cols.append(torch.cat([feats[v] for v in VIEWS], dim=1)[0].float().cpu().numpy())
        hids.append(torch.cat([hidden[g] for g in order], dim=1)[0].float().cpu().numpy())
    if not ids:
        reasons = "; ".join(f"{e}: {r}" for e, r in skipped[:3])
        raise InputFileError(f"{workdir}: no exam could be embedded ({reasons})")
    return ids, np.stack(cols), np.stack(hids), skipped


def exam_colours(exam_ids: list[str], labels=None, readers=None, scale=None) -> tuple[np.ndarray, str, np.ndarray | None, bool]:
    """Colour (and size) per exam: with readers, the readers' mean probability of malignancy of
    the exam's more suspicious breast (per breast the mean over readers, then the max over the two
    breasts), also used as size; else with labels the exam's class (malignant > benign >
    negative); else nothing (one colour). Returns (colour, colour label, size, categorical)."""
    n = len(exam_ids)
    if readers is not None:
        from mammokit.evaluation.reader_study import detect_scale, read_readers

        reads = read_readers(readers)
        values = [v for r in reads.values() for v in r.values()]
        sc = scale if scale is not None else detect_scale(values, readers)[0]
        per_breast: dict[tuple[str, str], list[float]] = {}
        for r in reads.values():
            for k, v in r.items():
                per_breast.setdefault(k, []).append(v / sc)
        mean = np.full(n, np.nan)
        for i, e in enumerate(exam_ids):
            b = [np.mean(per_breast[(e, s)]) for s in ("L", "R") if (e, s) in per_breast]
            if b:
                mean[i] = max(b)
        if np.isnan(mean).all():
            raise InputFileError(f"{readers}: the readers scored none of the embedded exams")
        return np.nan_to_num(mean, nan=0.0), "readers' mean probability of malignancy", np.nan_to_num(mean, nan=0.0), False
    if labels is not None:
        from mammokit.evaluation.tables_io import read_labels

        t = read_labels(labels)
        idx = t.index()
        cls = []
        for e in exam_ids:
            if e not in idx:
                cls.append("unlabelled")
                continue
            i = idx[e]
            v = {c: t.values[c][i] for c in t.values}
            cls.append(
                "malignant" if v["left_malignant"] or v["right_malignant"]
                else "benign" if v["left_benign"] or v["right_benign"] else "negative"
            )
        return np.asarray(cls, dtype=object), "label", None, True
    return np.zeros(n), "", None, False


def embed(
    workdir: str | os.PathLike,
    model_ckpt: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    readers: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    seed: int = 0,
    scale: float | None = None,
    project: bool = True,
) -> EmbeddingResult:
    """Extract, save and (with ``project``) UMAP-project and plot the exams' representations.

    Writes ``OUT/embeddings.npz`` (``exam_ids``, ``columns``, ``hidden`` and, when projected,
    ``umap_columns``, ``umap_hidden``) and ``OUT/umap_columns.png``, ``OUT/umap_hidden.png``;
    ``OUT`` defaults to ``WORKDIR/embed``. Fails before any work when UMAP is wanted and missing.
    """
    from mammokit.evaluation.plots import plot_embedding
    from mammokit.utils.io import atomic_path

    if project:
        require_umap()  # fail fast: extraction can take long
    out = Path(out_dir) if out_dir is not None else Path(workdir) / "embed"
    ids, cols, hids, skipped = extract_features(workdir, model_ckpt, device)
    result = EmbeddingResult(ids, cols, hids, skipped=skipped)
    if project:
        colour, colour_label, size, categorical = exam_colours(ids, labels, readers, scale)
        for name, feats in (("columns", cols), ("hidden", hids)):
            pts = project_umap(feats, seed)
            result.projections[name] = pts
            title = {"columns": "column outputs (4 x 256)", "hidden": "first FC layer activations"}[name]
            png = plot_embedding(pts, out / f"umap_{name}.png", colour, colour_label, size, f"UMAP of {title}", categorical)
            result.outputs[f"umap_{name}"] = str(png)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"exam_ids": np.asarray(ids), "columns": cols, "hidden": hids}
    arrays.update({f"umap_{k}": v for k, v in result.projections.items()})
    with atomic_path(out / "embeddings.npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    result.outputs["npz"] = str(out / "embeddings.npz")
    return result
