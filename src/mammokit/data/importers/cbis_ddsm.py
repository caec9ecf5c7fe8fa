"""CBIS-DDSM (TCIA), as downloaded with the NBIA Data Retriever.

ROOT holds the description CSVs (``mass_case_description_{train,test}_set.csv``,
``calc_case_description_{train,test}_set.csv``), NBIA's ``metadata.csv`` and the
``CBIS-DDSM/<Subject ID>/<study>/<series>/*.dcm`` tree. Folder and file names are never parsed:
a CSV path ``<Subject ID>/<Study UID>/<Series UID>/<file>`` is mapped to a folder through
``metadata.csv`` (Subject ID, Study UID, Series UID -> File Location), or, without it, to every
DICOM file under ``CBIS-DDSM/<Subject ID>``.

* Exam = patient (``P_00001``); view from the CSV (``left or right breast``, ``image view``).
  A view listed under both a Mass- and a Calc- subject (the same mammogram twice) is kept once
  (the first subject in name order); the other copy is a ``duplicate`` reject and its lesions
  go onto the kept image.
* Labels (paper): a breast is malignant if any of its abnormalities is MALIGNANT, benign if any
  is BENIGN or BENIGN_WITHOUT_CALLBACK; it can be both. ``birads`` (pretraining class) is set
  only when every assessment is 0-2; ``assessment`` holds the worst one, ``density`` the
  breast density, ``abnormality`` the types; every abnormality was biopsied.
* Split: the official Training/Test, per patient (a patient in both goes to test).
* Masks: of a lesion subject's files (``1-1.dcm``, ``1-2.dcm``, in no fixed order) the ROI mask is
  the binary one (0 and one other value), decided by content, not by name or Series
  Description; the crop is the other. Masks are unioned per class; a mask whose size is not the
  full image's is rejected (never resized). This reads the lesion files' pixels (the full images
  are read as headers only).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from mammokit.data.importers.base import (
    ImageRecord,
    ImportRecords,
    MaskSource,
    empty_labels,
    not_layout,
    register,
    reject,
)
from mammokit.data.importers.context import (
    DUPLICATE,
    MISSING_FILE,
    UNKNOWN_VALUE,
    UNREADABLE,
    ImportContext,
    add_job,
)
from mammokit.data.importers.tables import read_table, require_columns, where
from mammokit.data.scan import Reject
from mammokit.errors import ImageReadError

SIDES = {"LEFT": "L", "RIGHT": "R"}
VIEWS = {"CC": "CC", "MLO": "MLO"}
PATHOLOGY = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign"}
CSV_GLOB = "*_case_description_*.csv"
REQUIRED = ("patient_id", "left or right breast", "image view", "abnormality id", "pathology", "image file path",
            "ROI mask file path")


def _roi_job(path: str) -> dict:
    """Is this lesion file a binary mask? ``{"binary", "rows", "columns", "bits"}``."""
    import numpy as np
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom / decoders raise many types on bad files
        raise ImageReadError(f"{path}: unreadable DICOM file ({type(exc).__name__}: {exc})") from None
    top = pixels.max() if pixels.size else 0
    binary = bool(np.all((pixels == 0) | (pixels == top)))
    return {"binary": binary, "rows": int(pixels.shape[0]), "columns": int(pixels.shape[-1]),
            "bits": int(ds.get("BitsStored") or 0)}


add_job("cbis-roi", _roi_job)


def _split_of(csv_path: Path) -> str | None:
    name = csv_path.name.lower()
    return "test" if "_test" in name else ("train" if "_train" in name else None)


def _subject(field: str) -> str:
    return field.replace("\\", "/").strip().strip("/").split("/")[0].strip()


def _uids(field: str) -> tuple[str | None, str | None]:
    parts = [p.strip() for p in field.replace("\\", "/").strip().split("/")]
    return (parts[1], parts[2]) if len(parts) >= 4 else (None, None)


class CbisDdsm:
    name = "cbis-ddsm"
    label_rule = ("malignant if any abnormality of the breast is MALIGNANT, benign if any is BENIGN or "
                  "BENIGN_WITHOUT_CALLBACK (both possible); official Training/Test split per patient")

    def _csvs(self, root: Path) -> list[Path]:
        return sorted(root.glob(CSV_GLOB))

    def detect(self, root: Path) -> None:
        if not self._csvs(root) or not ((root / "metadata.csv").is_file() or (root / "CBIS-DDSM").is_dir()):
            raise not_layout(root, self.name, "mass_/calc_case_description_{train,test}_set.csv beside metadata.csv "
                             "or a CBIS-DDSM/ folder")

    # ------------------------------------------------------------------ file locations

    def _locations(self, root: Path) -> dict[str, list[tuple[str, str, Path]]]:
        """Subject ID -> [(study uid, series uid, folder)] from metadata.csv."""
        out: dict[str, list[tuple[str, str, Path]]] = defaultdict(list)
        meta = root / "metadata.csv"
        if not meta.is_file():
            return out
        for row in read_table(meta):
            loc = row.get("File Location", "").replace("\\", "/")
            subject = row.get("Subject ID", "")
            if not loc or not subject:
                continue
            folder = root / loc.removeprefix("./")
            out[subject].append((row.get("Study UID", ""), row.get("Series UID", ""), folder))
        return out

    def _files(self, root: Path, locations, subject: str, study: str | None = None,
               series: str | None = None) -> list[Path]:
        entries = locations.get(subject)
        if entries:
            chosen = [e for e in entries if series and e[1] == series and (not study or e[0] == study)]
            folders = [e[2] for e in (chosen or entries)]
        else:
            base = root / "CBIS-DDSM" if (root / "CBIS-DDSM").is_dir() else root
            folders = [base / subject] if (base / subject).is_dir() else []
        files: list[Path] = []
        for folder in folders:
            files.extend(sorted(folder.rglob("*.dcm")))
        return files

    # ------------------------------------------------------------------ collect

    def collect(self, root: Path, ctx: ImportContext) -> ImportRecords:
        rec = ImportRecords()
        locations = self._locations(root)
        rows = []  # (csv path, row, patient, side, view, pathology label, split)
        for csv_path in self._csvs(root):
            table = read_table(csv_path)
            require_columns(csv_path, table, REQUIRED)
            split = _split_of(csv_path)
            for row in table:
                side = SIDES.get(row["left or right breast"].upper())
                view = VIEWS.get(row["image view"].upper())
                label = PATHOLOGY.get(row["pathology"].upper())
                bad = [f"{col} {row[col]!r}" for col, ok in (("left or right breast", side), ("image view", view),
                                                             ("pathology", label)) if ok is None]
                if not row["patient_id"] or not row["image file path"]:
                    bad.append("empty patient_id or image file path")
                if bad:
                    rec.rejects.append(reject(where(csv_path, row), UNKNOWN_VALUE, "unknown value: " + ", ".join(bad)))
                    continue
                rows.append((csv_path, row, row["patient_id"], side, view, label, split))

        # Labels: every valid row counts, even when its image is missing (the label is the breast's).
        for csv_path, row, patient, side, view, label, split in rows:
            lab = rec.labels.setdefault(patient, {**empty_labels(), "birads": None, "assessment": "", "density": "",
                                                  "abnormality": "", "biopsied": 1, "_assess": [], "_types": set()})
            breast = "left" if side == "L" else "right"
            lab[f"{breast}_{label}"] = 1
            try:
                lab["_assess"].append(int(float(row.get("assessment", ""))))
            except ValueError:
                pass
            density = row.get("breast_density") or row.get("breast density") or ""
            if density and (not lab["density"] or density > lab["density"]):
                lab["density"] = density
            if row.get("abnormality type"):
                lab["_types"].add(row["abnormality type"])
        for lab in rec.labels.values():
            assess = lab.pop("_assess")
            lab["abnormality"] = ";".join(sorted(lab.pop("_types")))
            if assess:
                lab["assessment"] = str(max(assess))
                lab["birads"] = 0 if 0 in assess else (max(assess) if max(assess) <= 2 else None)

        # Full images: one per full-image subject.
        subjects: dict[str, tuple] = {}
        for entry in rows:
            subjects.setdefault(_subject(entry[1]["image file path"]), entry)
        image_file: dict[str, Path] = {}
        for subject, (csv_path, row, *_rest) in sorted(subjects.items()):
            study, series = _uids(row["image file path"])
            files = self._files(root, locations, subject, study, series)
            if not files:
                rec.rejects.append(reject(where(csv_path, row), MISSING_FILE,
                                          f"no DICOM file for subject {subject} ({row['image file path']})"))
                continue
            image_file[subject] = files[0]
        headers = ctx.read_headers(image_file.values())
        kept: dict[tuple[str, str], str] = {}  # (exam, view) -> subject whose image is kept
        image_of_subject: dict[str, ImageRecord] = {}
        for subject, path in sorted(image_file.items()):
            csv_path, row, patient, side, view, _label, split = subjects[subject]
            info = headers[str(path)]
            if isinstance(info, Reject):
                rec.rejects.append(info)
                continue
            bad = ctx.check_header(info, need_laterality=False, need_view=False)
            if bad is None and info.laterality and info.laterality != side:
                bad = reject(path, UNKNOWN_VALUE, f"header Laterality {info.laterality}, CSV says {row['left or right breast']}")
            if bad is not None:
                rec.rejects.append(bad)
                continue
            name = f"{side}-{view}"
            image = ImageRecord(patient, name, str(path), patient, split=split,
                                extra={"density": row.get("breast_density") or row.get("breast density") or "",
                                       "subject": subject},
                                rows=info.rows, columns=info.columns, mirrored=bool(info.mirrored))
            first = kept.get((patient, name))
            if first is not None:
                rec.rejects.append(reject(path, DUPLICATE, f"{patient} {name} again (subject {subject}; kept {first})"))
                image_of_subject[subject] = image_of_subject[first]
                continue
            kept[(patient, name)] = subject
            image_of_subject[subject] = image
            rec.images.append(image)

        # Lesions: the binary file of each lesion subject is its mask.
        lesion_files: dict[int, list[Path]] = {}
        for i, (csv_path, row, *_rest) in enumerate(rows):
            if _subject(row["image file path"]) not in image_of_subject:
                continue
            subject = _subject(row["ROI mask file path"] or row.get("cropped image file path", ""))
            lesion_files[i] = self._files(root, locations, subject) if subject else []
        roi = ctx.run_job("cbis-roi", [p for files in lesion_files.values() for p in files], desc="ROI files")
        for i, files in sorted(lesion_files.items()):
            csv_path, row, patient, side, view, label, _split = rows[i]
            image = image_of_subject[_subject(row["image file path"])]
            if not files:
                rec.rejects.append(reject(where(csv_path, row), MISSING_FILE,
                                          f"no DICOM file for lesion {row['ROI mask file path']}"))
                continue
            results = {str(p): roi[str(p)] for p in files}
            errors = [(p, r["error"]) for p, r in results.items() if "error" in r]
            for p, err in errors:
                rec.rejects.append(reject(p, UNREADABLE, err))
            masks = [p for p, r in results.items() if r.get("binary")]
            if not masks:
                if not errors:
                    rec.rejects.append(reject(where(csv_path, row), UNKNOWN_VALUE,
                                              f"no binary ROI mask among {', '.join(map(str, files))}"))
                continue
            same = [p for p in masks if (results[p]["rows"], results[p]["columns"]) == (image.rows, image.columns)]
            mask = (same or masks)[0]
            rec.masks.append(MaskSource(image.exam_id, image.view, label, path=mask, where=where(csv_path, row)))
        return rec


register(CbisDdsm())
