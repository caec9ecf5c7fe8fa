"""A tiny RSNA Screening Mammography Breast Cancer Detection (Kaggle 2022-23) download.

Layout::

    ROOT/train.csv     site_id,patient_id,image_id,laterality,view,age,cancer,biopsy,invasive,
                       BIRADS,implant,density,machine_id,difficult_negative_case
    ROOT/test.csv      site_id,patient_id,image_id,laterality,view,age,implant,machine_id,prediction_id
    ROOT/sample_submission.csv   prediction_id,cancer
    ROOT/train_images/<patient_id>/<image_id>.dcm
    ROOT/test_images/<patient_id>/<image_id>.dcm

Quirks reproduced: numeric ids, age a float (``61.0``) or empty, BIRADS and density often empty,
``True`` / ``False`` difficult_negative_case, breast-level ``cancer`` repeated per image, views
beyond CC/MLO (AT, ML, LM, LMO), an implant patient, pixel data in JPEG 2000 lossless
(1.2.840.10008.1.2.4.90) and JPEG lossless SV1 (.4.70), MONOCHROME1 and MONOCHROME2, 12 bits
stored, multi-valued windows, a SIGMOID VOI LUT function, headers without ImageLaterality or
ViewPosition (the CSV is the reference).

Known bad content: a listed file missing on disk, a row whose ``cancer`` is empty, a row whose
laterality is neither L nor R. Kept: a second image of a view (repeat exposure), a patient with
three views only (a missing view is not a reject).

:func:`make_rsna` returns a :class:`RsnaFixture` with the truth: every train.csv row as written,
which are kept, and the expected reject code per image id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mammokit.data.dicom_write import write_dicom
from tests.helpers.fixtures_breast import WINDOW_12BIT, breast_pixels, lesion_pair, numeric_id, write_rows

TRAIN_COLUMNS = ["site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy", "invasive",
                 "BIRADS", "implant", "density", "machine_id", "difficult_negative_case"]
TEST_COLUMNS = ["site_id", "patient_id", "image_id", "laterality", "view", "age", "implant", "machine_id", "prediction_id"]
J2K = "1.2.840.10008.1.2.4.90"
JPEG_SV1 = "1.2.840.10008.1.2.4.70"


@dataclass
class RRow:
    """One train.csv row as written (strings, "" = empty) and what the import must make of it."""

    site_id: str
    patient_id: str
    image_id: str
    laterality: str
    view: str
    age: str
    cancer: str
    biopsy: str
    invasive: str
    birads: str
    implant: str
    density: str
    machine_id: str
    difficult: str
    path: Path
    syntax: str
    photometric: str
    kept: bool = True
    reject: str | None = None


@dataclass
class RsnaFixture:
    root: Path
    rows: list[RRow] = field(default_factory=list)
    test_rows: int = 0

    def kept(self) -> list[RRow]:
        return [r for r in self.rows if r.kept]


# patient name -> (site, age, machine, birads, density, implant, {breast: (cancer, biopsy, invasive)},
#                  views, syntax, photometric, sigmoid)
_BASE = [
    ("p0", "2", "61.0", "29", "", "", "0", {"L": ("1", "1", "1"), "R": ("0", "0", "0")},
     ["L-CC", "L-MLO", "R-CC", "R-MLO"], J2K, "MONOCHROME1", False),
    ("p1", "1", "55.0", "21", "1", "B", "0", {"L": ("0", "0", "0"), "R": ("0", "0", "0")},
     ["L-CC", "L-MLO", "R-CC", "R-MLO"], JPEG_SV1, "MONOCHROME2", False),
    ("p2", "1", "", "93", "0", "C", "0", {"L": ("0", "0", "0"), "R": ("0", "1", "0")},
     ["L-CC", "L-MLO", "R-CC", "R-MLO"], J2K, "MONOCHROME2", True),
    ("p3", "2", "48.0", "48", "2", "", "1", {"L": ("0", "0", "0"), "R": ("0", "0", "0")},
     ["L-CC", "L-MLO", "R-CC", "R-MLO", "L-AT", "R-ML", "L-LM", "R-LMO"], JPEG_SV1, "MONOCHROME1", False),
    ("p4", "1", "70.0", "49", "", "D", "0", {"L": ("1", "1", "0"), "R": ("0", "0", "0")},
     ["L-CC", "L-MLO", "R-CC", "R-MLO"], J2K, "MONOCHROME2", False),
    ("p5", "2", "44.0", "29", "1", "A", "0", {"L": ("0", "0", "0"), "R": ("0", "0", "0")},
     ["L-CC", "L-MLO", "R-CC"], JPEG_SV1, "MONOCHROME2", False),
]


def make_rsna(root: str | Path, size: tuple[int, int] = (96, 80), n_extra: int = 0, seed: int = 0) -> RsnaFixture:
    """Write the fixture under ``root``; ``n_extra`` more clean patients (cancer / biopsied
    benign / normal in turn) for training."""
    root = Path(root)
    h, w = size
    fx = RsnaFixture(root=root)
    patients = list(_BASE)
    for i in range(n_extra):
        kind = i % 3
        side = "L" if (i // 3) % 2 == 0 else "R"
        flags = {0: ("1", "1", "1"), 1: ("0", "1", "0"), 2: ("0", "0", "0")}[kind]
        breasts = {"L": ("0", "0", "0"), "R": ("0", "0", "0")}
        breasts[side] = flags
        patients.append((f"x{i:02d}", str(1 + i % 2), f"{45 + i}.0", "29", "", "", "0", breasts,
                         ["L-CC", "L-MLO", "R-CC", "R-MLO"], (J2K, JPEG_SV1)[i % 2], ("MONOCHROME1", "MONOCHROME2")[i % 2],
                         False))
    rows: list[list] = []
    for p_index, (name, site, age, machine, birads, density, implant, breasts, views, syntax, photometric, sigmoid) in enumerate(patients):
        patient_id = numeric_id("rsna-patient", name, digits=5)
        for view in views:
            lat, kind = view.split("-")
            image_id = numeric_id("rsna-image", name, view, digits=9)
            cancer, biopsy, invasive = breasts[lat]
            lesions = []
            if cancer == "1":
                lesions = [lesion_pair("malignant", h, w, lat)]
            elif biopsy == "1":
                lesions = [lesion_pair("benign", h, w, lat)]
            path = root / "train_images" / patient_id / f"{image_id}.dcm"
            _write_image(path, breast_pixels(h, w, lat, lesions, bits=12, seed=seed * 1000 + p_index * 10 + len(rows)),
                         lat, kind, patient_id, syntax, photometric, sigmoid, header_views=p_index % 2 == 0)
            row = RRow(site, patient_id, image_id, lat, kind, age, cancer, biopsy, invasive, birads, implant, density,
                       machine, "False" if cancer == "1" or biopsy == "0" else "True", path, syntax, photometric)
            if kind not in ("CC", "MLO"):
                row.kept, row.reject = False, "special view"
            fx.rows.append(row)
            rows.append(row)
    _add_bad_content(fx, size, seed)
    write_rows(root / "train.csv", TRAIN_COLUMNS, [_csv_row(r) for r in fx.rows])
    _write_test_split(fx, size)
    return fx


def _csv_row(r: RRow) -> list[str]:
    return [r.site_id, r.patient_id, r.image_id, r.laterality, r.view, r.age, r.cancer, r.biopsy, r.invasive,
            r.birads, r.implant, r.density, r.machine_id, r.difficult]


def _write_image(path: Path, pixels, lat: str, kind: str, patient_id: str, syntax: str, photometric: str,
                 sigmoid: bool, header_views: bool) -> None:
    stored = 4095 - pixels if photometric == "MONOCHROME1" else pixels
    extra: dict = {"WindowCenter": [WINDOW_12BIT["center"], 1500.0], "WindowWidth": [WINDOW_12BIT["width"], 2500.0]}
    if sigmoid:
        # A sigmoid never reaches 0: the air is marked as padding (stored 0) so it is 0 after all.
        extra.update(VOILUTFunction="SIGMOID", PixelPaddingValue=0)
    if not header_views:
        # Half the files carry neither ImageLaterality nor ViewPosition: the CSV is the reference.
        extra.update(ImageLaterality=None, ViewPosition=None, ViewCodeSequence=None)
    write_dicom(path, stored, laterality=lat, view=kind if kind in ("CC", "MLO") else "CC", bits_stored=12,
                photometric=photometric, patient_id=patient_id, transfer_syntax=syntax,
                uid_seed=f"rsna|{path.name}", **extra)


def _add_bad_content(fx: RsnaFixture, size: tuple[int, int], seed: int) -> None:
    h, w = size
    by_view = {(r.patient_id, f"{r.laterality}-{r.view}"): r for r in fx.rows}
    p4 = numeric_id("rsna-patient", "p4", digits=5)
    # p4: R-MLO missing on disk.
    missing = by_view[(p4, "R-MLO")]
    missing.path.unlink()
    missing.kept, missing.reject = False, "missing file"
    # p4: a second L-CC image (repeat exposure): kept (the manifest allows several per view).
    first = by_view[(p4, "L-CC")]
    repeat_id = numeric_id("rsna-image", "p4", "L-CC", "repeat", digits=9)
    path = fx.root / "train_images" / p4 / f"{repeat_id}.dcm"
    _write_image(path, breast_pixels(h, w, "L", bits=12, seed=seed + 3), "L", "CC", p4, J2K, "MONOCHROME2", False, True)
    fx.rows.append(RRow(first.site_id, p4, repeat_id, "L", "CC", first.age, first.cancer, first.biopsy, first.invasive,
                        first.birads, first.implant, first.density, first.machine_id, first.difficult, path, J2K,
                        "MONOCHROME2"))
    # p6: cancer empty on one row (unknown value), laterality "B" on another (unknown value).
    p6 = numeric_id("rsna-patient", "p6", digits=5)
    for view, cancer, lat_written in (("L-CC", "0", "L"), ("L-MLO", "", "L"), ("R-CC", "0", "B"), ("R-MLO", "0", "R")):
        lat, kind = view.split("-")
        image_id = numeric_id("rsna-image", "p6", view, digits=9)
        path = fx.root / "train_images" / p6 / f"{image_id}.dcm"
        _write_image(path, breast_pixels(h, w, lat, bits=12, seed=seed + 4), lat, kind, p6, JPEG_SV1, "MONOCHROME2",
                     False, True)
        ok = cancer != "" and lat_written in ("L", "R")
        fx.rows.append(RRow("1", p6, image_id, lat_written, kind, "52.0", cancer, "0", "0", "1", "0", "B", "21",
                            "False", path, JPEG_SV1, "MONOCHROME2", kept=ok, reject=None if ok else "unknown value"))


def _write_test_split(fx: RsnaFixture, size: tuple[int, int]) -> None:
    """Kaggle's visible test split: four images of one patient, no labels."""
    h, w = size
    patient_id = numeric_id("rsna-patient", "test", digits=5)
    rows, sub = [], []
    for view in ("L-CC", "L-MLO", "R-CC", "R-MLO"):
        lat, kind = view.split("-")
        image_id = numeric_id("rsna-image", "test", view, digits=9)
        _write_image(fx.root / "test_images" / patient_id / f"{image_id}.dcm", breast_pixels(h, w, lat, bits=12),
                     lat, kind, patient_id, J2K, "MONOCHROME2", False, True)
        rows.append(["2", patient_id, image_id, lat, kind, "81", "0", "21", f"{patient_id}_{lat}"])
    write_rows(fx.root / "test.csv", TEST_COLUMNS, rows)
    write_rows(fx.root / "sample_submission.csv", ["prediction_id", "cancer"],
               [[f"{patient_id}_L", "0.021"], [f"{patient_id}_R", "0.021"]])
    fx.test_rows = len(rows)
