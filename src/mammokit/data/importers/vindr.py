"""VinDr-Mammo (PhysioNet 1.0.0), as downloaded.

ROOT holds ``breast-level_annotations.csv`` (one row per image), ``finding_annotations.csv`` (one
row per finding, ``['No Finding']`` rows without a box), ``metadata.csv`` (DICOM attribute names
as headers) and ``images/<study_id>/<image_id>.dicom``. Tables are read by column name.

* Exam = patient = ``study_id`` (the set has no patient id; the study is the only grouping key).
  Laterality and view from the table (``laterality`` L/R, ``view_position`` CC/MLO); another view
  is a ``special view`` reject, an unreadable value an ``unknown value`` reject.
* Labels: VinDr-Mammo has **no pathology**. A breast's BI-RADS is the worst ``breast_birads``
  over its images; malignant = BI-RADS 4 or 5, benign = BI-RADS 2 or 3. This is a radiologist's
  *suspicion* label, not a biopsy result. ``birads`` (pretraining class) is the exam's worst
  BI-RADS when it is 1 or 2; ``assessment``, ``left_birads`` and ``right_birads`` keep the numbers,
  ``density`` the densest breast (A-D).
* Split: the official ``training`` / ``test`` (by study, so by patient), val carved from training.
* Boxes (boxes.csv): ``xmin, ymin, xmax, ymax`` of each finding, in the image's original pixels
  (clipped to the image by the writer), labelled by the finding's own ``finding_birads``:
  4-5 malignant, 2-3 benign. Findings without finding BI-RADS (lymph node, skin and nipple
  findings) and ``['No Finding']`` rows give no box; their count is in the report's notes.
* Manifest extras: ``density`` (the breast's), ``age`` (``Patient's Age`` of metadata.csv, e.g.
  ``053Y``), ``manufacturer``. metadata.csv names ``SOP Instance UID`` twice; the first one is the
  image id.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

from mammokit.data.importers._shared import (
    age_text,
    table_image_problem,
    oriented_box,
    parse_number,
    pretraining_birads,
    worst_birads,
)
from mammokit.data.importers.base import Box, ImageRecord, ImportRecords, empty_labels, not_layout, register, reject
from mammokit.data.importers.context import DUPLICATE, SPECIAL_VIEW, UNKNOWN_VALUE, ImportContext
from mammokit.data.importers.tables import read_table, require_columns, where

BREAST_CSV = "breast-level_annotations.csv"
FINDING_CSV = "finding_annotations.csv"
METADATA_CSV = "metadata.csv"
REQUIRED = ("study_id", "image_id", "laterality", "view_position", "breast_birads", "split")
SPLITS = {"training": "train", "test": "test"}
OTHER_VIEWS = {"ML", "LM", "LMO", "XCCL", "XCCM", "XCC", "AT", "FB", "SIO", "RL", "RM", "TAN", "CV"}


def _birads(text: str) -> int | None:
    """``BI-RADS 4`` (also ``4``) -> 4; VinDr uses 1-5 only."""
    match = re.fullmatch(r"(?:BI-?RADS\s*)?([1-5])", str(text).strip(), flags=re.IGNORECASE)
    return int(match.group(1)) if match else None


def _density(text: str) -> str:
    match = re.fullmatch(r"(?:DENSITY\s*)?([A-D])", str(text).strip(), flags=re.IGNORECASE)
    return match.group(1).upper() if match else ""


def _categories(text: str) -> list[str]:
    """``"['Mass', 'Suspicious Calcification']"`` -> the list; a bare name -> [name]."""
    text = str(text).strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return [text]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [str(value).strip()]


class VindrMammo:
    name = "vindr-mammo"
    label_rule = ("no pathology in VinDr-Mammo: malignant = breast BI-RADS 4 or 5, benign = BI-RADS 2 or 3 "
                  "(a suspicion label, not a biopsy result); official training/test split by study")

    def detect(self, root: Path) -> None:
        if not (root / BREAST_CSV).is_file() or not (root / "images").is_dir():
            raise not_layout(root, self.name, f"{BREAST_CSV}, {FINDING_CSV}, {METADATA_CSV} and "
                             "images/<study_id>/<image_id>.dicom")

    def _metadata(self, root: Path) -> dict[str, dict[str, str]]:
        path = root / METADATA_CSV
        if not path.is_file():
            return {}
        out = {}
        for row in read_table(path):
            # "SOP Instance UID" appears twice; the first (unsuffixed) one is the image id.
            image_id = row.get("SOP Instance UID", "")
            if image_id:
                out[image_id] = row
        return out

    def collect(self, root: Path, ctx: ImportContext) -> ImportRecords:
        rec = ImportRecords()
        table_path = root / BREAST_CSV
        table = read_table(table_path)
        require_columns(table_path, table, REQUIRED)
        meta = self._metadata(root)

        # 1. Rows: validate, label every breast, list the images to read.
        breast_birads: dict[tuple[str, str], list[int]] = {}
        breast_density: dict[tuple[str, str], str] = {}
        rows: list[tuple[dict, str, str, str, str]] = []  # (row, study, lat, view, split)
        seen: dict[str, str] = {}
        for row in table:
            at = where(table_path, row)
            study, image_id = row["study_id"], row["image_id"]
            lat = row["laterality"].upper()
            view = row["view_position"].upper().replace(" ", "")
            birads = _birads(row["breast_birads"])
            split = SPLITS.get(row["split"].lower())
            bad = []
            if not study or not image_id:
                bad.append("empty study_id or image_id")
            if lat not in ("L", "R"):
                bad.append(f"laterality {row['laterality']!r}")
            if birads is None:
                bad.append(f"breast_birads {row['breast_birads']!r} (expected BI-RADS 1-5)")
            if split is None:
                bad.append(f"split {row['split']!r} (expected training or test)")
            if view not in ("CC", "MLO") and view not in OTHER_VIEWS:
                bad.append(f"view_position {row['view_position']!r}")
            if bad:
                rec.rejects.append(reject(f"{at} ({image_id})", UNKNOWN_VALUE, "unknown value: " + ", ".join(bad)))
                continue
            breast_birads.setdefault((study, lat), []).append(birads)
            density = _density(row.get("breast_density", ""))
            breast_density[(study, lat)] = max(breast_density.get((study, lat), ""), density)
            if view not in ("CC", "MLO"):
                rec.rejects.append(reject(f"{at} ({image_id})", SPECIAL_VIEW, f"view {view} is not CC or MLO"))
                continue
            if image_id in seen:
                rec.rejects.append(reject(f"{at} ({image_id})", DUPLICATE, f"image {image_id} listed again (first {seen[image_id]})"))
                continue
            seen[image_id] = at
            rows.append((row, study, lat, view, split))

        # 2. Labels per study (every valid row counts, also when its file is missing).
        for (study, lat), values in breast_birads.items():
            lab = rec.labels.setdefault(study, {**empty_labels(), "birads": None, "assessment": "", "left_birads": "",
                                                "right_birads": "", "density": ""})
            worst = max(values)
            side = "left" if lat == "L" else "right"
            lab[f"{side}_birads"] = str(worst)
            lab[f"{side}_malignant"] = int(worst >= 4)
            lab[f"{side}_benign"] = int(worst in (2, 3))
        for study, lab in rec.labels.items():
            numbers = [int(lab[k]) for k in ("left_birads", "right_birads") if lab[k]]
            assessment = worst_birads(numbers)
            lab["assessment"] = "" if assessment is None else str(assessment)
            lab["birads"] = pretraining_birads(assessment)
            lab["density"] = max(breast_density.get((study, "L"), ""), breast_density.get((study, "R"), ""))

        # 3. Headers (in parallel, resumable).
        paths = {id(r[0]): root / "images" / r[1] / f"{r[0]['image_id']}.dicom" for r in rows}
        headers = ctx.read_headers(paths.values())
        kept: dict[tuple[str, str], ImageRecord] = {}
        for row, study, lat, view, split in rows:
            path = paths[id(row)]
            info = headers[str(path)]
            bad = table_image_problem(ctx, info, path, lat)
            if bad is not None:
                rec.rejects.append(bad)
                continue
            m = meta.get(row["image_id"], {})
            image = ImageRecord(
                study, f"{lat}-{view}", str(path), study, split=split,
                extra={"density": _density(row.get("breast_density", "")), "age": age_text(m.get("Patient's Age", "")),
                       "manufacturer": m.get("Manufacturer", "") or m.get("Manufacturer's Model Name", "")},
                rows=info.rows, columns=info.columns, mirrored=bool(info.mirrored))
            rec.images.append(image)
            kept.setdefault((study, image.view), image)
        self._boxes(root, rec, kept)
        return rec

    def _boxes(self, root: Path, rec: ImportRecords, kept: dict[tuple[str, str], ImageRecord]) -> None:
        path = root / FINDING_CSV
        if not path.is_file():
            rec.notes.append(f"{FINDING_CSV} not found: no lesion boxes")
            return
        unused: Counter = Counter()
        for row in read_table(path):
            categories = _categories(row.get("finding_categories", ""))
            if not categories or categories == ["No Finding"]:
                continue
            coords = [parse_number(row.get(k, "")) for k in ("xmin", "ymin", "xmax", "ymax")]
            lat = row.get("laterality", "").upper()
            view = row.get("view_position", "").upper()
            image = kept.get((row.get("study_id", ""), f"{lat}-{view}"))
            fb = _birads(row.get("finding_birads", ""))
            if image is None:
                unused["of an image not imported"] += 1
            elif any(c is None for c in coords):
                unused["without box coordinates"] += 1
            elif fb is None or fb < 2:
                unused["without finding BI-RADS 2-5 (lymph node, skin, nipple findings)"] += 1
            else:
                box = Box(image.exam_id, image.view, "malignant" if fb >= 4 else "benign", *coords)
                rec.boxes.append(oriented_box(box, image.mirrored, image.columns))
        for why, n in sorted(unused.items()):
            rec.notes.append(f"{FINDING_CSV}: {n} finding rows {why} give no box")


register(VindrMammo())
