"""Small helpers shared by the VinDr-Mammo, RSNA and EMBED importers (not a format: the leading
underscore keeps :func:`registry.load_formats` from importing it as one).

* BI-RADS: the exam's assessment is its most severe breast / finding assessment in the ACR's
  order of increasing concern, 1 < 2 < 3 < 0 < 4 < 5 < 6 (0 = incomplete, recall, ranks above
  3). ``birads`` in labels.csv is the paper's pretraining class: that assessment when it is 0, 1
  or 2, else empty.
* Boxes: a file the header says is stored mirrored is flipped by the pixel reader, so a box
  given in its stored pixels is flipped with it (``x -> columns - x``).
"""

from __future__ import annotations

import math
import re

from mammokit.data.importers.base import Box

BIRADS_SEVERITY = (1, 2, 3, 0, 4, 5, 6)


def worst_birads(values) -> int | None:
    """The most severe BI-RADS of ``values`` (ints, None ignored) in the ACR order."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present, key=BIRADS_SEVERITY.index)


def pretraining_birads(assessment: int | None) -> int | None:
    """labels.csv ``birads``: the assessment when it is 0, 1 or 2, else None."""
    return assessment if assessment in (0, 1, 2) else None


def parse_number(text: str) -> float | None:
    """``"61.0"`` -> 61.0; empty, ``nan`` or not a number -> None."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return None if math.isnan(value) else value


def parse_flag(text: str) -> int | None:
    """A 0/1 column (``0``, ``1``, ``0.0``, ``1.0``, ``True``, ``False``) -> 0/1; else None."""
    t = str(text).strip().lower()
    if t in ("true", "false"):
        return int(t == "true")
    value = parse_number(t)
    return int(value) if value in (0.0, 1.0) else None


def age_text(text: str) -> str:
    """An age as a whole number of years: ``"061Y"`` (DICOM AS), ``"61.0"``, ``"61"`` -> ``"61"``;
    months / weeks / days (``"006M"``) and unreadable values -> ``""``."""
    t = str(text).strip().upper()
    match = re.fullmatch(r"(\d{1,3})\s*([YMWD]?)", t)
    if match:
        return str(int(match.group(1))) if match.group(2) in ("", "Y") else ""
    value = parse_number(t)
    return str(int(round(value))) if value is not None and 0 <= value < 150 else ""


def oriented_box(box: Box, mirrored: bool, columns: int | None) -> Box:
    """``box`` (stored pixels) in the orientation the pixel reader returns the image."""
    if not mirrored or columns is None:
        return box
    return Box(box.exam_id, box.view, box.label, columns - box.x1, box.y0, columns - box.x0, box.y1)


def header_disagrees(info, laterality: str) -> str | None:
    """The reason when the header's laterality contradicts the table's, else None."""
    if info.laterality and info.laterality != laterality:
        return f"header laterality {info.laterality}, the table says {laterality}"
    return None


def table_image_problem(ctx, info, path, laterality: str):
    """The reject of an image whose view and laterality come from the set's table (VinDr, RSNA):
    the header read failed, is not a usable image, or names the other breast; None if usable."""
    from mammokit.data.importers.base import reject
    from mammokit.data.importers.context import UNKNOWN_VALUE
    from mammokit.data.scan import Reject

    if isinstance(info, Reject):
        return info
    bad = ctx.check_header(info, need_laterality=False, need_view=False)
    if bad is None and header_disagrees(info, laterality):
        bad = reject(path, UNKNOWN_VALUE, header_disagrees(info, laterality))
    return bad
