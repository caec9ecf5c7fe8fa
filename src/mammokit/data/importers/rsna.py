"""RSNA Screening Mammography Breast Cancer Detection (Kaggle 2022-23), as downloaded.

ROOT holds ``train.csv`` (one row per image), ``test.csv``, ``sample_submission.csv`` and
``train_images/<patient_id>/<image_id>.dcm`` (``test_images/`` likewise). Pixel data is JPEG 2000
lossless or JPEG lossless SV1, MONOCHROME1 or MONOCHROME2, 12 bits: all decoded by
:func:`mammokit.data.dicom.read_dicom_pixels`.

* Exam = patient = ``patient_id`` (the table has no study id; the training set holds one
  screening exam per patient). Laterality and view from the table (the headers may lack them);
  views other than CC/MLO (AT, ML, LM, LMO...) are ``special view`` rejects.
* Labels: malignant = ``cancer`` 1 on the breast (breast-level, repeated per image); benign = the
  breast was biopsied (``biopsy`` 1) and is not cancer, i.e. a biopsy-proven benign (or high-risk)
  finding. ``birads`` from ``BIRADS`` (0 if any image says 0, else the largest of 1-2; often
  empty); ``biopsied``, ``invasive``, ``implant``, ``density``, ``site_id`` and
  ``difficult_negative_case`` are kept as label columns.
* No official split: the framework's seeded patient-disjoint split.
* No lesion locations: no masks, no boxes.
* ``test.csv`` (Kaggle's test images, no labels) is not imported; the report's notes say so.
* Manifest extras: ``age`` (a float in the table, written as whole years), ``density``,
  ``site_id``, ``machine_id``, ``implant``.
"""

from __future__ import annotations

from pathlib import Path

from mammokit.data.importers._shared import age_text, parse_flag, table_image_problem, parse_number, pretraining_birads
from mammokit.data.importers.base import ImageRecord, ImportRecords, empty_labels, not_layout, register, reject
from mammokit.data.importers.context import DUPLICATE, SPECIAL_VIEW, UNKNOWN_VALUE, ImportContext
from mammokit.data.importers.tables import read_table, require_columns, where

TRAIN_CSV = "train.csv"
REQUIRED = ("patient_id", "image_id", "laterality", "view", "cancer")
VIEW_CODES = {"CC", "MLO", "AT", "ML", "LM", "LMO", "XCCL", "XCCM", "XCC", "FB", "SIO"}


class Rsna:
    name = "rsna"
    label_rule = ("malignant = breast 'cancer' 1; benign = breast biopsied ('biopsy' 1) without cancer; "
                  "no official split: seeded patient-disjoint split")

    def detect(self, root: Path) -> None:
        if not (root / TRAIN_CSV).is_file() or not (root / "train_images").is_dir():
            raise not_layout(root, self.name, f"{TRAIN_CSV} beside train_images/<patient_id>/<image_id>.dcm")

    def collect(self, root: Path, ctx: ImportContext) -> ImportRecords:
        rec = ImportRecords()
        table_path = root / TRAIN_CSV
        table = read_table(table_path)
        require_columns(table_path, table, REQUIRED)

        rows: list[tuple[dict, str, str, str]] = []  # (row, patient, lat, view)
        seen: dict[str, str] = {}
        for row in table:
            at = where(table_path, row)
            patient, image_id = row["patient_id"], row["image_id"]
            lat = row["laterality"].upper()
            view = row["view"].upper().replace(" ", "")
            cancer = parse_flag(row["cancer"])
            biopsy = parse_flag(row.get("biopsy", "0") or "0")
            bad = []
            if not patient or not image_id:
                bad.append("empty patient_id or image_id")
            if lat not in ("L", "R"):
                bad.append(f"laterality {row['laterality']!r}")
            if view not in VIEW_CODES:
                bad.append(f"view {row['view']!r}")
            if cancer is None:
                bad.append(f"cancer {row['cancer']!r} (expected 0 or 1)")
            if biopsy is None:
                bad.append(f"biopsy {row.get('biopsy')!r} (expected 0 or 1)")
            if bad:
                rec.rejects.append(reject(f"{at} ({image_id})", UNKNOWN_VALUE, "unknown value: " + ", ".join(bad)))
                continue
            self._label(rec, patient, lat, cancer, biopsy, row)
            if view not in ("CC", "MLO"):
                rec.rejects.append(reject(f"{at} ({image_id})", SPECIAL_VIEW, f"view {view} is not CC or MLO"))
                continue
            if image_id in seen:
                rec.rejects.append(reject(f"{at} ({image_id})", DUPLICATE, f"image {image_id} listed again (first {seen[image_id]})"))
                continue
            seen[image_id] = at
            rows.append((row, patient, lat, view))
        self._finish_labels(rec)

        paths = {id(r[0]): root / "train_images" / r[1] / f"{r[0]['image_id']}.dcm" for r in rows}
        headers = ctx.read_headers(paths.values())
        for row, patient, lat, view in rows:
            path = paths[id(row)]
            info = headers[str(path)]
            bad = table_image_problem(ctx, info, path, lat)
            if bad is not None:
                rec.rejects.append(bad)
                continue
            rec.images.append(ImageRecord(
                patient, f"{lat}-{view}", str(path), patient, split=None,
                extra={"age": age_text(row.get("age", "")), "density": row.get("density", "").upper(),
                       "site_id": row.get("site_id", ""), "machine_id": row.get("machine_id", ""),
                       "implant": row.get("implant", "")},
                rows=info.rows, columns=info.columns, mirrored=bool(info.mirrored)))

        test_csv = root / "test.csv"
        if test_csv.is_file():
            n = len(read_table(test_csv))
            rec.notes.append(f"test.csv: {n} images of Kaggle's test split have no labels and are not imported")
        return rec

    @staticmethod
    def _label(rec: ImportRecords, patient: str, lat: str, cancer: int, biopsy: int, row: dict) -> None:
        lab = rec.labels.setdefault(patient, {**empty_labels(), "birads": None, "biopsied": 0, "invasive": 0,
                                              "implant": "", "density": "", "site_id": "",
                                              "difficult_negative_case": "", "_birads": [], "_biopsy": set(),
                                              "_cancer": set()})
        if cancer:
            lab["_cancer"].add(lat)
        if biopsy:
            lab["_biopsy"].add(lat)
        if parse_flag(row.get("invasive", "")):
            lab["invasive"] = 1
        value = parse_number(row.get("BIRADS", ""))
        if value in (0.0, 1.0, 2.0):
            lab["_birads"].append(int(value))
        for column in ("implant", "site_id", "difficult_negative_case"):
            if row.get(column) and not lab[column]:
                lab[column] = row[column]
        density = row.get("density", "").upper()
        if density in ("A", "B", "C", "D") and density > lab["density"]:
            lab["density"] = density

    @staticmethod
    def _finish_labels(rec: ImportRecords) -> None:
        for lab in rec.labels.values():
            cancer, biopsy, birads = lab.pop("_cancer"), lab.pop("_biopsy"), lab.pop("_birads")
            for lat, side in (("L", "left"), ("R", "right")):
                lab[f"{side}_malignant"] = int(lat in cancer)
                lab[f"{side}_benign"] = int(lat in biopsy and lat not in cancer)
            lab["biopsied"] = int(bool(biopsy))
            lab["birads"] = pretraining_birads(0 if 0 in birads else (max(birads) if birads else None))


register(Rsna())
