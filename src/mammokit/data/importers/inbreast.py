"""INbreast (Release 1.0), as distributed.

ROOT is ``INbreast Release 1.0/`` (or the folder holding it) with ``AllDICOMs/<File Name>_<16-hex
patient hash>_MG_<L|R>_<CC|ML>_ANON.dcm``, ``AllXML/<File Name>.xml`` (Apple plists of ROIs) and
``INbreast.csv`` (``;``-separated: ``Patient ID;Patient age;Laterality;View;Acquisition date;File
Name;ACR;Bi-Rads``; ``INbreast.xls`` / ``.xlsx`` when there is no CSV).

* Patient = the hex hash of the file name (the table's Patient ID is the literal ``removed``);
  exam = ``<hash>_<Acquisition date>``; view = the table's Laterality and View (the file name's
  ``ML`` is the table's ``MLO``); a view other than CC / MLO is a ``special view`` reject.
* Labels: per breast, the worst Bi-Rads of its images (1 < 2 < 3 < 4a < 4b < 4c < 5 < 6):
  4a and above malignant, 2-3 benign (a suspicion label from BI-RADS, the common convention).
  ``birads`` (pretraining class) is set only when the exam's worst Bi-Rads is 1 or 2; the raw
  values are in ``birads_left`` / ``birads_right``, the ACR density in ``density``.
* Masks: every lesion ROI of the image's XML (Mass, Calcification, Cluster, Distortion,
  Asymmetry, Spiculated region) is rasterised (``cv2.fillPoly``; 1-2 point ROIs, calcification
  dots, as small discs) into the mask of the image's class (malignant for 4a+, benign for 2-3;
  none at 1). Other ROI names are rejected as ``unknown value``. No official split: seeded,
  by patient.
"""

from __future__ import annotations

import plistlib
import re
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
from mammokit.data.importers.context import MISSING_FILE, SPECIAL_VIEW, UNKNOWN_VALUE, UNREADABLE, ImportContext
from mammokit.data.importers.tables import read_table, require_columns, where
from mammokit.data.scan import Reject
from mammokit.errors import MissingDependencyError

RELEASE = "INbreast Release 1.0"
FILE_NAME = re.compile(r"^(?P<num>\d+)_(?P<hash>[0-9a-fA-F]{16})_MG_(?P<side>[LR])_(?P<view>[A-Z]+)_ANON$")
BIRADS_ORDER = ("1", "2", "3", "4a", "4b", "4c", "5", "6")
MALIGNANT = {"4a", "4b", "4c", "5", "6"}
BENIGN = {"2", "3"}
LESION_NAMES = ("mass", "calc", "cluster", "distortion", "asym", "assym", "spiculated")
POINT = re.compile(r"\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)")
VIEWS = {"CC": "CC", "MLO": "MLO", "ML": "MLO"}


def _birads(value: str) -> str | None:
    text = value.strip().lower().replace("bi-rads", "").replace(" ", "")
    return text if text in BIRADS_ORDER else None


def read_rois(path: Path) -> list[tuple[str, list[tuple[float, float]]]]:
    """``[(name, [(x, y), ...])]`` of every ROI of ``Images[0]`` in an INbreast XML plist."""
    with open(path, "rb") as fh:
        plist = plistlib.load(fh)
    images = plist.get("Images") or []
    if not images:
        return []
    out = []
    for roi in images[0].get("ROIs") or []:
        points = [(float(m.group(1)), float(m.group(2))) for p in roi.get("Point_px") or [] for m in [POINT.search(str(p))] if m]
        out.append((str(roi.get("Name", "")).strip(), points))
    return out


