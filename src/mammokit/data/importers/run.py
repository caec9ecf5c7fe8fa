"""``run_import``: one public data set folder -> manifest, labels, masks, boxes and a report.

Outputs in ``DIR`` (every file written atomically):

* ``manifest.csv``: ``exam_id,view,path,patient_id,split`` + the set's extra columns, one row per
  kept image (absolute paths into ROOT);
* ``labels.csv``: ``exam_id,left_benign,right_benign,left_malignant,right_malignant,birads``, the
  set's other labels, ``split``, ``patient_id``, one row per exam with a kept image;
* ``masks/<exam>_<L|R>_<CC|MLO>_{malignant,benign}.png`` (see :mod:`.write`), ``boxes.csv``;
* ``import_report.json``: counts, exams with missing views and every reject with its reason;
* ``.import_cache.jsonl``: the resume cache of the header reader.

Images of one (exam, view) beyond the first are kept (the manifest allows several); masks belong
to the first. A file listed twice is a ``duplicate`` reject.
"""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mammokit.config import VIEWS
from mammokit.data.importers.base import ImageRecord, ImportFormatError, ImportRecords
from mammokit.data.importers.registry import get_importer
from mammokit.data.importers.context import DUPLICATE, MISSING_FILE, UNKNOWN_VALUE, UNREADABLE, ImportContext
from mammokit.data.importers.split import assign_splits
from mammokit.data.importers.write import (
    clip_boxes,
    missing_views,
    write_boxes,
    write_import_labels,
    write_import_manifest,
    write_masks,
)
from mammokit.data.scan import Reject
from mammokit.errors import InputFileError
from mammokit.utils.io import write_json_atomic
from mammokit.utils.log import get_logger

log = get_logger(__name__)

REPORT_FORMAT = "mammokit.import.report"
FATAL_IN_STRICT = (UNREADABLE, MISSING_FILE)


@dataclass
class ImportResult:
    """What :func:`run_import` wrote; ``report`` is the content of ``import_report.json``."""

    out: Path
    report: dict
    records: ImportRecords
    splits: dict[str, str]

    @property
    def manifest(self) -> Path:
        return self.out / "manifest.csv"

    @property
    def labels(self) -> Path:
        return self.out / "labels.csv"

    @property
    def masks(self) -> Path:
        return self.out / "masks"

    @property
    def boxes(self) -> Path:
        return self.out / "boxes.csv"


def _dedupe(images: list[ImageRecord]) -> tuple[list[ImageRecord], list[Reject]]:
    seen: dict[str, ImageRecord] = {}
    kept, rejects = [], []
    for image in images:
        key = os.path.realpath(image.path)
        if key in seen:
            first = seen[key]
            rejects.append(Reject(image.path, DUPLICATE, f"listed again (first as {first.exam_id} {first.view})"))
            continue
        seen[key] = image
        kept.append(image)
    return kept, rejects


def _check_labels(records: ImportRecords, images: list[ImageRecord]) -> tuple[list[ImageRecord], list[Reject]]:
    kept, rejects = [], []
    for image in images:
        if image.exam_id in records.labels:
            kept.append(image)
        else:
            rejects.append(Reject(image.path, UNKNOWN_VALUE, f"exam {image.exam_id} has no labels row"))
    for exam_id, row in records.labels.items():
        if row.get("birads") not in (None, 0, 1, 2):
            raise ValueError(f"importer bug: exam {exam_id} birads {row['birads']!r} is not 0/1/2/None")
    return kept, rejects


def _report(fmt: str, root: Path, out: Path, importer, records: ImportRecords, images: list[ImageRecord],
            labels: dict[str, dict], splits: dict[str, str], mask_counts: dict[str, int], boxes, rejects,
            ctx: ImportContext, seconds: float) -> dict:
    exams = sorted({i.exam_id for i in images})
    lacking = missing_views(images)
    by_split = Counter(splits[e] for e in exams)
    breasts = {f"{side}_{cls}": sum(int(labels[e].get(f"{side}_{cls}") or 0) for e in exams)
               for cls in ("malignant", "benign") for side in ("left", "right")}
    codes = Counter(r.code for r in rejects)
    return {
        "format": REPORT_FORMAT,
        "dataset": fmt,
        "root": str(root.resolve()),
        "out": str(out.resolve()),
        "label_rule": importer.label_rule,
        "exams": len(exams),
        "images": len(images),
        "patients": len({i.patient_id for i in images}),
        "views": {v: sum(1 for i in images if i.view == v) for v in VIEWS},
        "splits": {s: by_split.get(s, 0) for s in ("train", "val", "test")},
        "classes": {
            "malignant_breasts": breasts["left_malignant"] + breasts["right_malignant"],
            "benign_breasts": breasts["left_benign"] + breasts["right_benign"],
            "exams_malignant": sum(1 for e in exams if labels[e]["left_malignant"] or labels[e]["right_malignant"]),
            "exams_benign": sum(1 for e in exams if labels[e]["left_benign"] or labels[e]["right_benign"]),
            "mask_files": mask_counts,
            "boxes": dict(sorted(Counter(b.label for b in boxes).items())),
        },
        "missing_views": {"exams": len(lacking), "by_exam": dict(sorted(lacking.items()))},
        "rejects": {
            "total": len(rejects),
            "by_reason": dict(sorted(codes.items())),
            "items": [{"path": r.path, "reason": r.code, "detail": r.reason} for r in rejects],
        },
        "notes": records.notes,
        "headers": {"read": ctx.stats["read"], "from_cache": ctx.stats["cached"], "workers": ctx.workers},
        "seconds": round(seconds, 3),
        "machine": platform.node(),
    }


