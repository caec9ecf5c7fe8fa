"""A tiny INbreast Release 1.0 (public-datasets.md §4).

``ROOT/INbreast Release 1.0/AllDICOMs/<File Name>_<16-hex hash>_MG_<L|R>_<CC|ML>_ANON.dcm`` (the
file name says ``ML`` where the table says ``MLO``), ``AllXML/<File Name>.xml`` (Apple plists,
``Images[0].ROIs[]`` with ``Name``, ``NumberOfPoints``, ``Point_px`` ``"(x, y)"`` strings; 1-point
calcification dots) and ``INbreast.csv`` (``;``-separated, Patient ID and age ``removed``,
Acquisition date YYYYMM, integer File Name, ACR sometimes empty, Bi-Rads 1..6 with 4a/4b/4c).
Quirks: one patient imaged on two dates (two exams), an FB view, a table row without a file, a
ROI that is not a lesion (``Pectoral muscle``). The DICOM tags are UNCONFIRMED in the doc: MG For
Presentation, ImageLaterality + ViewPosition, 14 bits stored.

:func:`make_inbreast` returns the folder and the truth computed from the spec.
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tests.helpers.dicom_fixture import breast_image, write_fixture_dicom

SHAPE = (408, 332)
ORDER = ("1", "2", "3", "4a", "4b", "4c", "5", "6")
# patient -> (acquisition date, {side: Bi-Rads of both views}, lesion side or None)
SPEC = {
    "6c613a14b80a8591": ("201001", {"L": "5", "R": "1"}),
    "0a1b2c3d4e5f6071": ("200902", {"L": "2", "R": "2"}),
    "1b2c3d4e5f607182": ("201003", {"L": "1", "R": "4a"}),
    "2c3d4e5f60718293": ("200904", {"L": "3", "R": "1"}),
    "3d4e5f60718293a4": ("201005", {"L": "1", "R": "1"}),
    "4e5f60718293a4b5": ("200906", {"L": "4c", "R": "2"}),
    "5f60718293a4b5c6": ("201007", {"L": "1", "R": "3"}),
    "60718293a4b5c6d7": ("200908", {"L": "1", "R": "1"}),
    "718293a4b5c6d7e8": ("201009", {"L": "6", "R": "1"}),
    "8293a4b5c6d7e8f9": ("200910", {"L": "2", "R": "4b"}),
    "93a4b5c6d7e8f90a": ("201011", {"L": "1", "R": "1"}),
}
SECOND_VISIT = ("6c613a14b80a8591", "201112", {"L": "2", "R": "1"})  # same patient, later exam
MALIGNANT = {"4a", "4b", "4c", "5", "6"}


@dataclass
class InbreastTruth:
    root: Path
    images: dict[tuple[str, str], Path] = field(default_factory=dict)
    labels: dict[str, dict] = field(default_factory=dict)
    masks: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    patients: dict[str, str] = field(default_factory=dict)
    rejects: dict[str, str] = field(default_factory=dict)


def _plist(rois: list[tuple[str, list[tuple[float, float]]]]) -> bytes:
    items = [{"Name": name, "NumberOfPoints": len(pts), "Point_px": [f"({x:.2f}, {y:.2f})" for x, y in pts],
              "Area": 0.0, "Center": "(0, 0)", "Dev": 0.0, "IndexInImage": k, "Max": 0.0, "Mean": 0.0, "Min": 0.0,
              "Point_mm": [], "Total": 0.0, "Type": 15 if len(pts) > 2 else 19}
             for k, (name, pts) in enumerate(rois)]
    return plistlib.dumps({"Images": [{"ImageIndex": 0, "NumberOfROIs": len(items), "ROIs": items}]})


def _polygon(cy: float, cx: float, r: float, n: int = 12) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [(cx + r * np.cos(a) + 0.3, cy + r * np.sin(a) - 0.2) for a in t]


def make_inbreast(root: Path) -> InbreastTruth:
    root = Path(root)
    release = root / "INbreast Release 1.0"
    dicoms, xmls = release / "AllDICOMs", release / "AllXML"
    xmls.mkdir(parents=True, exist_ok=True)
    truth = InbreastTruth(root)
    rng = np.random.default_rng(11)
    lines = ["Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"]
    number = 20586900
    visits = [(p, d, b) for p, (d, b) in SPEC.items()] + [SECOND_VISIT]
    for vi, (patient, date, birads) in enumerate(visits):
        exam = f"{patient}_{date}"
        worst = {}
        for side in ("L", "R"):
            for view, file_view in (("CC", "CC"), ("MLO", "ML")):
                number += 1
                value = birads[side]
                lesion = None
                rois: list[tuple[str, list]] = []
                cls = "malignant" if value in MALIGNANT else ("benign" if value in ("2", "3") else None)
                cy, cx = 150 + 9 * (vi % 6), (80 if side == "L" else SHAPE[1] - 80)
                if cls:
                    poly = _polygon(cy, cx, 16)
                    dots = [(cx + 40.0 if side == "L" else cx - 40.0, cy + 60.0)]
                    rois = [("Mass", poly), ("Calcification", dots)]
                    lesion = np.zeros(SHAPE, np.uint8)
                    cv2.fillPoly(lesion, [np.rint(np.array(poly)).astype(np.int32).reshape(-1, 1, 2)], 1)
                    cv2.circle(lesion, (int(round(dots[0][0])), int(round(dots[0][1]))), 3, 1, thickness=-1)
                    lesion = lesion.astype(bool)
                    truth.masks[(exam, f"{side}-{view}", cls)] = lesion
                if vi == 0 and side == "L" and view == "CC":
                    rois.append(("Pectoral muscle", [(1.0, 1.0), (30.0, 1.0), (1.0, 60.0)]))
                    truth.rejects[f"{xmls / f'{number}.xml'} ROI 2"] = "unknown value"
                pixels = breast_image(SHAPE, side, rng, lesion=lesion, maximum=16383)
                path = dicoms / f"{number}_{patient}_MG_{side}_{file_view}_ANON.dcm"
                write_fixture_dicom(path, pixels, bits_stored=14, Modality="MG", PatientID=patient,
                                    StudyInstanceUID=f"1.2.826.0.1.{vi}", ImageLaterality=side, ViewPosition=view,
                                    PresentationIntentType="FOR PRESENTATION", Manufacturer="SIEMENS")
                if rois:
                    (xmls / f"{number}.xml").write_bytes(_plist(rois))
                acr = "" if vi % 4 == 3 else str(1 + vi % 4)
                lines.append(f"removed;removed;{side};{view};{date};{number};{acr};{value}")
                truth.images[(exam, f"{side}-{view}")] = path
                truth.patients[exam] = patient
            worst[side] = birads[side]
        lab = {f"{'left' if s == 'L' else 'right'}_{c}": int(worst[s] in (MALIGNANT if c == "malignant" else {"2", "3"}))
               for s in ("L", "R") for c in ("benign", "malignant")}
        top = max(worst.values(), key=ORDER.index)
        lab["birads"] = int(top) if top in ("1", "2") else None
        truth.labels[exam] = lab
    # An FB view and a row whose file is missing.
    number += 1
    fb = dicoms / f"{number}_{'a4b5c6d7e8f90a1b'}_MG_L_FB_ANON.dcm"
    write_fixture_dicom(fb, breast_image(SHAPE, "L", rng, maximum=16383), bits_stored=14, Modality="MG",
                        ImageLaterality="L", ViewPosition="FB", StudyInstanceUID="1.2.826.0.1.99")
    lines.append(f"removed;removed;L;FB;201001;{number};2;1")
    truth.rejects[str(fb)] = "special view"
    lines.append(f"removed;removed;R;CC;201001;{number + 1};2;1")
    truth.rejects[f"{release / 'INbreast.csv'} line {len(lines)}"] = "missing file"
    (release / "INbreast.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return truth
