"""CMMD, the Chinese Mammography Database (TCIA), as downloaded.

ROOT holds ``CMMD_clinicaldata_revision.xlsx`` (``ID1,LeftRight,Age,number,abnormality,
classification,subtype``; one row per breast with a finding, breasts not listed are normal; read
with openpyxl, as pandas is reported to fail on it) and the tree
``CMMD/<ID1>/<MM-DD-YYYY>-<n>/1.000000-<m>/1-{1..4}.dcm`` (newer retrievers:
``<date>-NA-NA-<n>/1.000000-NA-<m>``), one study per patient.

* File order does not tell the view: laterality from ImageLaterality, view from
  ViewCodeSequence (``cranio-caudal`` / ``medio-lateral oblique``); patient = exam = PatientID
  (the ``<ID1>`` folder when the header has none).
* Labels: the sheet's ``classification`` of the breast (``Benign`` / ``Malignant``), joined on
  (ID1, ImageLaterality = LeftRight); no BI-RADS (``birads`` empty); ``abnormality`` and
  ``subtype`` per breast as ``abnormality_left`` etc.; ``age`` in the manifest.
* No official split: seeded, by patient. Images are 8-bit with VOILUTFunction SIGMOID, which
  :func:`mammokit.data.dicom.read_dicom_pixels` applies.
"""

from __future__ import annotations

from pathlib import Path

from mammokit.data.importers.base import ImageRecord, ImportRecords, empty_labels, not_layout, register, reject
from mammokit.data.importers.context import MISSING_FILE, UNKNOWN_VALUE, ImportContext
from mammokit.data.importers.tables import read_table, require_columns, where
from mammokit.data.scan import Reject

SHEET_GLOB = "CMMD_clinicaldata*.xlsx"
CLASSES = {"benign": "benign", "malignant": "malignant"}


class Cmmd:
    name = "cmmd"
    label_rule = "the clinical sheet's classification per breast (Malignant / Benign; breasts not listed normal); seeded patient split"

    def _sheet(self, root: Path) -> Path | None:
        found = sorted(root.glob(SHEET_GLOB))
        return found[-1] if found else None  # "..._revision" sorts after the first release

    def _images_root(self, root: Path) -> Path:
        return root / "CMMD" if (root / "CMMD").is_dir() else root

    def detect(self, root: Path) -> None:
        sheet = self._sheet(root)
        base = self._images_root(root)
        if sheet is None or not any(p.is_dir() and p.name[:2] in ("D1", "D2") for p in base.iterdir()):
            raise not_layout(root, self.name, "CMMD_clinicaldata_revision.xlsx and CMMD/<ID1>/ folders (D1-0001...)")

    def collect(self, root: Path, ctx: ImportContext) -> ImportRecords:
        rec = ImportRecords()
        sheet = self._sheet(root)
        table = read_table(sheet)
        require_columns(sheet, table, ("ID1", "LeftRight", "classification"))
        findings: dict[tuple[str, str], dict] = {}
        ages: dict[str, str] = {}
        for row in table:
            patient, side = row["ID1"], row["LeftRight"].upper()
            cls = CLASSES.get(row["classification"].lower())
            if not patient or side not in ("L", "R") or cls is None:
                rec.rejects.append(reject(where(sheet, row), UNKNOWN_VALUE,
                                          f"unknown value: ID1 {row['ID1']!r}, LeftRight {row['LeftRight']!r}, "
                                          f"classification {row['classification']!r}"))
                continue
            entry = findings.setdefault((patient, side), {"classes": set(), "abnormality": set(), "subtype": set(),
                                                          "where": where(sheet, row)})
            entry["classes"].add(cls)
            for column in ("abnormality", "subtype"):
                if row.get(column):
                    entry[column].add(row[column])
            if row.get("Age"):
                ages[patient] = row["Age"]

        base = self._images_root(root)
        paths = []
        folder_of: dict[str, str] = {}
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            for path in sorted(folder.rglob("*.dcm")):
                paths.append(path)
                folder_of[str(path)] = folder.name
        headers = ctx.read_headers(paths)
        seen: set[tuple[str, str]] = set()
        for path, info in headers.items():
            if isinstance(info, Reject):
                rec.rejects.append(info)
                continue
            bad = ctx.check_header(info)
            if bad is not None:
                rec.rejects.append(bad)
                continue
            patient = info.patient_id or folder_of[path]
            rec.images.append(ImageRecord(patient, info.view_name, path, patient, extra={"age": ages.get(patient, "")},
                                          rows=info.rows, columns=info.columns, mirrored=bool(info.mirrored)))
            seen.add((patient, info.laterality))
        for patient in sorted({i.exam_id for i in rec.images}):
            lab = {**empty_labels(), "birads": None}
            for side, breast in (("L", "left"), ("R", "right")):
                entry = findings.get((patient, side))
                for cls in entry["classes"] if entry else ():
                    lab[f"{breast}_{cls}"] = 1
                lab[f"abnormality_{breast}"] = ";".join(sorted(entry["abnormality"])) if entry else ""
                lab[f"subtype_{breast}"] = ";".join(sorted(entry["subtype"])) if entry else ""
            lab["age"] = ages.get(patient, "")
            rec.labels[patient] = lab
        rec.notes.append("CMMD's VOI LUT (SIGMOID, WC 128, WW 256) maps stored 0 (air) to 7812 of 65535: run "
                         "`mammokit preprocess --background-threshold 8000` so the crop finds the background")
        for (patient, side), entry in sorted(findings.items()):
            if (patient, side) not in seen:
                rec.rejects.append(reject(entry["where"], MISSING_FILE,
                                          f"sheet row for {patient} {side} but no image of that breast"))
        return rec


register(Cmmd())
