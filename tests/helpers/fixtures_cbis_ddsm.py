"""A tiny CBIS-DDSM download, laid out as the NBIA Data Retriever writes it (public-datasets.md §1).

``ROOT/metadata.csv`` (NBIA columns, ``File Location`` ``./CBIS-DDSM/<Subject>/<study>/<series>``),
``ROOT/{mass,calc}_case_description_{train,test}_set.csv`` (the CSVs' exact columns; calc files
spell ``breast density`` with a space; the last path field ends with a newline inside quotes) and
``ROOT/CBIS-DDSM/<Subject ID>/<MM-DD-YYYY>-DDSM-<n>/1.000000-<Series Description>-<m>/1-1.dcm``
(also the newer ``-DDSM-NA-`` and the old ``1-<desc>-<m>/000000.dcm`` names). DICOM: Secondary
Capture, implicit VR little endian, Modality MG, Laterality (no ImageLaterality), the view in
PatientOrientation (no ViewPosition), 16-bit MONOCHROME2 full images, 8-bit 0/255 ROI masks.

Quirks built in: one lesion subject holds mask and crop as ``1-1.dcm`` / ``1-2.dcm`` in one series
with the crop first; one row swaps the mask and crop paths; one mask is smaller than its image;
a view under both a Mass- and a Calc- subject; a patient in Mass-Training and Calc-Test; a row
whose image is not on disk; an unknown pathology; a truncated full image.

:func:`make_cbis_ddsm` returns the folder and the truth computed from the spec (not by the importer).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.helpers.dicom_fixture import IMPLICIT_LE, SECONDARY_CAPTURE, breast_image, disc, write_fixture_dicom

SHAPE = (400, 300)  # rows x columns of every full image
MASS_COLUMNS = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
                "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
                "image file path", "cropped image file path", "ROI mask file path"]
CALC_COLUMNS = ["patient_id", "breast density", "left or right breast", "image view", "abnormality id",
                "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
                "image file path", "cropped image file path", "ROI mask file path"]
META_COLUMNS = ["Series UID", "Collection", "3rd Party Analysis", "Data Description URI", "Subject ID", "Study UID",
                "Study Description", "Study Date", "Series Description", "Manufacturer", "Modality", "SOP Class Name",
                "SOP Class UID", "Number of Images", "File Size", "File Location", "Download Timestamp"]


@dataclass
class Lesion:
    patient: str
    side: str  # LEFT / RIGHT
    kind: str  # mass / calcification
    pathology: str
    assessment: int
    split: str  # Training / Test
    views: tuple[str, ...] = ("CC", "MLO")
    density: int = 2


# Every patient's abnormalities (one CSV row per lesion and view).
SPEC = [
    Lesion("P_00001", "LEFT", "mass", "MALIGNANT", 5, "Training"),
    Lesion("P_00001", "RIGHT", "calcification", "BENIGN", 2, "Training"),
    Lesion("P_00002", "RIGHT", "mass", "BENIGN_WITHOUT_CALLBACK", 2, "Training"),
    Lesion("P_00003", "LEFT", "calcification", "MALIGNANT", 4, "Training"),
    Lesion("P_00003", "LEFT", "mass", "BENIGN", 3, "Training", views=("CC",)),  # L-CC under Mass- and Calc-
    Lesion("P_00004", "LEFT", "mass", "BENIGN", 3, "Training"),
    Lesion("P_00005", "RIGHT", "mass", "MALIGNANT", 5, "Training", density=3),
    Lesion("P_00006", "LEFT", "calcification", "BENIGN", 2, "Training"),
    Lesion("P_00007", "RIGHT", "mass", "MALIGNANT", 4, "Training"),
    Lesion("P_00008", "LEFT", "mass", "MALIGNANT", 5, "Training"),
    Lesion("P_00008", "RIGHT", "calcification", "BENIGN", 0, "Test"),  # patient in Training and Test
    Lesion("P_00009", "LEFT", "mass", "BENIGN", 2, "Test"),
    Lesion("P_00010", "RIGHT", "mass", "MALIGNANT", 5, "Test"),
    Lesion("P_00011", "LEFT", "calcification", "BENIGN", 2, "Training"),
    Lesion("P_00012", "RIGHT", "mass", "MALIGNANT", 4, "Training"),
    Lesion("P_00013", "LEFT", "mass", "MALIGNANT", 5, "Test"),
    Lesion("P_00013", "RIGHT", "mass", "BENIGN", 3, "Test"),
]
SWAPPED_ROW = ("P_00004", "LEFT", "CC")  # ROI mask / cropped paths swapped in the CSV
ONE_SERIES = ("P_00005", "RIGHT", "MLO")  # mask and crop in one series, crop is 1-1.dcm
SMALL_MASK = ("P_00009", "LEFT", "MLO")  # mask 360 x 300 for a 400 x 300 image
MISSING_IMAGE = ("P_00014", "LEFT", "CC")  # CSV row, nothing on disk
UNKNOWN_PATHOLOGY = ("P_00015", "RIGHT", "CC")
TRUNCATED = ("P_00011", "LEFT", "MLO")  # full image cut short


@dataclass
class CbisTruth:
    root: Path
    images: dict[tuple[str, str], Path] = field(default_factory=dict)  # (exam, view) -> kept file
    labels: dict[str, dict] = field(default_factory=dict)
    masks: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)  # (exam, view, cls) -> bool
    splits: dict[str, str] = field(default_factory=dict)  # exam -> official train/test (patient level)
    rejects: dict[str, str] = field(default_factory=dict)  # path or "<csv> line <n>" -> reason code


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(prefix="1.3.6.1.4.1.9590.100.1.2.", entropy_srcs=[str(p) for p in parts])


def _series_dir(study_dir: Path, desc: str, uid: str, style: int) -> Path:
    return study_dir / (f"1-{desc}-{uid[-5:]}" if style == 2 else f"1.000000-{desc}-{uid[-5:]}")


def _file_name(style: int, k: int = 1) -> str:
    return f"{k - 1:06d}.dcm" if style == 2 else f"1-{k}.dcm"


def make_cbis_ddsm(root: Path, metadata: bool = True) -> CbisTruth:
    root = Path(root)
    truth = CbisTruth(root)
    base = root / "CBIS-DDSM"
    meta_rows: list[dict] = []
    csv_rows: dict[tuple[str, str], list[dict]] = {}
    rng = np.random.default_rng(7)
    pictures: dict[tuple[str, str, str], np.ndarray] = {}  # one mammogram per (patient, side, view)
    lesion_discs: dict[tuple[int, str], np.ndarray] = {}
    for i, les in enumerate(SPEC):
        for view in les.views:
            cy, cx = 120 + 30 * (i % 5), (60 + 12 * (i % 4)) if les.side == "LEFT" else (240 - 12 * (i % 4))
            lesion_discs[(i, view)] = disc(SHAPE, (cy, cx), 14)
    for (i, view), d in lesion_discs.items():
        les = SPEC[i]
        key = (les.patient, les.side, view)
        union = pictures.get(key)
        pictures[key] = d if union is None else (union | d)
    images = {k: breast_image(SHAPE, k[1][0], rng, lesion=v) for k, v in sorted(pictures.items())}

    def add_series(subject: str, study_uid: str, desc: str, series_uid: str, style: int, date: str,
                   files: list[tuple[np.ndarray, dict]]) -> Path:
        study_dir = base / subject / (f"{date}-DDSM-NA-{study_uid[-5:]}" if style == 1 else f"{date}-DDSM-{study_uid[-5:]}")
        series_dir = _series_dir(study_dir, desc, series_uid, style)
        for k, (pixels, extra) in enumerate(files, start=1):
            write_fixture_dicom(series_dir / _file_name(style, k), pixels, sop_class=SECONDARY_CAPTURE,
                                transfer_syntax=IMPLICIT_LE, sop_uid=_uid(subject, series_uid, k),
                                PatientID=subject, StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
                                SeriesDescription=desc, Modality="MG", BodyPartExamined="BREAST", **extra)
        meta_rows.append({
            "Series UID": series_uid, "Collection": "CBIS-DDSM", "3rd Party Analysis": "NO",
            "Data Description URI": "https://doi.org/10.7937/K9/TCIA.2016.7O02S9CY", "Subject ID": subject,
            "Study UID": study_uid, "Study Description": "", "Study Date": date, "Series Description": desc,
            "Manufacturer": "", "Modality": "MG", "SOP Class Name": "Secondary Capture Image Storage",
            "SOP Class UID": SECONDARY_CAPTURE, "Number of Images": str(len(files)), "File Size": "1 KB",
            "File Location": "./" + series_dir.relative_to(root).as_posix(), "Download Timestamp": "2024-01-01",
        })
        return series_dir

    done_full: dict[str, tuple[str, str]] = {}
    for i, les in enumerate(SPEC):
        prefix = ("Mass" if les.kind == "mass" else "Calc") + f"-{les.split}"
        for view in les.views:
            subject = f"{prefix}_{les.patient}_{les.side}_{view}"
            style = i % 3  # 0: <date>-DDSM-<n>, 1: <date>-DDSM-NA-<n>, 2: old 1-<desc>-<m>/000000.dcm
            date = f"07-{(i % 27) + 1:02d}-2016"
            side = les.side[0]
            if subject not in done_full:
                study, series = _uid(subject, "study"), _uid(subject, "full")
                pixels = images[(les.patient, les.side, view)]
                extra = {"Laterality": side, "PatientOrientation": view}
                folder = add_series(subject, study, "full mammogram images", series, style, date, [(pixels, extra)])
                done_full[subject] = (study, series)
                path = folder / _file_name(style)
                if (les.patient, les.side, view) == TRUNCATED:
                    path.write_bytes(path.read_bytes()[:-5000])
                    truth.rejects[str(path)] = "unreadable"
                else:
                    key = (les.patient, f"{side}-{view}")
                    if key in truth.images:
                        truth.rejects[str(path)] = "duplicate"
                    else:
                        truth.images[key] = path
            study, series = done_full[subject]
            abn = 1 + sum(1 for j in range(i) if SPEC[j].patient == les.patient and SPEC[j].side == les.side
                          and SPEC[j].kind == les.kind and view in SPEC[j].views)
            lesion_subject = f"{subject}_{abn}"
            d = lesion_discs[(i, view)]
            mask = d.astype(np.uint8) * 255
            if (les.patient, les.side, view) == SMALL_MASK:
                mask = mask[:360]
            ys, xs = np.nonzero(d)
            crop = images[(les.patient, les.side, view)][ys.min() - 5 : ys.max() + 6, xs.min() - 5 : xs.max() + 6]
            lstudy = _uid(lesion_subject, "study")
            mask_uid, crop_uid = _uid(lesion_subject, "mask"), _uid(lesion_subject, "crop")
            ldate = f"08-{(i % 27) + 1:02d}-2016"
            extra = {"Laterality": side, "PatientOrientation": view}
            if (les.patient, les.side, view) == ONE_SERIES:
                folder = add_series(lesion_subject, lstudy, "ROI mask images", mask_uid, 0, ldate,
                                    [(crop, extra), (mask, extra)])
                mask_file = folder / "1-2.dcm"
                crop_uid = mask_uid
            else:
                folder = add_series(lesion_subject, lstudy, "ROI mask images", mask_uid, style, ldate, [(mask, extra)])
                mask_file = folder / _file_name(style)
                add_series(lesion_subject, lstudy, "cropped images", crop_uid, style, ldate, [(crop, extra)])
            if (les.patient, les.side, view) == SMALL_MASK:
                truth.rejects[str(mask_file)] = "mask size"
            elif (les.patient, les.side, view) != TRUNCATED:
                cls = "malignant" if les.pathology == "MALIGNANT" else "benign"
                k = (les.patient, f"{side}-{view}", cls)
                truth.masks[k] = (truth.masks[k] | d) if k in truth.masks else d.copy()
            mask_path = f"{lesion_subject}/{lstudy}/{mask_uid}/000000.dcm"
            crop_path = f"{lesion_subject}/{lstudy}/{crop_uid}/000001.dcm"
            if (les.patient, les.side, view) == SWAPPED_ROW:
                mask_path, crop_path = crop_path, mask_path
            row = {
                "patient_id": les.patient, "breast_density": str(les.density), "breast density": str(les.density),
                "left or right breast": les.side, "image view": view, "abnormality id": str(abn),
                "abnormality type": les.kind, "mass shape": "ROUND_AND_REGULAR-EGGSHELL" if les.kind == "mass" else "",
                "mass margins": "CIRCUMSCRIBED" if les.kind == "mass" else "", "calc type": "PLEOMORPHIC",
                "calc distribution": "CLUSTERED", "assessment": str(les.assessment), "pathology": les.pathology,
                "subtlety": "3", "image file path": f"{subject}/{study}/{series}/000000.dcm",
                "cropped image file path": crop_path, "ROI mask file path": mask_path + "\n",
            }
            csv_rows.setdefault((les.kind, les.split), []).append(row)

    # Rows with problems: an image not on disk, an unknown pathology.
    for (patient, side, view), pathology in ((MISSING_IMAGE, "MALIGNANT"), (UNKNOWN_PATHOLOGY, "UNKNOWN")):
        subject = f"Mass-Training_{patient}_{side}_{view}"
        row = {c: "" for c in MASS_COLUMNS}
        row.update({"patient_id": patient, "breast_density": "2", "left or right breast": side, "image view": view,
                    "abnormality id": "1", "abnormality type": "mass", "assessment": "4", "pathology": pathology,
                    "subtlety": "2", "image file path": f"{subject}/1.2.3/4.5.6/000000.dcm",
                    "cropped image file path": f"{subject}_1/1.2.3/4.5.7/000000.dcm",
                    "ROI mask file path": f"{subject}_1/1.2.3/4.5.8/000001.dcm\n"})
        csv_rows.setdefault(("mass", "Training"), []).append(row)

    for (kind, split), rows in csv_rows.items():
        name = f"{'mass' if kind == 'mass' else 'calc'}_case_description_{'train' if split == 'Training' else 'test'}_set.csv"
        columns = MASS_COLUMNS if kind == "mass" else CALC_COLUMNS
        with open(root / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for n, row in enumerate(rows, start=2):
                writer.writerow(row)
                if row["pathology"] == "UNKNOWN":
                    truth.rejects[f"{root / name} line {n}"] = "unknown value"
    # Line numbers with the embedded newline: csv.reader counts physical lines; recompute after writing.
    truth.rejects = {k: v for k, v in truth.rejects.items() if " line " not in k}
    for name in sorted(root.glob("*_case_description_*.csv")):
        with open(name, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                if row["pathology"] == "UNKNOWN":
                    truth.rejects[f"{name} line {reader.line_num}"] = "unknown value"
                if row["patient_id"] == MISSING_IMAGE[0]:
                    truth.rejects[f"{name} line {reader.line_num}"] = "missing file"
    if metadata:
        with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=META_COLUMNS)
            writer.writeheader()
            writer.writerows(meta_rows)

    # Labels from the spec: the paper's rule, every row of the breast counts.
    for les in SPEC:
        lab = truth.labels.setdefault(les.patient, {"left_benign": 0, "right_benign": 0, "left_malignant": 0,
                                                    "right_malignant": 0, "_assess": []})
        cls = "malignant" if les.pathology == "MALIGNANT" else "benign"
        lab[f"{les.side.lower()}_{cls}"] = 1
        lab["_assess"] += [les.assessment] * len(les.views)
        part = "test" if les.split == "Test" else "train"
        truth.splits[les.patient] = "test" if truth.splits.get(les.patient) == "test" else part
    for lab in truth.labels.values():
        assess = lab.pop("_assess")
        lab["birads"] = 0 if 0 in assess else (max(assess) if max(assess) <= 2 else None)
        lab["assessment"] = max(assess)
    truth.labels.pop(MISSING_IMAGE[0], None)
    return truth
