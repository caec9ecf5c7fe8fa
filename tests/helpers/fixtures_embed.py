"""A tiny EMBED (Emory Breast Imaging Dataset, open 20 % release) download.

Layout::

    ROOT/tables/EMBED_OpenData_clinical.csv           one row per finding
    ROOT/tables/EMBED_OpenData_metadata.csv           one row per file
    ROOT/tables/EMBED_OpenData_clinical_reduced.csv   (fewer columns)
    ROOT/tables/EMBED_OpenData_metadata_reduced.csv
    ROOT/cohort_1/<empi_anon>/<acc_anon>/<SOPInstanceUID>.dcm, ROOT/cohort_2/...

Quirks reproduced: ``anon_dicom_path`` is the path on the releasing site's server
(``/mnt/NAS2/mammo/anon_dicom/cohort_1/...``), not under ROOT; ``asses`` letters
(A N B P S M K = BI-RADS 0 1 2 3 4 5 6); ``tissueden`` 1-4 and 5 = male; ``side`` L / R / B /
empty (B or empty = both breasts) and ``bside`` the side of the pathology; ``path_severity`` 0-6
(lower is worse) or empty; several findings of one exam; pathology recorded on the diagnostic
exam only, not on the screening exam that led to it; ``FinalImageType`` 2D and C-view;
``spot_mag`` 1 = special view; views beyond CC/MLO (ML, XCCL); ``ROI_coords`` as
``[ymin, xmin, ymax, xmax]`` boxes (y first), written as a list of lists or a tuple of tuples,
``()`` or empty when none, one box reaching outside the image; a file listed twice.

Known bad content: a listed file missing on disk, a FOR PROCESSING file, an exam with no
clinical row, an ImageLateralityFinal that is neither L nor R.

:func:`make_embed` returns an :class:`EmbedFixture` with the truth: per exam the finding rows
(side, bside, path_severity, asses), the kept images and their ROI boxes, and the reject codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mammokit.data.dicom_write import write_dicom
from tests.helpers.fixtures_breast import Lesion, breast_pixels, lesion_pair, numeric_id, write_rows

CLINICAL_COLUMNS = ["empi_anon", "acc_anon", "study_date_anon", "desc", "tissueden", "asses", "numfind", "side",
                    "bside"] + [f"path{i}" for i in range(1, 11)] + ["path_severity", "massshape", "calcfind",
                                                                        "age_at_study"]
METADATA_COLUMNS = ["anon_dicom_path", "empi_anon", "acc_anon", "StudyDescription", "SeriesDescription",
                    "FinalImageType", "ImageLateralityFinal", "ViewPosition", "spot_mag", "num_roi", "ROI_coords",
                    "match_level", "Manufacturer"]
REDUCED_CLINICAL = ["empi_anon", "acc_anon", "study_date_anon", "desc", "tissueden", "asses", "side", "bside",
                    "path_severity", "age_at_study"]
REDUCED_METADATA = ["anon_dicom_path", "empi_anon", "acc_anon", "FinalImageType", "ImageLateralityFinal",
                    "ViewPosition", "spot_mag", "ROI_coords", "Manufacturer"]
SERVER_PREFIX = "/mnt/NAS2/mammo/anon_dicom"
ASSES_LETTER = {0: "A", 1: "N", 2: "B", 3: "P", 4: "S", 5: "M", 6: "K"}


@dataclass
class EFinding:
    side: str  # "L", "R", "B" or ""
    bside: str
    path_severity: str  # "0".."6" or ""
    asses: int  # BI-RADS number (written as its letter)


@dataclass
class EImage:
    exam: str  # acc_anon
    patient: str  # empi_anon
    view: str  # "L-CC"...; the raw ImageLateralityFinal / ViewPosition are in ``lat_written`` / ``pos``
    path: Path
    rows: int
    columns: int
    image_type: str = "2D"
    spot_mag: bool = False
    lat_written: str = ""
    pos: str = ""
    rois: list[tuple[float, float, float, float]] = field(default_factory=list)  # (ymin, xmin, ymax, xmax)
    kept: bool = True
    reject: str | None = None


@dataclass
class EmbedFixture:
    root: Path
    # acc_anon -> {"patient": empi, "findings": [EFinding], "tissueden": int, "age": int, "desc": str,
    #              "cohort": "cohort_1"}
    exams: dict[str, dict] = field(default_factory=dict)
    images: list[EImage] = field(default_factory=list)
    duplicate_rows: list[str] = field(default_factory=list)  # anon_dicom_path listed twice

    def kept(self) -> list[EImage]:
        return [im for im in self.images if im.kept]


# exam name -> (cohort, patient name, date, desc, tissueden, age, findings, images)
# images: (view written "L-CC" / "L-ML" ..., image type, spot_mag, lesion kind or None, roi override)
_FOUR = [("L-CC", "2D", False), ("L-MLO", "2D", False), ("R-CC", "2D", False), ("R-MLO", "2D", False)]
_BASE = [
    # Screening exam that led to the diagnostic exam A2: BI-RADS 0, pathology only on A2.
    ("A1", "cohort_1", "pA", "2015-03-02", "MG Screen Bilat w/CAD", 3, 57, [EFinding("L", "", "", 0)],
     [(v, t, s, None, None) for v, t, s in _FOUR]),
    ("A2", "cohort_1", "pA", "2015-03-20", "MG Diagnostic Left w/CAD", 3, 57, [EFinding("L", "L", "0", 4)],
     [("L-CC", "2D", False, "malignant", None), ("L-MLO", "2D", False, "malignant", None),
      ("L-CC", "2D", True, "malignant", None), ("L-ML", "2D", False, None, None)]),
    ("B1", "cohort_1", "pB", "2016-07-11", "MG Screen Bilat w/CAD", 2, 49,
     [EFinding("R", "R", "4", 3), EFinding("L", "", "", 2)],
     [("L-CC", "2D", False, None, None), ("L-MLO", "2D", False, None, None), ("R-CC", "2D", False, "benign", "tuple"),
      ("R-MLO", "2D", False, "benign", None), ("R-XCCL", "2D", False, None, None)]),
    ("C1", "cohort_2", "pC", "2017-01-05", "MG Screen Bilat w/CAD", 1, 63, [EFinding("", "", "", 1)],
     [(v, t, s, None, None) for v, t, s in _FOUR] + [(v, "C-view", False, None, None) for v, _, _ in _FOUR]),
    ("D1", "cohort_2", "pD", "2018-09-30", "MG Diagnostic Bilateral", 4, 71,
     [EFinding("B", "L", "1", 5), EFinding("R", "R", "2", 4)],
     [("L-CC", "2D", False, "malignant", None), ("L-MLO", "2D", False, "malignant", None),
      ("R-CC", "2D", False, "benign", None), ("R-MLO", "2D", False, "benign", "outside")]),
    ("F1", "cohort_1", "pF", "2019-02-14", "MG Screen Bilat w/CAD", 5, 66,
     [EFinding("L", "L", "6", 4), EFinding("R", "R", "5", 4)],
     [("L-CC", "2D", False, None, "plain"), ("L-MLO", "2D", False, None, None), ("R-CC", "2D", False, None, None),
      ("X-MLO", "2D", False, None, None)]),
]


def _ids(name: str, patient: str) -> tuple[str, str]:
    return numeric_id("embed-acc", name, digits=16), numeric_id("embed-empi", patient, digits=8)


def make_embed(root: str | Path, size: tuple[int, int] = (96, 80), n_extra: int = 0, seed: int = 0) -> EmbedFixture:
    """Write the fixture under ``root``; ``n_extra`` more clean screening exams (malignant /
    benign / normal in turn, one patient each) for training."""
    root = Path(root)
    h, w = size
    fx = EmbedFixture(root=root)
    exams = list(_BASE)
    for i in range(n_extra):
        kind = i % 3
        side = "L" if (i // 3) % 2 == 0 else "R"
        finding = {0: EFinding(side, side, "0", 5), 1: EFinding(side, side, "4", 4), 2: EFinding("", "", "", 1)}[kind]
        lesion = {0: "malignant", 1: "benign", 2: None}[kind]
        images = [(v, t, s, lesion if v.startswith(side) else None, None) for v, t, s in _FOUR]
        exams.append((f"x{i:02d}", ("cohort_1", "cohort_2")[i % 2], f"px{i:02d}", f"2020-01-{1 + i % 28:02d}",
                      "MG Screen Bilat w/CAD", 1 + i % 4, 45 + i, [finding], images))
    clinical, metadata = [], []
    for e_index, (name, cohort, patient, date, desc, tissueden, age, findings, images) in enumerate(exams):
        acc, empi = _ids(name, patient)
        fx.exams[acc] = {"name": name, "patient": empi, "findings": findings, "tissueden": tissueden, "age": age,
                         "desc": desc, "cohort": cohort}
        for f in findings:
            paths = ["invasive ductal carcinoma" if f.path_severity == "0" else
                     ("benign" if f.path_severity == "4" else "")] + [""] * 9
            clinical.append([empi, acc, date, desc, tissueden, ASSES_LETTER[f.asses], len(findings) if f.asses > 1 else 0,
                             f.side, f.bside, *paths, f.path_severity, "", "", age])
        for i_index, (written, image_type, spot, lesion_kind, override) in enumerate(images):
            lat, pos = written.split("-")
            real_lat = lat if lat in ("L", "R") else "R"
            sop = f"1.2.826.0.1.3680043.8.498.{numeric_id('embed-sop', name, i_index, digits=12)}"
            path = root / cohort / empi / acc / f"{sop}.dcm"
            lesions: list[Lesion] = []
            rois: list[tuple[float, float, float, float]] = []
            if lesion_kind is not None and not spot:
                lesion = lesion_pair(lesion_kind, h, w, real_lat)
                lesions.append(lesion)
                x0, y0, x1, y1 = lesion.box()
                rois.append((y0, x0, y1, x1))
            if override == "outside":
                y0, x0, y1, x1 = rois[0]
                rois[0] = (y0, x0 - 20.0, h + 9.0, x1)  # past the bottom and the left edge
            if override == "plain":
                rois.append((h * 0.2, w * 0.3, h * 0.3, w * 0.4))  # an ROI on a breast without a label
            extra = {}
            if image_type != "2D":
                extra["SeriesDescription"] = f"C-View {real_lat} {pos}"
            write_dicom(path, breast_pixels(h, w, real_lat, lesions, bits=12, seed=seed * 1000 + e_index * 20 + i_index),
                        laterality=real_lat, view=pos, bits_stored=12, patient_id=empi, uid_seed=f"embed|{sop}",
                        SOPInstanceUID=sop, Manufacturer="HOLOGIC, Inc.", **extra)
            image = EImage(acc, empi, f"{real_lat}-{pos}", path, h, w, image_type, spot, lat, pos, rois)
            if spot:
                image.kept, image.reject = False, "special view"
            elif pos not in ("CC", "MLO"):
                image.kept, image.reject = False, "special view"
            elif lat not in ("L", "R"):
                image.kept, image.reject = False, "unknown value"
            elif image_type != "2D":
                image.kept, image.reject = False, "not a screening image"
            fx.images.append(image)
            metadata.append([f"{SERVER_PREFIX}/{cohort}/{empi}/{acc}/{sop}.dcm", empi, acc, desc,
                             f"{lat} {pos}" if image_type == "2D" else f"C-View {lat} {pos}", image_type,
                             lat, pos, "1" if spot else "", len(rois), _roi_text(rois, override == "tuple"),
                             "1" if rois else "", "HOLOGIC, Inc."])
    _add_bad_content(fx, clinical, metadata, size, seed)
    tables = root / "tables"
    write_rows(tables / "EMBED_OpenData_clinical.csv", CLINICAL_COLUMNS, clinical)
    write_rows(tables / "EMBED_OpenData_metadata.csv", METADATA_COLUMNS, metadata)
    write_rows(tables / "EMBED_OpenData_clinical_reduced.csv", REDUCED_CLINICAL,
               [[r[CLINICAL_COLUMNS.index(c)] for c in REDUCED_CLINICAL] for r in clinical])
    write_rows(tables / "EMBED_OpenData_metadata_reduced.csv", REDUCED_METADATA,
               [[r[METADATA_COLUMNS.index(c)] for c in REDUCED_METADATA] for r in metadata])
    return fx


def _roi_text(rois: list[tuple[float, float, float, float]], as_tuple: bool) -> str:
    if not rois:
        return "()" if as_tuple else ""
    boxes = [[int(round(v)) for v in box] for box in rois]
    if as_tuple:
        return "(" + "".join("(" + ", ".join(map(str, b)) + ")," for b in boxes) + ")"
    return "[" + ", ".join("[" + ", ".join(map(str, b)) + "]" for b in boxes) + "]"


def _add_bad_content(fx: EmbedFixture, clinical: list, metadata: list, size: tuple[int, int], seed: int) -> None:
    h, w = size
    by_name = {v["name"]: k for k, v in fx.exams.items()}
    # D1: R-CC missing on disk; L-MLO listed twice in the metadata table.
    d1 = by_name["D1"]
    for im in fx.images:
        if im.exam == d1 and im.view == "R-CC":
            im.path.unlink()
            im.kept, im.reject = False, "missing file"
    row = next(r for r in metadata if r[2] == d1 and r[6] == "L" and r[7] == "MLO")
    metadata.append(list(row))
    fx.duplicate_rows.append(row[0])
    # B1: L-MLO is FOR PROCESSING.
    b1 = by_name["B1"]
    for im in fx.images:
        if im.exam == b1 and im.view == "L-MLO":
            write_dicom(im.path, breast_pixels(h, w, "L", bits=12), laterality="L", view="MLO", bits_stored=12,
                        uid_seed="embed|raw", PresentationIntentType="FOR PROCESSING")
            im.kept, im.reject = False, "FOR PROCESSING"
    # E1: an exam in the metadata table but not in the clinical table.
    acc, empi = _ids("E1", "pE")
    for i, view in enumerate(("L-CC", "R-CC")):
        lat, pos = view.split("-")
        sop = f"1.2.826.0.1.3680043.8.498.{numeric_id('embed-sop', 'E1', i, digits=12)}"
        path = fx.root / "cohort_2" / empi / acc / f"{sop}.dcm"
        write_dicom(path, breast_pixels(h, w, lat, bits=12, seed=seed + 11), laterality=lat, view=pos, bits_stored=12,
                    uid_seed=f"embed|{sop}")
        fx.images.append(EImage(acc, empi, view, path, h, w, lat_written=lat, pos=pos, kept=False,
                                reject="unknown value"))
        metadata.append([f"{SERVER_PREFIX}/cohort_2/{empi}/{acc}/{sop}.dcm", empi, acc, "MG Screen Bilat w/CAD",
                         f"{lat} {pos}", "2D", lat, pos, "", 0, "", "", "HOLOGIC, Inc."])
