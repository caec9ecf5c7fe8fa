"""``generate``: a whole synthetic data set on disk (images, masks, manifest, labels, findings).

Layout of ``OUT`` (see docs/ARCHITECTURE.md)::

    images/<exam>_<L|R>_<CC|MLO>.png       16-bit PNG (12-bit values x 65535/4095), background 0
    masks/<stem>_malignant.png, _benign.png uint8 0/255, same size, original orientation
    manifest.csv   exam_id,view,path,patient_id,horizontal_flip,split
    labels.csv     exam_id,left_benign,right_benign,left_malignant,right_malignant,birads,biopsied,
                   density,split,finding_types
    findings.json  per exam: findings (kind, class, side, 3-D position, size, occult) with their
                   2-D centre and mask pixel count in each view of their breast
    synth.json     the arguments (seed, scale, rates...) and the generator's settings
    dicom/<exam>/<view>.dcm   with ``dicom=True``

Each exam is rendered from streams derived from (seed, exam index), so files are byte-identical
whatever ``workers`` is. Workers write their exam's files themselves (no image crosses a pipe).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mammokit.config import LABEL_COLUMNS, VIEWS
from mammokit.errors import UsageError
from mammokit.synth.config import MAX_12BIT, SynthConfig
from mammokit.synth.plan import ExamPlan, plan_dataset
from mammokit.synth.render import ViewRender, render_view
from mammokit.utils.io import write_bytes_atomic, write_csv_atomic, write_json_atomic
from mammokit.utils.log import get_logger, progress
from mammokit.utils.seed import derive_seed
from mammokit.views import View

log = get_logger(__name__)

MANIFEST_COLUMNS = ("exam_id", "view", "path", "patient_id", "horizontal_flip", "split")
LABELS_COLUMNS = ("exam_id",) + LABEL_COLUMNS + ("birads", "biopsied", "density", "split", "finding_types")


@dataclass(frozen=True)
class SynthResult:
    """What ``generate`` wrote."""

    out: Path
    n_exams: int
    n_images: int
    manifest: Path
    labels: Path
    findings: Path
    malignant_breasts: int
    benign_breasts: int
    seconds: float


def image_stem(exam_id: str, view: str) -> str:
    return f"{exam_id}_{View.parse(view).stem}"


def to_png16(image12: np.ndarray) -> np.ndarray:
    """12-bit values -> 16-bit full range (x 65535 / 4095, rounded), as the paper's PNGs."""
    return ((image12.astype(np.uint32) * 65535 + MAX_12BIT // 2) // MAX_12BIT).astype(np.uint16)


def _encode_png(array: np.ndarray, where: str) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError(f"{where}: PNG encoding failed")
    return buf.tobytes()


def render_exam(plan: ExamPlan, cfg: SynthConfig) -> dict[str, ViewRender]:
    """The four views of a planned exam, keyed by VIEWS."""
    return {view: render_view(plan, view, cfg) for view in VIEWS}


def _write_exam(job: tuple[ExamPlan, SynthConfig, str, bool, int]) -> dict:
    """Render and write one exam (runs in a worker). Returns its findings record."""
    plan, cfg, out, dicom, seed = job
    out_dir = Path(out)
    views = render_exam(plan, cfg)
    record = {"exam_id": plan.exam_id, "patient_id": plan.patient_id, "findings": []}
    for i, finding in enumerate(plan.findings):
        item = finding.to_dict()
        item["views"] = {}
        for view in VIEWS:
            entry = views[view].findings.get(i)
            if entry is not None:
                item["views"][view] = entry
        record["findings"].append(item)
    # The DICOM variants are a property of the exam (one archive, one export setting).
    drng = np.random.default_rng([derive_seed(seed, "dicom", plan.index)])
    mono1, j2k = drng.random() < cfg.dicom_monochrome1_rate, drng.random() < cfg.dicom_jpeg2000_rate
    for view, r in views.items():
        stem = image_stem(plan.exam_id, view)
        write_bytes_atomic(out_dir / "images" / f"{stem}.png", _encode_png(to_png16(r.image), stem))
        for cls in ("malignant", "benign"):
            m = getattr(r, cls).astype(np.uint8) * 255
            write_bytes_atomic(out_dir / "masks" / f"{stem}_{cls}.png", _encode_png(m, stem))
        if dicom:
            from mammokit.synth.dicom_writer import write_dicom

            write_dicom(
                out_dir / "dicom" / plan.exam_id / f"{view}.dcm",
                r.image,
                view=view,
                exam_id=plan.exam_id,
                patient_id=plan.patient_id,
                seed=seed,
                scale=cfg.scale,
                monochrome1=mono1,
                jpeg2000=j2k,
            )
    return record


def _init_worker() -> None:
    # One process per core: library threads would only oversubscribe the CPU.
    cv2.setNumThreads(1)


def generate(
    out: str | Path,
    n_exams: int,
    seed: int,
    scale: float = 1.0,
    cancer_rate: float = 0.25,
    benign_rate: float = 0.25,
    occult_rate_malignant: float = 0.13,
    occult_rate_benign: float = 0.43,
    workers: int = 1,
    dicom: bool = False,
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2),
    **settings,
) -> SynthResult:
    """Generate ``n_exams`` synthetic screening exams (four views each) into ``out``.

    Args:
        out: output folder (created; existing files of the same names are replaced).
        n_exams: number of exams.
        seed: data-set seed; the same seed and arguments give byte-identical files.
        scale: pixel scale in (0, 1] (1.0 = 85 um, 3328 x 2560 images).
        cancer_rate / benign_rate: share of exams with a malignant / benign finding.
        occult_rate_malignant / occult_rate_benign: share of findings that are occult.
        workers: processes (results do not depend on it).
        dicom: also write ``dicom/<exam>/<view>.dcm``.
        splits: train / val / test fractions (per patient).
        settings: further :class:`SynthConfig` fields (e.g. ``malignant_mix``).
    """
    cfg = SynthConfig(
        scale=scale,
        cancer_rate=cancer_rate,
        benign_rate=benign_rate,
        occult_rate_malignant=occult_rate_malignant,
        occult_rate_benign=occult_rate_benign,
        splits=tuple(splits),
        **settings,
    )
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    start = time.perf_counter()
    plans = plan_dataset(n_exams, seed, cfg)
    log.info("generating %d synthetic exams (scale %g, seed %d) into %s", n_exams, scale, seed, out)
    jobs = [(plan, cfg, str(out), dicom, seed) for plan in plans]
    bar = progress(total=n_exams, desc="synth", unit="exam")
    records: list[dict] = []
    if workers == 1:
        for job in jobs:
            records.append(_write_exam(job))
            bar.update(1)
    else:
        # spawn: workers must not inherit a parent's threads (torch, BLAS) or its state.
        with mp.get_context("spawn").Pool(min(workers, n_exams), initializer=_init_worker) as pool:
            for record in pool.imap(_write_exam, jobs, chunksize=1):  # ordered
                records.append(record)
                bar.update(1)
    bar.close()

    manifest_rows, label_rows = [], []
    for plan in plans:
        for view in VIEWS:
            manifest_rows.append(
                {
                    "exam_id": plan.exam_id,
                    "view": view,
                    "path": f"images/{image_stem(plan.exam_id, view)}.png",
                    "patient_id": plan.patient_id,
                    "horizontal_flip": "NO",
                    "split": plan.split,
                }
            )
        label_rows.append(
            {
                "exam_id": plan.exam_id,
                **plan.labels,
                "birads": plan.birads,
                "biopsied": plan.biopsied,
                "density": plan.density,
                "split": plan.split,
                "finding_types": plan.finding_types,
            }
        )
    write_csv_atomic(out / "manifest.csv", manifest_rows, MANIFEST_COLUMNS)
    write_csv_atomic(out / "labels.csv", label_rows, LABELS_COLUMNS)
    write_json_atomic(
        out / "findings.json",
        {"format": "mammokit.synth.findings", "version": 1, "scale": scale, "exams": records},
    )
    write_json_atomic(
        out / "synth.json",
        {
            "format": "mammokit.synth",
            "version": 1,
            "n_exams": n_exams,
            "seed": seed,
            "dicom": dicom,
            "config": cfg.to_dict(),
        },
    )
    seconds = time.perf_counter() - start
    result = SynthResult(
        out=out,
        n_exams=n_exams,
        n_images=4 * n_exams,
        manifest=out / "manifest.csv",
        labels=out / "labels.csv",
        findings=out / "findings.json",
        malignant_breasts=sum(p.labels["left_malignant"] + p.labels["right_malignant"] for p in plans),
        benign_breasts=sum(p.labels["left_benign"] + p.labels["right_benign"] for p in plans),
        seconds=seconds,
    )
    log.info(
        "wrote %d images of %d exams (%d malignant, %d benign breasts) in %.1f s",
        result.n_images, n_exams, result.malignant_breasts, result.benign_breasts, seconds,
    )
    return result