def format_summary(report: dict) -> str:
    """The short printed summary of an import report."""
    c = report["classes"]
    lines = [
        f"{report['dataset']}: {report['images']} images in {report['exams']} exams of {report['patients']} patients "
        f"(train {report['splits']['train']}, val {report['splits']['val']}, test {report['splits']['test']} exams)",
        f"  malignant breasts {c['malignant_breasts']}, benign breasts {c['benign_breasts']}; "
        f"masks: malignant {c['mask_files'].get('malignant', 0)}, benign {c['mask_files'].get('benign', 0)}; "
        f"boxes {sum(c['boxes'].values())}",
        f"  exams with missing views: {report['missing_views']['exams']}",
    ]
    rej = report["rejects"]
    if rej["total"]:
        reasons = ", ".join(f"{k} {n}" for k, n in rej["by_reason"].items())
        lines.append(f"  rejected: {rej['total']} ({reasons}); see {Path(report['out']) / 'import_report.json'}")
    else:
        lines.append("  rejected: 0")
    return "\n".join(lines)


def run_import(
    fmt: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    workers: int = 1,
    seed: int = 0,
    strict: bool = False,
    resume: bool = True,
) -> ImportResult:
    """Import data set ``root`` of format ``fmt`` into ``out`` (see the module docstring).

    Raises:
        ImportFormatError: unknown format, or ``root`` is not that format's layout.
        InputFileError: ``strict`` and a file was unreadable or missing; or no usable image.
    """
    start = time.perf_counter()
    importer = get_importer(fmt)
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise ImportFormatError(f"{root}: folder not found; expected a {fmt} download")
    importer.detect(root)
    out.mkdir(parents=True, exist_ok=True)
    ctx = ImportContext(out=out, workers=max(1, int(workers)), seed=seed, strict=strict, resume=resume)
    records = importer.collect(root, ctx)
    rejects = list(records.rejects)
    images, more = _dedupe(records.images)
    rejects += more
    images, more = _check_labels(records, images)
    rejects += more
    images.sort(key=lambda i: (i.exam_id, VIEWS.index(i.view), i.path))
    exams = list(dict.fromkeys(i.exam_id for i in images))
    patients = {i.exam_id: i.patient_id for i in images}
    labels = {e: records.labels[e] for e in exams}
    official: dict[str, set[str]] = {}
    for image in images:  # an exam's images may carry different official splits (CBIS mass / calc)
        official.setdefault(image.exam_id, set()).update([image.split] if image.split else [])
    splits = assign_splits(patients, official, labels, seed=seed)

    by_view: dict[tuple[str, str], ImageRecord] = {}
    for image in images:
        by_view.setdefault((image.exam_id, image.view), image)
    boxes, more = clip_boxes(records.boxes, by_view)
    rejects += more
    mask_counts, more = write_masks(out, records.masks, by_view, resume=resume)
    rejects += more
    rejects.sort(key=lambda r: (r.path, r.code))

    report = _report(fmt, root, out, importer, records, images, labels, splits, mask_counts, boxes, rejects, ctx,
                     time.perf_counter() - start)
    write_json_atomic(out / "import_report.json", report)
    if strict:
        bad = [r for r in rejects if r.code in FATAL_IN_STRICT]
        if bad:
            raise InputFileError(f"{bad[0].path}: {bad[0].reason} ({len(bad)} unreadable or missing files; "
                                 f"see {out / 'import_report.json'})")
    if not images:
        raise InputFileError(f"{root}: no usable images ({len(rejects)} rejected; see {out / 'import_report.json'})")
    write_import_manifest(out / "manifest.csv", images, splits)
    write_import_labels(out / "labels.csv", labels, splits, patients)
    write_boxes(out / "boxes.csv", boxes)
    log.info("import %s: %d images, %d exams, %d rejected in %.1f s", fmt, len(images), len(exams), len(rejects),
             report["seconds"])
    return ImportResult(out, report, records, splits)