class INbreast:
    name = "inbreast"
    label_rule = "BI-RADS (worst over the breast's images) 4a, 4b, 4c, 5, 6 malignant; 2-3 benign; seeded patient split"

    def _base(self, root: Path) -> Path:
        return root / RELEASE if (root / RELEASE).is_dir() else root

    def _table_path(self, base: Path) -> Path | None:
        for name in ("INbreast.csv", "INbreast.xlsx", "INbreast.xls"):
            if (base / name).is_file():
                return base / name
        return None

    def detect(self, root: Path) -> None:
        base = self._base(root)
        if not (base / "AllDICOMs").is_dir() or self._table_path(base) is None:
            raise not_layout(root, self.name, f"AllDICOMs/, AllXML/ and INbreast.csv (or .xls) in ROOT or ROOT/{RELEASE}")

    def _read(self, path: Path) -> list[dict[str, str]]:
        if path.suffix.lower() != ".xls":
            return read_table(path)
        try:
            import xlrd
        except ImportError:
            raise MissingDependencyError(f"{path}: reading .xls needs xlrd (pip install xlrd), or use INbreast.csv") from None
        sheet = xlrd.open_workbook(str(path)).sheet_by_index(0)
        header = [str(v).strip() for v in sheet.row_values(0)]
        rows = []
        for r in range(1, sheet.nrows):
            cells = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip() for v in sheet.row_values(r)]
            if any(cells):
                rows.append({**dict(zip(header, cells)), "__line__": str(r + 1)})
        return rows

    def collect(self, root: Path, ctx: ImportContext) -> ImportRecords:
        rec = ImportRecords()
        base = self._base(root)
        table_path = self._table_path(base)
        table = self._read(table_path)
        require_columns(table_path, table, ("Laterality", "View", "File Name", "Bi-Rads"))
        files: dict[str, tuple[Path, re.Match]] = {}
        for path in sorted((base / "AllDICOMs").glob("*.dcm")):
            m = FILE_NAME.match(path.stem)
            if m is None:
                rec.rejects.append(reject(path, UNKNOWN_VALUE, "file name is not <File Name>_<hash>_MG_<L|R>_<view>_ANON.dcm"))
                continue
            files[m.group("num")] = (path, m)

        chosen = []  # (row, path, match, side, view, birads)
        for row in table:
            num = row["File Name"].split(".")[0].strip()
            side = row["Laterality"].upper()
            view_raw = row["View"].upper()
            birads = _birads(row["Bi-Rads"])
            if num not in files:
                rec.rejects.append(reject(where(table_path, row), MISSING_FILE, f"no AllDICOMs/{num}_*.dcm for File Name {num}"))
                continue
            path, m = files[num]
            if side not in ("L", "R") or birads is None:
                bad = [f"Laterality {row['Laterality']!r}"] if side not in ("L", "R") else []
                bad += [f"Bi-Rads {row['Bi-Rads']!r}"] if birads is None else []
                rec.rejects.append(reject(path, UNKNOWN_VALUE, "unknown value: " + ", ".join(bad)))
                continue
            if view_raw not in ("CC", "MLO"):
                rec.rejects.append(reject(path, SPECIAL_VIEW, f"view {row['View']} is not CC or MLO"))
                continue
            if m.group("side") != side or VIEWS.get(m.group("view")) != view_raw:
                rec.rejects.append(reject(path, UNKNOWN_VALUE, f"file name says {m.group('side')} {m.group('view')}, "
                                          f"the table {side} {view_raw}"))
                continue
            chosen.append((row, path, m, side, view_raw, birads))

        headers = ctx.read_headers(p for _, p, *_ in chosen)
        worst: dict[str, dict[str, str]] = defaultdict(dict)  # exam -> side -> worst birads
        density: dict[str, str] = {}
        for row, path, m, side, view, birads in chosen:
            info = headers[str(path)]
            if isinstance(info, Reject):
                rec.rejects.append(info)
                continue
            bad = ctx.check_header(info, need_laterality=False, need_view=False)
            if bad is not None:
                rec.rejects.append(bad)
                continue
            patient = m.group("hash").lower()
            exam = f"{patient}_{row.get('Acquisition date', '') or 'na'}"
            image = ImageRecord(exam, f"{side}-{view}", str(path), patient,
                                extra={"density": row.get("ACR", ""), "birads_image": birads},
                                rows=info.rows, columns=info.columns, mirrored=bool(info.mirrored))
            rec.images.append(image)
            old = worst[exam].get(side)
            if old is None or BIRADS_ORDER.index(birads) > BIRADS_ORDER.index(old):
                worst[exam][side] = birads
            if row.get("ACR") and row["ACR"] > density.get(exam, ""):
                density[exam] = row["ACR"]
            cls = "malignant" if birads in MALIGNANT else ("benign" if birads in BENIGN else None)
            self._masks(base / "AllXML" / f"{m.group('num')}.xml", image, cls, rec)

        for exam, sides in worst.items():
            lab = {**empty_labels()}
            for side, value in sides.items():
                breast = "left" if side == "L" else "right"
                lab[f"{breast}_malignant"] = int(value in MALIGNANT)
                lab[f"{breast}_benign"] = int(value in BENIGN)
            top = max(sides.values(), key=BIRADS_ORDER.index)
            lab["birads"] = int(top) if top in ("1", "2") else None
            lab["birads_left"] = sides.get("L", "")
            lab["birads_right"] = sides.get("R", "")
            lab["density"] = density.get(exam, "")
            rec.labels[exam] = lab
        return rec

    def _masks(self, xml: Path, image: ImageRecord, cls: str | None, rec: ImportRecords) -> None:
        if not xml.is_file():
            return
        try:
            rois = read_rois(xml)
        except (plistlib.InvalidFileException, ValueError, OSError, AttributeError, TypeError) as exc:
            rec.rejects.append(reject(xml, UNREADABLE, f"unreadable ROI plist ({type(exc).__name__}: {exc})"))
            return
        for k, (name, points) in enumerate(rois):
            here = f"{xml} ROI {k}"
            if not any(word in name.lower() for word in LESION_NAMES):
                rec.rejects.append(reject(here, UNKNOWN_VALUE, f"ROI name {name!r} is not a lesion type"))
                continue
            if not points:
                rec.rejects.append(reject(here, UNKNOWN_VALUE, "ROI without points"))
                continue
            if cls is not None:
                rec.masks.append(MaskSource(image.exam_id, image.view, cls, polygon=points, where=here))


register(INbreast())
