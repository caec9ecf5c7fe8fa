"""A tiny CMMD download (public-datasets.md §5).

``ROOT/CMMD_clinicaldata_revision.xlsx`` (``ID1,LeftRight,Age,number,abnormality,classification,
subtype``, one row per breast with a finding) and ``ROOT/CMMD/<ID1>/<MM-DD-YYYY>-<n>/1.000000-<m>/
1-{1..4}.dcm`` (every third patient with the newer ``<date>-NA-NA-<n>/1.000000-NA-<m>`` names);
patients with one imaged breast have only ``1-1.dcm, 1-2.dcm``; the file order does not follow
the views. DICOM: Digital Mammography For Presentation, ImageLaterality, the view only in
ViewCodeSequence (399162004 cranio-caudal / 399368009 medio-lateral oblique), MONOCHROME2, 8 bits
stored, VOILUTFunction SIGMOID with WindowCenter 128 / WindowWidth 256.
Quirks added: a sheet row for a breast without images, an unknown classification value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.helpers.dicom_fixture import breast_image, code_item, disc, write_fixture_dicom

SHAPE = (400, 334)
VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
# ID1 -> (age, {side: classification or None (normal)}, imaged sides)
SPEC = {
    "D1-0001": ("44", {"R": "Benign"}, "LR"),
    "D1-0002": ("51", {"L": "Malignant"}, "LR"),
    "D1-0003": ("60", {"L": "Malignant", "R": "Benign"}, "LR"),
    "D1-0004": ("38", {}, "LR"),
    "D1-0005": ("47", {"R": "Malignant"}, "R"),  # one imaged breast: 1-1.dcm, 1-2.dcm
    "D1-0006": ("55", {"L": "Benign"}, "LR"),
    "D1-0007": ("62", {"R": "Malignant"}, "LR"),
    "D1-0008": ("41", {"L": "Benign"}, "L"),
    "D2-0001": ("58", {"L": "Malignant"}, "LR"),
    "D2-0002": ("49", {"R": "Benign"}, "LR"),
    "D2-0003": ("66", {"R": "Malignant"}, "LR"),
    "D2-0004": ("53", {}, "LR"),
    "D2-0005": ("45", {"L": "Malignant", "R": "Malignant"}, "LR"),
}
EXTRA_ROWS = [("D2-0009", "L", "Malignant", "no image"), ("D1-0004", "R", "Suspicious", "unknown value")]


@dataclass
class CmmdTruth:
    root: Path
    images: dict[tuple[str, str], Path] = field(default_factory=dict)
    labels: dict[str, dict] = field(default_factory=dict)
    rejects: dict[str, str] = field(default_factory=dict)


def make_cmmd(root: Path) -> CmmdTruth:
    import openpyxl

    root = Path(root)
    truth = CmmdTruth(root)
    rng = np.random.default_rng(5)
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"])
    for pi, (patient, (age, findings, sides)) in enumerate(SPEC.items()):
        n, m = 10000 + 37 * pi, 20000 + 53 * pi
        date = f"07-{pi + 1:02d}-2010"
        newer = pi % 3 == 2
        series = root / "CMMD" / patient / (f"{date}-NA-NA-{n}" if newer else f"{date}-{n}") / (
            f"1.000000-NA-{m}" if newer else f"1.000000-{m}")
        views = [(s, v) for s in sides for v in ("CC", "MLO")]
        order = list(rng.permutation(len(views)))  # file order does not follow the views
        for k, idx in enumerate(order, start=1):
            side, view = views[idx]
            lesion = disc(SHAPE, (180, 90 if side == "L" else SHAPE[1] - 90), 15) if side in findings else None
            pixels = breast_image(SHAPE, side, rng, lesion=lesion, bright=50000, maximum=255).astype(np.uint8)
            path = series / f"1-{k}.dcm"
            write_fixture_dicom(path, pixels, Modality="MG", PatientID=patient, PatientAge=f"0{age}Y",
                                StudyInstanceUID=f"1.3.6.1.4.1.9590.100.1.2.{n}", SeriesInstanceUID=f"1.3.6.1.{m}",
                                ImageLaterality=side, ViewCodeSequence=[code_item(*VIEW_CODES[view])],
                                PresentationIntentType="FOR PRESENTATION", WindowCenter=128, WindowWidth=256,
                                VOILUTFunction="SIGMOID", Manufacturer="GE MEDICAL SYSTEMS")
            truth.images[(patient, f"{side}-{view}")] = path
        lab = {"left_benign": 0, "right_benign": 0, "left_malignant": 0, "right_malignant": 0}
        for side, cls in findings.items():
            kind = ["mass", "calcification", "both"][pi % 3]
            ws.append([patient, side, int(age), 2, kind, cls, "Luminal A" if cls == "Malignant" else None])
            lab[f"{'left' if side == 'L' else 'right'}_{cls.lower()}"] = 1
        truth.labels[patient] = lab
    for patient, side, cls, reason in EXTRA_ROWS:
        ws.append([patient, side, 50, 2, "mass", cls, None])
        truth.rejects[f"{root / 'CMMD_clinicaldata_revision.xlsx'} line {ws.max_row}"] = (
            "missing file" if reason == "no image" else "unknown value")
    book.save(root / "CMMD_clinicaldata_revision.xlsx")
    return truth
