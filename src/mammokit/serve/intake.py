"""What the server makes of a received instance, over DICOM or the upload route alike.

:func:`classify` reads the header of a stored file (:func:`mammokit.data.dicom.read_dicom_info`)
and says whether it can be one of a study's four views, or why not: not MG, FOR PROCESSING, no
pixel data, several frames, no laterality, another view (ML, XCCL, spot compression...). Unusable
instances are kept and listed with their reason (in the API and in the SR), never silently
dropped. Duplicates of a view are resolved when the study is predicted (:func:`choose_views`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mammokit.config import VIEWS
from mammokit.errors import ImageReadError

__all__ = ["classify", "choose_views", "header_uids", "SOP_CLASS_NAMES"]

SOP_CLASS_NAMES = {
    "1.2.840.10008.5.1.4.1.1.1.2": "MG For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "MG For Processing",
}


def header_uids(ds) -> tuple[str, str]:
    """``(StudyInstanceUID, SOPInstanceUID)`` of a dataset; :class:`ImageReadError` if absent."""
    study, sop = str(ds.get("StudyInstanceUID") or "").strip(), str(ds.get("SOPInstanceUID") or "").strip()
    if not study or not sop:
        missing = " and ".join(k for k, v in (("StudyInstanceUID", study), ("SOPInstanceUID", sop)) if not v)
        raise ImageReadError(f"instance without {missing}")
    return study, sop


def classify(path: str | Path, calling_ae: str | None = None) -> dict[str, Any]:
    """The intake record of a stored file: study_uid, sop_uid, sop_class, modality, view,
    usable, reason, patient_id, mirrored, content (ContentDate + ContentTime, for duplicates).

    Raises:
        ImageReadError: not a readable DICOM file, or no Study / SOP Instance UID.
    """
    import pydicom

    from mammokit.data.dicom import read_dicom_info

    info = read_dicom_info(path)
    if not info.study_uid or not info.sop_instance_uid:
        raise ImageReadError(f"{path}: instance without StudyInstanceUID or SOPInstanceUID")
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "ContentDate", "ContentTime"])
    sop_class = str(ds.get("SOPClassUID") or "") or None
    reason = None
    modality = (info.modality or "").upper()
    if modality != "MG":
        reason = f"not MG (modality {info.modality or 'missing'})"
    elif (info.presentation_intent or "").upper() == "FOR PROCESSING" or sop_class == "1.2.840.10008.5.1.4.1.1.1.2.1":
        reason = "FOR PROCESSING image (only FOR PRESENTATION images are used)"
    elif not info.has_pixel_data:
        reason = "no pixel data"
    elif info.frames != 1:
        reason = f"{info.frames} frames (tomosynthesis?); a 2-D image is expected"
    elif info.laterality is None:
        reason = "no ImageLaterality / Laterality"
    elif info.view not in ("CC", "MLO"):
        reason = f"other view ({info.view or 'no ViewPosition'}): only CC and MLO are used"
    elif info.view_modifiers:
        reason = f"other view ({info.view} with {', '.join(info.view_modifiers)})"
    view = info.view_name if info.view_name in VIEWS else None
    return {
        "study_uid": info.study_uid, "sop_uid": info.sop_instance_uid, "sop_class": sop_class,
        "modality": info.modality, "view": view or info.view_name, "usable": reason is None, "reason": reason,
        "patient_id": info.patient_id, "calling_ae": calling_ae, "mirrored": bool(info.mirrored),
        "content": f"{ds.get('ContentDate') or ''}{ds.get('ContentTime') or ''}",
    }


def choose_views(instances: Sequence[Any]) -> tuple[dict[str, Any], list[tuple[Any, str]]]:
    """One instance per view among the usable ``instances`` (records with ``view``, ``usable``,
    ``content``, ``received``, ``sop_uid``): the newest by ContentDate/ContentTime, then by
    arrival. Returns ``({view: record}, [(record, reason)] of the duplicates)``."""
    by_view: dict[str, list] = {}
    for rec in instances:
        if rec.usable and rec.view in VIEWS:
            by_view.setdefault(rec.view, []).append(rec)
    chosen, dropped = {}, []
    for view, recs in by_view.items():
        recs = sorted(recs, key=lambda r: (r.content, r.received, r.sop_uid), reverse=True)
        chosen[view] = recs[0]
        for r in recs[1:]:
            dropped.append((r, f"duplicate {view}: SOP {recs[0].sop_uid} (newer) used instead"))
    return chosen, dropped
