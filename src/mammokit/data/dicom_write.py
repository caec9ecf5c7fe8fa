"""Write minimal, valid MG DICOM files (the synthetic data set's DICOM output, test fixtures).

Readers are in :mod:`mammokit.data.dicom`; this module writes what they read: Modality MG, FOR
PRESENTATION, ImageLaterality, ViewPosition + ViewCodeSequence, seed-derived UIDs (the same
call writes the same file), uncompressed or compressed: RLE, JPEG 2000 and JPEG-LS with pydicom's
encoders (JPEG 2000 needs pylibjpeg-openjpeg, JPEG-LS pyjpegls), JPEG lossless (process 14, and
its selection-value-1 form that the RSNA set uses) with libjpeg-turbo through imagecodecs, since
pydicom has no encoder for it. The extra encoders are development dependencies: decoding needs
only the runtime plugins (pylibjpeg-libjpeg, pylibjpeg-openjpeg).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mammokit.data.dicom import normalise_view

__all__ = ["write_dicom"]


_MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image - For Presentation
# JPEG lossless syntaxes pydicom cannot encode: (UID, predictor). SV1 = selection value 1.
_JPEG_LOSSLESS = {"1.2.840.10008.1.2.4.57": 6, "1.2.840.10008.1.2.4.70": 1}
_VIEW_CODE_OUT = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}


def write_dicom(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    laterality: str,
    view: str,
    study_uid: str | None = None,
    patient_id: str = "anonymous",
    bits_stored: int = 16,
    bits_allocated: int | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    uid_seed: str | None = None,
    **elements,
) -> None:
    """Write ``pixels`` (``uint16`` ``[H, W]``, stored values) as a minimal MG DICOM, atomically.

    The header carries what :func:`read_dicom_info` needs (study, patient, ImageLaterality,
    ViewPosition + ViewCodeSequence, Modality MG, FOR PRESENTATION). UIDs are derived from
    ``uid_seed`` (default: path, laterality, view) so the same call writes the same file.
    ``bits_allocated`` defaults to 8 when ``bits_stored`` is 8, else 16. ``transfer_syntax`` may
    be a compressed syntax: RLE Lossless (pydicom), JPEG 2000 (pylibjpeg-openjpeg), JPEG-LS
    (pyjpegls), JPEG lossless .4.57 / SV1 .4.70 (imagecodecs). Extra keyword ``elements`` are set as DICOM
    keywords (e.g. ``WindowCenter=2048``); a value of None deletes that element.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import UID, generate_uid

    from mammokit.utils.io import atomic_path

    pixels = np.asarray(pixels)
    if bits_allocated is None:
        bits_allocated = 8 if bits_stored <= 8 else 16
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        raise ValueError(f"{path}: bits_stored {bits_stored} / bits_allocated {bits_allocated} not supported")
    if pixels.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array [H, W], got shape {pixels.shape}")
    if pixels.size and (pixels.min() < 0 or pixels.max() > 2**bits_stored - 1):
        raise ValueError(f"{path}: values {pixels.min()}..{pixels.max()} do not fit in {bits_stored} bits")
    lat = laterality.upper()
    kind = normalise_view(view)
    seed = uid_seed if uid_seed is not None else f"{Path(path).as_posix()}|{lat}|{kind}"
    study = study_uid or generate_uid(entropy_srcs=[seed, "study"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(_MG_FOR_PRESENTATION)
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[seed, "sop"])
    # Uncompressed syntaxes (explicit or implicit VR) are written directly; compressed ones are
    # encoded from explicit VR little endian by ds.compress below.
    syntax = UID(transfer_syntax)
    meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1") if syntax.is_compressed else syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
    ds.PatientID = patient_id
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = lat
    ds.ViewPosition = kind
    if kind in _VIEW_CODE_OUT:
        code = Dataset()
        code.CodeValue, code.CodeMeaning = _VIEW_CODE_OUT[kind]
        code.CodingSchemeDesignator = "SCT"
        ds.ViewCodeSequence = DicomSequence([code])
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels.astype("<u2" if bits_allocated == 16 else "u1")).tobytes()
    for keyword, value in elements.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if str(syntax) in _JPEG_LOSSLESS:
        _encode_jpeg_lossless(ds, pixels, syntax, bits_stored)
    elif syntax.is_compressed:
        # Keep the seed-derived SOP Instance UID (pydicom would make a random one): same call, same file.
        ds.compress(syntax, generate_instance_uid=False)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _encode_jpeg_lossless(ds, pixels: np.ndarray, syntax, bits_stored: int) -> None:
    """Encapsulate ``pixels`` ``[H, W]`` as one JPEG lossless (process 14) frame in ``ds``."""
    from pydicom.encaps import encapsulate

    from mammokit.errors import MissingDependencyError

    try:
        import imagecodecs
    except ImportError:
        raise MissingDependencyError(
            f"writing JPEG lossless ({syntax}) needs imagecodecs (pip install imagecodecs)"
        ) from None
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    frame = imagecodecs.jpeg8_encode(
        np.ascontiguousarray(pixels.astype(dtype)),
        lossless=True,
        predictor=_JPEG_LOSSLESS[str(syntax)],
        bitspersample=bits_stored,
    )
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
