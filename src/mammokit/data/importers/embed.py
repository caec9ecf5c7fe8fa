"""EMBED (Emory Breast Imaging Dataset, open 20 % release), as downloaded.

ROOT holds ``tables/EMBED_OpenData_clinical.csv`` (one row per finding) and
``tables/EMBED_OpenData_metadata.csv`` (one row per file), or their ``*_reduced.csv`` versions
(used when the full ones are absent), and ``<cohort>/<empi_anon>/<acc_anon>/<SOPInstanceUID>.dcm``.

* Files: ``anon_dicom_path`` is the path on the releasing site's server; it is resolved under
  ROOT by its trailing components (``cohort_1/<empi>/<acc>/<file>.dcm``, then shorter).
* Exam = ``acc_anon``, patient = ``empi_anon``. Laterality from ``ImageLateralityFinal``, view from
  ``ViewPosition``. Rejects: ``spot_mag`` 1 and views other than CC/MLO (``special view``),
  ``FinalImageType`` other than 2D, e.g. C-view images synthesised from tomosynthesis (``not a
  screening image``: only full-field 2D images are imported), exams without a clinical row and
  unreadable laterality (``unknown value``), a file listed twice (``duplicate``).
* Labels from ``path_severity`` (0 invasive cancer, 1 non-invasive cancer, 2 high-risk, 3
  borderline, 4 benign, 5 normal tissue, 6 non-breast cancer): a breast is malignant if any of the
  exam's findings on it has severity 0 or 1, benign if any has 2, 3 or 4 (both possible);
  severities 5 and 6 and findings without pathology set neither. A finding's breast is ``bside``
  (the side of the pathology) when given, else ``side``; B or empty means both breasts.
  Pathology is taken as recorded on each exam: it is sometimes recorded only on the diagnostic
  exam, not on the screening exam that led to it, and is not carried over.
  ``birads``: the exam's most severe ``asses`` (A N B P S M K = BI-RADS 0-6) when 0-2;
  ``assessment`` keeps it; ``path_severity`` the exam's lowest; ``biopsied`` 1 when any finding has
  a pathology result; ``density`` from ``tissueden`` (1-4 = A-D; 5 = male, left empty).
* Boxes (boxes.csv): ``ROI_coords`` boxes ``[ymin, xmin, ymax, xmax]`` (y first; a list of lists
  or a tuple of tuples) in original pixels, labelled malignant when the breast is malignant, else
  benign when it is benign; ROIs on a breast with neither label give no box (counted in the notes).
* No official split: the framework's seeded patient-disjoint split (the two cohorts share no
  patients).
* Manifest extras: ``density``, ``age`` (``age_at_study``), ``manufacturer``, ``cohort``.
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from pathlib import Path, PurePosixPath

from mammokit.data.importers._shared import (
    age_text,
    oriented_box,
    parse_flag,
    parse_number,
    pretraining_birads,
    worst_birads,
)
from mammokit.data.importers.base import Box, ImageRecord, ImportRecords, empty_labels, not_layout, register, reject
from mammokit.data.importers.context import DUPLICATE, OTHER, SPECIAL_VIEW, UNKNOWN_VALUE, ImportContext
from mammokit.data.importers.tables import read_table, require_columns, where
from mammokit.data.scan import Reject

CLINICAL = "EMBED_OpenData_clinical"
METADATA = "EMBED_OpenData_metadata"
CLINICAL_REQUIRED = ("empi_anon", "acc_anon", "side", "path_severity", "asses")
METADATA_REQUIRED = ("anon_dicom_path", "empi_anon", "acc_anon", "ImageLateralityFinal", "ViewPosition")
ASSES = {"A": 0, "N": 1, "B": 2, "P": 3, "S": 4, "M": 5, "K": 6}
DENSITY = {"1": "A", "2": "B", "3": "C", "4": "D"}
MALIGNANT, BENIGN = {0, 1}, {2, 3, 4}


def _table(root: Path, stem: str) -> Path | None:
    for folder in (root / "tables", root):
        for name in (f"{stem}.csv", f"{stem}_reduced.csv"):
            if (folder / name).is_file():
                return folder / name
    return None


def _sides(text: str) -> tuple[str, ...]:
    t = str(text).strip().upper()
    return (t,) if t in ("L", "R") else ("L", "R")  # B or empty: both breasts


def parse_rois(text: str) -> list[tuple[float, float, float, float]] | None:
    """``"[[y0, x0, y1, x1], ...]"`` / ``"((y0, x0, y1, x1),)"`` -> boxes; empty / ``()`` -> [];
    unreadable -> None."""
    t = str(text).strip()
    if not t or t in ("()", "[]", "nan", "None"):
        return []
    try:
        value = ast.literal_eval(t)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
        value = [value]
    boxes = []
    for item in value if isinstance(value, (list, tuple)) else [None]:
        if not isinstance(item, (list, tuple)) or len(item) != 4 or not all(isinstance(v, (int, float)) for v in item):
            return None
        boxes.append(tuple(float(v) for v in item))
    return boxes


class _Resolver:
    """Maps ``anon_dicom_path`` (a path on the releasing server) to a file under ROOT by its last
    k components, trying first the k that worked for the previous path."""

    def __init__(self, root: Path):
        self.root = root
        self.k = 4

    def __call__(self, text: str) -> Path:
        parts = [p for p in PurePosixPath(str(text).strip().replace("\\", "/")).parts if p not in ("/", "")]
        if not parts:
            return self.root / "<empty anon_dicom_path>"
        order = [self.k] + [k for k in (4, 5, 3, 2, 1) if k != self.k]
        for k in order:
            if k <= len(parts):
                candidate = self.root.joinpath(*parts[-k:])
                if os.path.isfile(candidate):
                    self.k = k
                    return candidate
        return self.root.joinpath(*parts[-min(4, len(parts)):])


class Embed:
    name = "embed"
    label_rule = ("path_severity per breast (bside, else side; B/empty = both): 0-1 malignant, 2-4 benign "
                  "(high-risk, borderline, benign); no official split: seeded patient-disjoint split")

    def detect(self, root: Path) -> None:
        if _table(root, CLINICAL) is None or _table(root, METADATA) is None:
            raise not_layout(root, self.name, f"tables/{CLINICAL}.csv and tables/{METADATA}.csv (or their _reduced "
                             "versions) beside <cohort>/<empi_anon>/<acc_anon>/*.dcm")

    def collect(self, root: Path, ctx: ImportContext) -> ImportRecords:
        rec = ImportRecords()
        clinical_path, metadata_path = _table(root, CLINICAL), _table(root, METADATA)
        clinical = read_table(clinical_path)
        require_columns(clinical_path, clinical, CLINICAL_REQUIRED)
        metadata = read_table(metadata_path)
        require_columns(metadata_path, metadata, METADATA_REQUIRED)
        ages = self._labels(rec, clinical)

        resolve = _Resolver(root)
        rows: list[tuple[dict, Path, str]] = []
        seen: dict[str, str] = {}
        for row in metadata:
            at = where(metadata_path, row)
            path = resolve(row["anon_dicom_path"])
            lat = row["ImageLateralityFinal"].upper()
            view = row["ViewPosition"].upper().replace(" ", "")
            image_type = row.get("FinalImageType", "2D").strip() or "2D"
            exam = row["acc_anon"]
            if str(path) in seen:
                rec.rejects.append(reject(f"{at} ({path.name})", DUPLICATE, f"file listed again (first {seen[str(path)]})"))
                continue
            seen[str(path)] = at
            if parse_flag(row.get("spot_mag", "")) == 1:
                rec.rejects.append(reject(path, SPECIAL_VIEW, "spot_mag 1: spot compression / magnification view"))
            elif view and view not in ("CC", "MLO"):
                rec.rejects.append(reject(path, SPECIAL_VIEW, f"view {view} is not CC or MLO"))
            elif image_type.upper().replace("-", "") != "2D":
                rec.rejects.append(reject(path, OTHER, f"FinalImageType {image_type}: only 2D (FFDM) images are "
                                                      "imported (C-view is synthesised from tomosynthesis)"))
            elif lat not in ("L", "R") or not view:
                rec.rejects.append(reject(path, UNKNOWN_VALUE, f"unknown value: ImageLateralityFinal {row['ImageLateralityFinal']!r}, "
                                                               f"ViewPosition {row['ViewPosition']!r}"))
            elif exam not in rec.labels:
                rec.rejects.append(reject(path, UNKNOWN_VALUE, f"exam {exam} has no row in {clinical_path.name}"))
            else:
                rows.append((row, path, f"{lat}-{view}"))

        headers = ctx.read_headers(p for _, p, _ in rows)
        first: dict[tuple[str, str], ImageRecord] = {}
        unused: Counter = Counter()
        for row, path, view in rows:
            info = headers[str(path)]
            if isinstance(info, Reject):
                rec.rejects.append(info)
                continue
            bad = ctx.check_header(info, need_laterality=False, need_view=False)
            if bad is not None:
                rec.rejects.append(bad)
                continue
            exam = row["acc_anon"]
            cohort = path.relative_to(root).parts[0] if path.is_relative_to(root) and len(path.relative_to(root).parts) > 3 else ""
            image = ImageRecord(exam, view, str(path), row["empi_anon"] or exam, split=None,
                                extra={"density": rec.labels[exam]["density"], "age": ages.get(exam, ""),
                                       "manufacturer": row.get("Manufacturer", ""), "cohort": cohort},
                                rows=info.rows, columns=info.columns, mirrored=bool(info.mirrored))
            rec.images.append(image)
            if (exam, view) in first:
                continue  # boxes belong to the view's first image
            first[(exam, view)] = image
            rois = parse_rois(row.get("ROI_coords", ""))
            if rois is None:
                unused[f"with unreadable ROI_coords {row.get('ROI_coords')!r}"] += 1
                continue
            side = "left" if view.startswith("L") else "right"
            lab = rec.labels[exam]
            label = "malignant" if lab[f"{side}_malignant"] else ("benign" if lab[f"{side}_benign"] else None)
            for y0, x0, y1, x1 in rois:
                if label is None:
                    unused["on a breast without a malignant or benign label"] += 1
                    continue
                rec.boxes.append(oriented_box(Box(exam, view, label, x0, y0, x1, y1), image.mirrored, image.columns))
        for why, n in sorted(unused.items()):
            rec.notes.append(f"{metadata_path.name}: {n} ROI boxes {why} give no box")
        return rec

    @staticmethod
    def _labels(rec: ImportRecords, clinical: list[dict]) -> dict[str, str]:
        ages: dict[str, str] = {}
        assess: dict[str, list[int]] = {}
        severities: dict[str, list[int]] = {}
        for row in clinical:
            exam = row["acc_anon"]
            if not exam:
                continue
            lab = rec.labels.setdefault(exam, {**empty_labels(), "birads": None, "assessment": "", "path_severity": "",
                                               "biopsied": 0, "density": ""})
            if row.get("age_at_study") and exam not in ages:
                ages[exam] = age_text(row["age_at_study"])
            density = DENSITY.get(str(row.get("tissueden", "")).strip().split(".")[0], "")
            if density > lab["density"]:
                lab["density"] = density
            letter = row["asses"].strip().upper()[:1]
            if letter in ASSES:
                assess.setdefault(exam, []).append(ASSES[letter])
            severity = parse_number(row["path_severity"])
            if severity is None or int(severity) != severity or not 0 <= severity <= 6:
                continue
            severity = int(severity)
            severities.setdefault(exam, []).append(severity)
            lab["biopsied"] = 1
            sides = _sides(row.get("bside", "")) if row.get("bside", "").strip() else _sides(row["side"])
            for lat in sides:
                side = "left" if lat == "L" else "right"
                if severity in MALIGNANT:
                    lab[f"{side}_malignant"] = 1
                elif severity in BENIGN:
                    lab[f"{side}_benign"] = 1
        for exam, lab in rec.labels.items():
            worst = worst_birads(assess.get(exam, []))
            lab["assessment"] = "" if worst is None else str(worst)
            lab["birads"] = pretraining_birads(worst)
            if severities.get(exam):
                lab["path_severity"] = str(min(severities[exam]))
        return ages


register(Embed())
