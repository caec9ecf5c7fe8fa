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
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    PYDICOM_IMPLEMENTATION_UID,
    generate_uid,
)

from mammokit.synth.config import MAX_12BIT, PIXEL_MM
from mammokit.utils.io import atomic_path

DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


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
    """Write ``image12`` (``[H, W]`` uint16, 12-bit display values, 0 = background) as MG DICOM.

    ``view`` is "L-CC" etc. (ImageLaterality L/R, ViewPosition CC/MLO). The VOI LUT window
    covers the 12-bit range of the breast so viewers show it as the PNG does.
    """
    side, position = view.split("-")
    study_uid = generate_uid(entropy_srcs=[str(seed), "study", exam_id])
    series_uid = generate_uid(entropy_srcs=[str(seed), "series", exam_id, view])
    sop_uid = generate_uid(entropy_srcs=[str(seed), "sop", exam_id, view])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = exam_id[:16]
    ds.AccessionNumber = exam_id[:16]
    ds.PatientID = patient_id
    ds.PatientName = f"SYNTHETIC^{patient_id}"
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = side
    ds.Laterality = side
    ds.ViewPosition = position
    ds.SeriesDescription = f"{side} {position}"
    ds.BodyPartExamined = "BREAST"
    ds.Manufacturer = "mammokit synthetic"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    spacing = PIXEL_MM / scale
    ds.PixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
    ds.ImagerPixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]

    values = np.asarray(image12, dtype=np.uint16)
    if monochrome1:
        # MONOCHROME1: high stored values are dark; the background becomes the maximum.
        values = (MAX_12BIT - values).astype(np.uint16)
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.VOILUTFunction = "LINEAR"
    ds.PixelData = values.tobytes()
    if jpeg2000:
        # Lossless, and the instance keeps its seed-derived UID (pydicom would otherwise make a new one).
        ds.compress(JPEG2000Lossless, values, generate_instance_uid=False)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def read_back(path: str | Path) -> np.ndarray:
    """Decode a written file's 12-bit display values (undoing MONOCHROME1). For checks only;
    the pipeline's reader is ``mammokit.data.dicom``."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.uint16)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        arr = (MAX_12BIT - arr).astype(np.uint16)
    return arr
