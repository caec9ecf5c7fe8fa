"""Write a synthetic view as an MG DICOM file (FOR PRESENTATION), the way archives hold them.

Some files are stored MONOCHROME1 (stored values inverted, 0 = white) and some JPEG 2000 lossless
compressed, so the DICOM reader and ``mammokit scan`` meet the variants of real archives. UIDs are
derived from the data set's seed (``pydicom.uid.generate_uid(entropy_srcs=...)``), so the same
seed gives the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from mammokit.data.dicom_write import write_dicom as write_mg_dicom
from mammokit.synth.config import MAX_12BIT, PIXEL_MM
from mammokit.views import View


def write_dicom(
    path: str | Path,
    image12: np.ndarray,
    *,
    view: str,
    exam_id: str,
    patient_id: str,
    seed: int,
    scale: float,
    monochrome1: bool = False,
    jpeg2000: bool = False,
) -> None:
    """Write ``image12`` (``[H, W]`` uint16, 12-bit display values, 0 = background) as MG DICOM
    through the project's writer (:func:`mammokit.data.dicom.write_dicom`).

    ``view`` is "L-CC" etc. (ImageLaterality L/R, ViewPosition CC/MLO). The VOI LUT window
    covers the 12-bit range so viewers show it as the PNG does.
    """
    v = View.parse(view)
    side, position = v.laterality, v.kind
    values = np.asarray(image12, dtype=np.uint16)
    if monochrome1:
        # MONOCHROME1: high stored values are dark; the background becomes the maximum.
        values = (MAX_12BIT - values).astype(np.uint16)
    spacing = f"{PIXEL_MM / scale:.6g}"
    write_mg_dicom(
        path,
        values,
        laterality=side,
        view=position,
        study_uid=generate_uid(entropy_srcs=[str(seed), "study", exam_id]),
        patient_id=patient_id,
        bits_stored=12,
        photometric="MONOCHROME1" if monochrome1 else "MONOCHROME2",
        transfer_syntax=JPEG2000Lossless if jpeg2000 else ExplicitVRLittleEndian,
        uid_seed=f"{seed}|{exam_id}|{view}",
        StudyID=exam_id[:16],
        AccessionNumber=exam_id[:16],
        PatientName=f"SYNTHETIC^{patient_id}",
        Laterality=side,
        SeriesDescription=f"{side} {position}",
        BodyPartExamined="BREAST",
        Manufacturer="mammokit synthetic",
        SeriesNumber=1,
        InstanceNumber=1,
        PixelSpacing=[spacing, spacing],
        ImagerPixelSpacing=[spacing, spacing],
        RescaleIntercept=0,
        RescaleSlope=1,
        RescaleType="US",
        WindowCenter=2048,
        WindowWidth=4096,
        VOILUTFunction="LINEAR",
    )


def read_back(path: str | Path) -> np.ndarray:
    """Decode a written file's 12-bit display values (undoing MONOCHROME1). For checks only;
    the pipeline's reader is ``mammokit.data.dicom``."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.uint16)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        arr = (MAX_12BIT - arr).astype(np.uint16)
    return arr
