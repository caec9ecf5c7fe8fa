"""Fixture DICOM files with exactly the tags a public data set writes (no defaults added).

:func:`write_fixture_dicom` writes ``pixels`` (uint8 or uint16 ``[H, W]``) with the given
transfer syntax and SOP class and only the elements passed as keywords (plus the image pixel
module), so a fixture can mimic CBIS-DDSM (Laterality + PatientOrientation, no ViewPosition),
CMMD (ViewCodeSequence only, 8 bits, SIGMOID VOI) and so on. :func:`breast_image` draws a simple
breast (half ellipse against the chest wall, display orientation) with an optional lesion disc.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def code_item(value: str, meaning: str, scheme: str = "SCT"):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def write_fixture_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    sop_class: str = MG_FOR_PRESENTATION,
    transfer_syntax: str = EXPLICIT_LE,
    sop_uid: str | None = None,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    pixel_data: bool = True,
    **elements,
) -> Path:
    """Write one DICOM file; ``elements`` are DICOM keywords (sequences as lists of Datasets)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID, generate_uid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(pixels)
    bits_alloc = 8 if pixels.dtype == np.uint8 else 16
    sop_uid = sop_uid or generate_uid(entropy_srcs=[str(path)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    syntax = UID(transfer_syntax)
    meta.TransferSyntaxUID = UID(EXPLICIT_LE) if syntax.is_compressed else syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    for keyword, value in elements.items():
        if isinstance(value, list) and value and isinstance(value[0], Dataset):
            value = Sequence(value)
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_alloc
    ds.BitsStored = bits_stored or bits_alloc
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if pixel_data:
        ds.PixelData = np.ascontiguousarray(pixels.astype("<u1" if bits_alloc == 8 else "<u2")).tobytes()
    if syntax.is_compressed and pixel_data:
        ds.compress(syntax, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def disc(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def breast_image(
    shape: tuple[int, int], side: str, rng: np.random.Generator, lesion: np.ndarray | None = None,
    bright: int = 40000, maximum: int = 65535,
) -> np.ndarray:
    """``uint16`` ``[H, W]`` (values <= ``maximum``): a noisy half ellipse against the chest wall
    (left for ``side == "L"``, right for ``"R"``, the display convention), background 0; the
    ``lesion`` mask pixels are set bright."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    inside = ((yy - h / 2) / (h * 0.46)) ** 2 + (xx / (w * 0.85)) ** 2 <= 1.0
    if side == "R":
        inside = inside[:, ::-1]
    scale = maximum / 65535
    tissue = np.clip(18000 + 3000 * rng.standard_normal((h, w)), 2000, 60000) * scale
    img = np.where(inside, tissue, 0).astype(np.float64)
    if lesion is not None:  # in the returned (display) orientation
        img[lesion & inside] = bright * scale
    return img.astype(np.uint16)
