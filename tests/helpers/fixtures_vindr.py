"""A tiny VinDr-Mammo (PhysioNet 1.0.0) download, laid out exactly as the data set's docs say.

Layout::

    ROOT/breast-level_annotations.csv   study_id,series_id,image_id,laterality,view_position,
                                        height,width,breast_birads,breast_density,split
    ROOT/finding_annotations.csv        the same + finding_categories,finding_birads,xmin,ymin,
                                        xmax,ymax (columns in another order: read by name)
    ROOT/metadata.csv                   DICOM attribute names; "SOP Instance UID" twice
    ROOT/LICENSE.txt, ROOT/SHA256SUMS.txt
    ROOT/images/<study_id>/<image_id>.dicom

Quirks reproduced: 32-hex ids, no patient id (study is the group), ``BI-RADS n`` /
``DENSITY X`` spellings repeated on every image of a breast, ``training`` / ``test`` splits,
categories as Python-list strings, ``['No Finding']`` rows with empty boxes, findings without
finding BI-RADS (skin / nipple / lymph node), a box reaching outside the image, MONOCHROME1 files
with PixelPaddingValue and multi-valued windows, Laterality and ImageLaterality both set, the
second ``SOP Instance UID`` column holding another value, a file stored mirrored
(PatientOrientation ``P\\L`` on a left breast) whose box is given in its stored pixels.

Known bad content (each must become a reject): a listed file missing on disk, a FOR PROCESSING
file, a corrupt file, an image listed twice, a BI-RADS value outside 1-5, a laterality that is
neither L nor R. A second image of a view (a repeat exposure) is kept, as the manifest allows.

:func:`make_vindr` returns a :class:`VindrFixture` whose fields are the truth the tests compare
with: the BI-RADS of every breast, the kept images, the raw boxes with their finding BI-RADS and
the reject codes by file / image id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mammokit.data.dicom_write import write_dicom
from tests.helpers.fixtures_breast import WINDOW_12BIT, Lesion, breast_pixels, hexid, lesion_pair, write_rows

BREAST_COLUMNS = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
                  "breast_birads", "breast_density", "split"]
# The finding table puts image_id first (as the release does): a reader must go by name.
FINDING_COLUMNS = ["image_id", "study_id", "series_id", "laterality", "view_position", "height", "width",
                   "breast_birads", "breast_density", "finding_categories", "finding_birads", "xmin", "ymin",
                   "xmax", "ymax", "split"]
METADATA_COLUMNS = ["SOP Instance UID", "Series Instance UID", "Patient's Age", "Manufacturer",
                    "Manufacturer's Model Name", "Photometric Interpretation", "Rows", "Columns", "SOP Instance UID"]
MANUFACTURERS = [("SIEMENS", "Mammomat Inspiration"), ("Planmed", "Planmed Nuance"), ("IMS GIOTTO S.p.A.", "GIOTTO IMAGE 3DL")]


@dataclass
class VImage:
    study_id: str
    image_id: str
    laterality: str
    view: str
    path: Path
    rows: int
    columns: int
    kept: bool = True
    mirrored: bool = False  # stored left-right mirrored (PatientOrientation says so)


@dataclass
class VFinding:
    """One row of finding_annotations.csv (box None for ``['No Finding']``)."""

    study_id: str
    image_id: str
    view: str  # "L-CC"...
    categories: list[str]
    finding_birads: int | None
    box: tuple[float, float, float, float] | None  # xmin, ymin, xmax, ymax as written
    rows: int
    columns: int
    mirrored: bool = False  # the box is written in the stored (mirrored) pixels


@dataclass
class VindrFixture:
    root: Path
    # study -> {"split": "training"|"test", "birads": {"L": n, "R": n}, "density": {"L": "A".., "R": ..},
    #           "age": int | None, "manufacturer": str}
    studies: dict[str, dict] = field(default_factory=dict)
    images: list[VImage] = field(default_factory=list)
    findings: list[VFinding] = field(default_factory=list)
    # image id or file name -> expected reject code of the framework
    rejects: dict[str, str] = field(default_factory=dict)
    # studies whose labels are not known (every image rejected)
    dropped_studies: set[str] = field(default_factory=set)

    def kept(self) -> list[VImage]:
        return [im for im in self.images if im.kept]


# (study name, split, birads L, birads R, density, age, photometric, findings per view)
# findings: {view: [(categories, finding_birads, lesion kind or None, box override or None)]}
_BASE_STUDIES = [
    ("s0", "training", 4, 1, "C", 53, "MONOCHROME1",
     {"L-CC": [(["Mass"], 4, "malignant", None)], "L-MLO": [(["Mass"], 4, "malignant", None)]}),
    ("s1", "training", 2, 3, "B", 47, "MONOCHROME2",
     {"R-MLO": [(["Focal Asymmetry"], 3, "benign", "outside")]}),
    ("s2", "test", 5, 2, "D", 61, "MONOCHROME1",
     {"L-CC": [(["Mass", "Suspicious Calcification"], 5, "malignant", None)],
      "L-MLO": [(["Mass", "Suspicious Calcification"], 5, "malignant", None),
                (["Skin Thickening"], None, None, "plain")]}),
    ("s3", "training", 1, 1, "A", None, "MONOCHROME2", {}),
    ("s4", "test", 3, 1, "B", 39, "MONOCHROME2", {"L-CC": [(["Architectural Distortion"], 3, "benign", None)]}),
    ("s5", "training", 1, 2, "C", 70, "MONOCHROME1", {}),
]


def _study_ids(name: str) -> tuple[str, str]:
    return hexid("vindr-study", name), hexid("vindr-series", name)


def make_vindr(root: str | Path, size: tuple[int, int] = (96, 80), n_extra: int = 0, seed: int = 0) -> VindrFixture:
    """Write the fixture under ``root`` (images ``size`` = (rows, columns)); ``n_extra`` more
    clean studies (malignant / benign / normal in turn, 1 in 4 in the test split) for training."""
    root = Path(root)
    h, w = size
    fx = VindrFixture(root=root)
    studies = list(_BASE_STUDIES)
    for i in range(n_extra):
        kind = i % 3
        side = "L" if (i // 3) % 2 == 0 else "R"
        bl, br = {0: (5, 1), 1: (2, 1), 2: (1, 1)}[kind] if side == "L" else {0: (1, 4), 1: (1, 3), 2: (1, 1)}[kind]
        lesion = {0: "malignant", 1: "benign", 2: None}[kind]
        findings = {}
        if lesion:
            fb = 5 if kind == 0 and side == "L" else (4 if kind == 0 else (2 if side == "L" else 3))
            findings = {f"{side}-{v}": [(["Mass"], fb, lesion, None)] for v in ("CC", "MLO")}
        split = "test" if i % 4 == 3 else "training"
        studies.append((f"x{i:02d}", split, bl, br, "BCDA"[i % 4], 40 + i, ("MONOCHROME1", "MONOCHROME2")[i % 2], findings))

    breast_rows, finding_rows, meta_rows = [], [], []
    for s_index, (name, split, bl, br, density, age, photometric, findings) in enumerate(studies):
        study_id, series_id = _study_ids(name)
        manufacturer, model = MANUFACTURERS[s_index % len(MANUFACTURERS)]
        fx.studies[study_id] = {"name": name, "split": split, "birads": {"L": bl, "R": br},
                                "density": {"L": density, "R": density}, "age": age, "manufacturer": manufacturer}
        for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            lat, kind = view.split("-")
            image_id = hexid("vindr-image", name, view)
            path = root / "images" / study_id / f"{image_id}.dicom"
            mirrored = (name, view) == ("s2", "L-CC")  # stored mirrored: boxes are in stored pixels
            lesions: list[Lesion] = []
            for slot, (cats, fb, lesion_kind, override) in enumerate(findings.get(view, [])):
                if lesion_kind is not None:
                    lesion = lesion_pair(lesion_kind, h, w, lat, slot)
                    lesions.append(lesion)
                    box = lesion.box()
                else:
                    box = (w * 0.5, h * 0.1, w * 0.6, h * 0.2)
                if override == "outside":
                    box = (box[0], -7.5, w + 12.25, box[3])  # reaches past the top and the far side
                if mirrored:
                    box = (w - box[2], box[1], w - box[0], box[3])
                fx.findings.append(VFinding(study_id, image_id, view, cats, fb, box, h, w, mirrored))
            birads = bl if lat == "L" else br
            pixels = breast_pixels(h, w, lat, lesions, bits=12, seed=seed * 1000 + s_index * 10 + len(breast_rows))
            extra = {}
            if photometric == "MONOCHROME1":
                stored = 4095 - pixels  # bright background, as MONOCHROME1 files store it
                extra = {"PixelPaddingValue": 4095, "WindowCenter": [2048, 1800], "WindowWidth": [4096, 3000]}
            else:
                stored = pixels
                extra = {"WindowCenter": [str(WINDOW_12BIT["center"]), "1900"],
                         "WindowWidth": [str(WINDOW_12BIT["width"]), "3500"], "VOILUTFunction": "LINEAR"}
            if mirrored:
                stored = stored[:, ::-1]
                extra["PatientOrientation"] = ["P", "L"]  # L breast, rows run posterior: mirrored
            write_dicom(path, stored, laterality=lat, view=kind, bits_stored=12, photometric=photometric,
                        patient_id=hexid("vindr-patient", name), uid_seed=f"vindr|{name}|{view}", Laterality=lat,
                        Manufacturer=manufacturer, ManufacturerModelName=model, **extra)
            fx.images.append(VImage(study_id, image_id, lat, kind, path, h, w, mirrored=mirrored))
            breast_rows.append([study_id, series_id, image_id, lat, kind, h, w, f"BI-RADS {birads}",
                                f"DENSITY {density}", split])
            meta_rows.append([image_id, series_id, f"{age:03d}Y" if age is not None else None, manufacturer, model,
                              photometric, h, w, f"1.2.840.113619.{s_index}.{len(meta_rows)}"])
            view_findings = [f for f in fx.findings if f.image_id == image_id]
            if not view_findings:
                finding_rows.append([image_id, study_id, series_id, lat, kind, h, w, f"BI-RADS {birads}",
                                     f"DENSITY {density}", "['No Finding']", None, None, None, None, None, split])
            for f in view_findings:
                cats = "[" + ", ".join(f"'{c}'" for c in f.categories) + "]"
                fb = f"BI-RADS {f.finding_birads}" if f.finding_birads is not None else None
                finding_rows.append([image_id, study_id, series_id, lat, kind, h, w, f"BI-RADS {birads}",
                                     f"DENSITY {density}", cats, fb, *(f"{v:.2f}" for v in f.box), split])

    _add_bad_content(fx, breast_rows, meta_rows, size, seed)
    write_rows(root / "breast-level_annotations.csv", BREAST_COLUMNS, breast_rows)
    write_rows(root / "finding_annotations.csv", FINDING_COLUMNS, finding_rows)
    write_rows(root / "metadata.csv", METADATA_COLUMNS, meta_rows)
    (root / "LICENSE.txt").write_text("PhysioNet Restricted Health Data License 1.5.0 (fixture)\n")
    (root / "SHA256SUMS.txt").write_text("")
    return fx


def _add_bad_content(fx: VindrFixture, breast_rows: list, meta_rows: list, size: tuple[int, int], seed: int) -> None:
    """Files and rows the importer must reject (see the module docstring)."""
    h, w = size
    root = fx.root
    by_name = {v["name"]: k for k, v in fx.studies.items()}

    # s4: R-MLO listed but missing on disk; L-MLO is FOR PROCESSING.
    s4 = by_name["s4"]
    for im in fx.images:
        if im.study_id == s4 and (im.laterality, im.view) == ("R", "MLO"):
            im.path.unlink()
            im.kept = False
            fx.rejects[im.image_id] = "missing file"
        if im.study_id == s4 and (im.laterality, im.view) == ("L", "MLO"):
            write_dicom(im.path, breast_pixels(h, w, "L", bits=12), laterality="L", view="MLO", bits_stored=12,
                        uid_seed="vindr|s4|raw", Laterality="L", PresentationIntentType="FOR PROCESSING")
            im.kept = False
            fx.rejects[im.image_id] = "FOR PROCESSING"

    # s5: R-CC corrupt (header cut short); L-CC listed twice (the second row is a duplicate);
    # a second, different image of L-MLO (a repeat exposure), which is kept.
    s5 = by_name["s5"]
    series = hexid("vindr-series", "s5")
    for im in fx.images:
        if im.study_id == s5 and (im.laterality, im.view) == ("R", "CC"):
            im.path.write_bytes(im.path.read_bytes()[:300])
            im.kept = False
            fx.rejects[im.image_id] = "unreadable"
    first = next(r for r in breast_rows if r[0] == s5 and r[3] == "L" and r[4] == "CC")
    breast_rows.append(list(first))
    fx.rejects[f"{first[2]}#2"] = "duplicate"  # the same image id on a second row
    repeat_id = hexid("vindr-image", "s5", "L-MLO", "repeat")
    repeat_path = root / "images" / s5 / f"{repeat_id}.dicom"
    write_dicom(repeat_path, breast_pixels(h, w, "L", bits=12), laterality="L", view="MLO", bits_stored=12,
                uid_seed="vindr|s5|repeat", Laterality="L")
    breast_rows.append([s5, series, repeat_id, "L", "MLO", h, w, "BI-RADS 1", "DENSITY C", "training"])
    meta_rows.append([repeat_id, series, "070Y", fx.studies[s5]["manufacturer"], "", "MONOCHROME2", h, w, "1.2.3"])
    # Kept (the manifest allows several images of a view; boxes and masks go to the first).
    fx.images.append(VImage(s5, repeat_id, "L", "MLO", repeat_path, h, w, kept=True))

    # s6: unknown values: laterality "X" on one row, "BI-RADS 0" (not used by VinDr) on the
    # right breast; the right breast's images are rejected, the left breast is kept.
    study_id, series = hexid("vindr-study", "s6"), hexid("vindr-series", "s6")
    fx.studies[study_id] = {"name": "s6", "split": "training", "birads": {"L": 2, "R": None},
                            "density": {"L": "B", "R": "B"}, "age": 58, "manufacturer": "SIEMENS"}
    for view, birads, lat_written in (("L-CC", 2, "L"), ("L-MLO", 2, "X"), ("R-CC", 0, "R"), ("R-MLO", 0, "R")):
        lat, kind = view.split("-")
        image_id = hexid("vindr-image", "s6", view)
        path = root / "images" / study_id / f"{image_id}.dicom"
        write_dicom(path, breast_pixels(h, w, lat, bits=12, seed=seed + 7), laterality=lat, view=kind,
                    bits_stored=12, uid_seed=f"vindr|s6|{view}", Laterality=lat)
        breast_rows.append([study_id, series, image_id, lat_written, kind, h, w, f"BI-RADS {birads}",
                            "DENSITY B", "training"])
        meta_rows.append([image_id, series, "058Y", "SIEMENS", "Mammomat Inspiration", "MONOCHROME2", h, w, "1.2.4"])
        ok = view == "L-CC"
        fx.images.append(VImage(study_id, image_id, lat, kind, path, h, w, kept=ok))
        if not ok:
            fx.rejects[image_id] = "unknown value"
