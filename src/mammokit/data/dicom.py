"""DICOM mammograms: pixels for display-ready 16-bit images, and fast header parsing.

Pixels (:func:`read_dicom_pixels`)
----------------------------------
Returns ``uint16`` ``[H, W]``, display orientation, background exactly 0, by these steps:

1. **Decode** the stored values with pydicom's pixel handlers. Compressed mammography syntaxes
   (JPEG 2000, JPEG lossless, JPEG-LS, RLE, HTJ2K) need a plugin (pylibjpeg-openjpeg,
   pylibjpeg-libjpeg, pyjpegls, python-gdcm); when none is installed the error names the
   transfer syntax and the packages that would decode it. A JPEG / JPEG-LS / JPEG 2000 stream
   without its end marker is refused as truncated (libjpeg would decode it silently into
   made-up pixels); an unknown or private transfer syntax is refused with its UID.
2. **Padding mask** from the *stored* values (as the standard defines it): pixels equal to
   PixelPaddingValue, or within [PixelPaddingValue, PixelPaddingRangeLimit] (either order) when
   the range limit is present.
3. **Modality LUT / Rescale** (``pydicom.pixels.apply_modality_lut``). The nominal output range
   ``[lo, hi]`` is the stored range ``[0, 2**BitsStored - 1]`` (signed: centred on 0) mapped
   through Rescale, or ``[0, 2**n - 1]`` for a Modality LUT Sequence of n-bit entries.
4. **VOI** (``pydicom.pixels.apply_voi_lut``, first item / first window value when several are
   given, the VOI LUT Sequence preferred over windows): the VOI LUT output ``[0, 2**n - 1]`` or
   the window output range (LINEAR, LINEAR_EXACT, SIGMOID per PS3.3 C.11.2, whose output spans
   the same nominal ``[lo, hi]`` as step 3) becomes ``[lo, hi]``. Without any VOI the values
   from step 3 are kept.
5. **To 16 bits**: ``y16 = round((y - lo) / (hi - lo) * 65535)``, clipped to 0..65535. So a
   16-bit stored image without VOI is returned unchanged, a 12-bit one is scaled by
   65535 / 4095, and a windowed image uses the whole 16-bit range.
6. **MONOCHROME1** (bright = low values) is inverted: ``y16 = 65535 - y16``, so the air
   background, stored bright, becomes dark.
7. **Padding -> 0**: the padding mask from step 2 is set to 0 (background), after the inversion
   so it is exactly 0 whatever the photometric interpretation.
8. **Orientation**: when PatientOrientation's row direction says the image is stored mirrored
   relative to the display convention (L breast: chest wall on the left, rows run Anterior; R
   breast: chest wall on the right, rows run Posterior), the image is flipped left-right.
   Vertical orientation is left as stored.

A real mammogram's air background is 0 after these steps when the file marks it as padding,
when the window clips it, or when it sits at the end of the stored range; otherwise the darkest
values are kept as they are (the crop stage thresholds at 0, so such files should be windowed).

Headers (:func:`read_dicom_info`)
---------------------------------
Reads only the header (``stop_before_pixels``) and returns a :class:`DicomInfo`: study
(exam) and patient ids, laterality, view (normalised to ``CC``, ``MLO`` or the raw code such as
``ML``, ``XCCL``), view modifiers (spot compression, magnification...), modality,
PresentationIntentType, size, whether pixel data follows the header, and a mirroring hint from
PatientOrientation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mammokit.data.dicom_checks import as_int, one_line_reason, pixel_module_problem
from mammokit.errors import ImageReadError
from mammokit.utils.text import safe_text

# Packages that decode each compressed transfer syntax (for the "install ..." hint).
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.90": "pylibjpeg + pylibjpeg-openjpeg, or python-gdcm, or pillow",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg + pylibjpeg-openjpeg, or python-gdcm, or pillow",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg + pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg + pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg + pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.50": "pylibjpeg + pylibjpeg-libjpeg, or pillow, or python-gdcm",
    "1.2.840.10008.1.2.4.51": "pylibjpeg + pylibjpeg-libjpeg, or pillow, or python-gdcm",
    "1.2.840.10008.1.2.4.80": "pyjpegls, or pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",  # JPEG-LS
    "1.2.840.10008.1.2.4.81": "pyjpegls, or pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",
    "1.2.840.10008.1.2.5": "numpy (built in), or pylibjpeg + pylibjpeg-rle",  # RLE
}

# SNOMED-CT codes of ViewCodeSequence (DICOM CID 4014).
_VIEW_CODES = {"399162004": "CC", "399368009": "MLO", "399260004": "ML", "399352003": "LM"}
_VIEW_MEANINGS = {
    "cranio-caudal": "CC",
    "craniocaudal": "CC",
    "medio-lateral oblique": "MLO",
    "mediolateral oblique": "MLO",
    "medio-lateral": "ML",
    "latero-medial": "LM",
    "latero-medial oblique": "LMO",
    "exaggerated cranio-caudal": "XCC",
    "cranio-caudal exaggerated laterally": "XCCL",
    "cranio-caudal exaggerated medially": "XCCM",
}
_LATERALITY = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R"}

_PIXEL_GROUP = 0x7FE0
_PIXEL_VRS = (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN")


@dataclass
class DicomInfo:
    """What a DICOM header says about one image (no pixels read).

    Header text is untrusted: ``study_uid`` and ``sop_instance_uid`` are as stored (validate them
    with :func:`mammokit.utils.text.uid_problem` before use); every other string field has been
    through :func:`mammokit.utils.text.safe_text` (no control characters or line breaks).
    ``laterality`` is ``"L"``/``"R"`` or ``None``; ``view`` is the normalised view code (``CC``,
    ``MLO``, or e.g. ``ML``, ``XCCL``) or ``None``; ``mirrored`` is True when PatientOrientation
    says the image is stored mirrored relative to the display convention (L images chest wall on
    the left, R on the right), False when it confirms the convention, None when unknown;
    :func:`read_dicom_pixels` undoes a mirrored storage.
    """

    path: str
    study_uid: str | None
    patient_id: str | None
    sop_instance_uid: str | None
    laterality: str | None
    view: str | None
    view_modifiers: list[str] = field(default_factory=list)
    modality: str | None = None
    presentation_intent: str | None = None
    photometric: str | None = None
    transfer_syntax: str | None = None
    has_pixel_data: bool = False
    rows: int | None = None
    columns: int | None = None
    frames: int = 1
    patient_orientation: list[str] = field(default_factory=list)
    field_of_view_horizontal_flip: str | None = None
    mirrored: bool | None = None
    pixel_problem: str | None = None
    accession_number: str | None = None
    study_date: str | None = None

    @property
    def view_name(self) -> str | None:
        """``"L-CC"`` etc. when laterality and view are both known."""
        if self.laterality and self.view:
            return f"{self.laterality}-{self.view}"
        return None


# ----------------------------------------------------------------------------- headers


def normalise_view(value: object) -> str | None:
    """``'CC'``, ``'cc'``, ``'ML O'``, ``'M L O'``, ``'MLO '`` -> ``'CC'``/``'MLO'``; other codes
    are returned upper-cased without spaces (``'XCCL'``, ``'ML'``); empty -> None."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    meaning = _VIEW_MEANINGS.get(text.lower())
    if meaning:
        return meaning
    return safe_text(re.sub(r"[\s_\-]+", "", text).upper()) or None


def _str_or_none(value: object) -> str | None:
    """Header text as one safe line (:func:`~mammokit.utils.text.safe_text`), or None if empty."""
    if value is None:
        return None
    text = safe_text(str(value).strip())
    return text or None


def _raw_or_none(value: object) -> str | None:
    """Header text as stored (for UIDs, which the caller validates), or None if empty."""
    if value is None:
        return None
    text = str(value).strip(" \x00")
    return text or None


def _view_from_code_sequence(ds) -> tuple[str | None, list[str]]:
    seq = ds.get("ViewCodeSequence")
    if not seq:
        return None, []
    item = seq[0]
    view = None
    code = _str_or_none(item.get("CodeValue"))
    if code in _VIEW_CODES:
        view = _VIEW_CODES[code]
    else:
        view = normalise_view(item.get("CodeMeaning"))
    modifiers = []
    for mod in item.get("ViewModifierCodeSequence") or []:
        text = _str_or_none(mod.get("CodeMeaning")) or _str_or_none(mod.get("CodeValue"))
        if text:
            modifiers.append(text)
    return view, modifiers


# VRs whose raw bytes are plain ASCII text (PS3.5 6.2: no character-set dependence).
_ASCII_VRS = frozenset({"CS", "UI", "IS", "DS", "AS", "DA", "TM"})
_TAGS: dict[str, int] = {}


def _header_value(ds, keyword: str):
    """``ds.get(keyword)``, decoding simple raw elements directly.

    A header read leaves elements raw; pydicom's generic conversion costs ~0.1 ms per element,
    most of the time of a header import. ASCII-text VRs (CS, UI, IS, DS...) and US are decoded
    here from the raw bytes (a list when multi-valued); any other element (PatientID's LO,
    sequences, already converted ones) goes through ``ds.get``, so values are the same.
    """
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement

    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _TAGS[keyword] = tag_for_keyword(keyword)
    try:
        elem = ds.get_item(tag)
    except (KeyError, AttributeError):
        elem = None
    if elem is None:
        return None
    raw = getattr(elem, "value", None)
    if not isinstance(elem, RawDataElement) or not isinstance(raw, bytes):
        return ds.get(keyword)
    vr = elem.VR or dictionary_VR(tag)
    if vr in _ASCII_VRS:
        # latin-1 keeps every byte as one character (as pydicom does for these VRs), so a hostile
        # byte such as 0x85 reaches the UID check and the escaper as itself, not as U+FFFD.
        text = raw.decode("latin-1").rstrip("\x00 ")
        parts = [t.strip() for t in text.split("\\")]
        if vr == "IS":
            try:
                values = [int(float(t)) for t in parts if t]
            except ValueError:
                return ds.get(keyword)
            return values[0] if len(values) == 1 else (values or None)
        if not text:
            return ""
        return parts[0] if len(parts) == 1 else parts
    if vr == "US" and len(raw) == 2:
        little = ds.original_encoding[1]
        return int.from_bytes(raw, "little" if little is not False else "big")
    return ds.get(keyword)


def _mirroring_hint(laterality: str | None, orientation: list[str]) -> bool | None:
    # PatientOrientation's first value is the patient direction of the rows (left -> right).
    # Display convention: L breast chest wall on the left, so moving right goes Anterior (to the
    # nipple); R breast chest wall on the right, so moving right goes Posterior.
    if laterality not in ("L", "R") or len(orientation) < 1:
        return None
    row_dir = orientation[0].upper()
    if not row_dir or row_dir[0] not in "AP" or not set(row_dir) <= set("APLRHFL"):
        return None
    expected = "A" if laterality == "L" else "P"
    return row_dir[0] != expected


def _pixel_data_after(fp, implicit_vr: bool, little_endian: bool) -> tuple[bool, bool, int | None]:
    """``(present, truncated, length)`` for the element at the file position (``length`` None
    when encapsulated or unknown).

    ``dcmread(stop_before_pixels=True)`` leaves the file at the first element of group 7FE0, so
    its tag and length tell cheaply whether pixel data follows and whether the file is long enough
    to hold it, without reading the pixels.
    """
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return False, False, None
    order = "little" if little_endian else "big"
    group, element = int.from_bytes(head[0:2], order), int.from_bytes(head[2:4], order)
    if group != _PIXEL_GROUP or element not in (0x0008, 0x0009, 0x0010):
        return False, False, None
    if implicit_vr:
        length, header = int.from_bytes(head[4:8], order), 8
    elif len(head) == 12:
        if head[4:6] not in _PIXEL_VRS:
            return True, True, None  # a corrupt VR: pydicom cannot decode this element
        length, header = int.from_bytes(head[8:12], order), 12  # OB/OW/OF/OD: 2 reserved bytes
    else:
        return True, True, None
    if length == 0xFFFFFFFF:  # encapsulated (compressed) frames: length not known up front
        return True, False, None
    fp.seek(0, os.SEEK_END)
    return True, fp.tell() < start + header + length, length if element == 0x0010 else None


def read_dicom_info(path: str | os.PathLike) -> DicomInfo:
    """Parse one DICOM header (pixels are not read). Raises :class:`ImageReadError` naming the
    file when it is not a readable DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        with open(path, "rb") as fp:
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                raise ImageReadError(f"{path}: not a DICOM file") from None
            except Exception as exc:  # truncated headers raise many different errors
                raise ImageReadError(f"{path}: unreadable DICOM header ({one_line_reason(exc)})") from None
            syntax = _str_or_none(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None))
            truncated, pixel_length = False, None
            if syntax == "1.2.840.10008.1.2.1.99":
                # Deflated: the file position is inside a decompressed stream; ask pydicom again.
                fp.seek(0)
                try:
                    full = pydicom.dcmread(fp)
                    has_pixels = "PixelData" in full
                    pixel_length = len(full.PixelData) if has_pixels else None
                except Exception as exc:  # noqa: BLE001 - a broken deflate stream, cut-off data...
                    raise ImageReadError(f"{path}: unreadable deflated DICOM ({one_line_reason(exc)})") from None
            else:
                implicit, little = ds.original_encoding
                has_pixels, truncated, pixel_length = _pixel_data_after(fp, bool(implicit), little is not False)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc})") from None

    if truncated:
        raise ImageReadError(f"{path}: truncated DICOM file or corrupt pixel data element (shorter than its declared "
                             "length, or an invalid value representation)")
    if "SOPClassUID" not in ds and "Modality" not in ds:
        # pydicom stops quietly at the end of a cut-off file; a real image header has both.
        raise ImageReadError(f"{path}: truncated or incomplete DICOM header (no SOPClassUID or Modality)")
    try:
        return _info_from(path, ds, syntax, has_pixels, pixel_length)
    except Exception as exc:  # noqa: BLE001 - a value pydicom cannot convert (unknown VR, odd length...)
        raise ImageReadError(f"{path}: unreadable DICOM header ({one_line_reason(exc)})") from None


def _info_from(path: Path, ds, syntax: str | None, has_pixels: bool, pixel_length: int | None) -> DicomInfo:
    laterality = _laterality_of(ds)
    orientation = _orientation_of(ds)
    rows, columns = _header_value(ds, "Rows"), _header_value(ds, "Columns")

    view = normalise_view(_header_value(ds, "ViewPosition"))
    code_view, modifiers = _view_from_code_sequence(ds)
    if view is None:
        view = code_view
    if view is None and orientation:
        # CBIS-DDSM writes the view into PatientOrientation (e.g. "CC") instead of ViewPosition.
        candidate = normalise_view("".join(orientation))
        if candidate in ("CC", "MLO", "ML", "LM", "LMO", "XCCL", "XCCM", "XCC", "FB", "SIO", "AT"):
            view = candidate

    return DicomInfo(
        path=str(path),
        study_uid=_raw_or_none(_header_value(ds, "StudyInstanceUID")),
        patient_id=_str_or_none(_header_value(ds, "PatientID")),
        sop_instance_uid=_raw_or_none(_header_value(ds, "SOPInstanceUID")),
        laterality=laterality,
        view=view,
        view_modifiers=modifiers,
        modality=_str_or_none(_header_value(ds, "Modality")),
        presentation_intent=_str_or_none(_header_value(ds, "PresentationIntentType")),
        photometric=_str_or_none(_header_value(ds, "PhotometricInterpretation")),
        transfer_syntax=syntax,
        has_pixel_data=has_pixels,
        rows=as_int(ds.get("Rows")),
        columns=as_int(ds.get("Columns")),
        frames=as_int(ds.get("NumberOfFrames") or 1) or 0,
        patient_orientation=orientation,
        field_of_view_horizontal_flip=_str_or_none(_header_value(ds, "FieldOfViewHorizontalFlip")),
        mirrored=_mirroring_hint(laterality, orientation),
        pixel_problem=pixel_module_problem(ds, syntax, pixel_length) if has_pixels else None,
        accession_number=_str_or_none(ds.get("AccessionNumber")),
        study_date=_str_or_none(ds.get("StudyDate")),
    )


# ----------------------------------------------------------------------------- pixels


def _decode(path: Path, ds) -> np.ndarray:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    syntax = UID(str(ds.file_meta.TransferSyntaxUID)) if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else None
    if syntax is not None and not syntax.is_transfer_syntax:
        # A private or misspelt UID: pydicom cannot tell how the pixels are encoded.
        raise ImageReadError(f"{path}: unknown transfer syntax {syntax}; cannot decode its pixel data")
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise ImageReadError(f"{path}: transfer syntax {syntax.name} ({syntax}) is not supported by pydicom") from None
        if not decoder.is_available:
            packages = _DECODER_PACKAGES.get(str(syntax), "a pydicom pixel-data plugin")
            raise ImageReadError(
                f"{path}: cannot decode {syntax.name} ({syntax}): no decoder installed; install {packages}"
            )
        if str(syntax) in _EOI_SYNTAXES and not _ends_with_eoi(ds.PixelData):
            # libjpeg decodes a cut-off lossless stream without complaint, filling the rest of
            # the image with predicted values; the missing end marker is the only sign.
            raise ImageReadError(
                f"{path}: truncated {syntax.name} ({syntax}) pixel data: the compressed stream has no end marker"
            )
    try:
        return ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - every decoder raises its own types
        name = f"{syntax.name} ({syntax})" if syntax is not None else "unknown transfer syntax"
        raise ImageReadError(f"{path}: cannot decode pixel data, {name}: {one_line_reason(exc)}") from None


# JPEG (ISO 10918), JPEG-LS and JPEG 2000 streams all end with the marker FF D9 (EOI / EOC).
_EOI_SYNTAXES = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
}


def _ends_with_eoi(pixel_data: bytes) -> bool:
    """Whether the last fragment of encapsulated ``pixel_data`` ends with FF D9 (allowing the
    trailing padding PS3.5 A.4 permits; some writers add a few bytes, so the last 16 are searched)."""
    from pydicom.encaps import generate_fragments

    last = b""
    try:
        for fragment in generate_fragments(pixel_data):
            last = fragment
    except (ValueError, EOFError):
        return False
    return b"\xff\xd9" in last[-16:]


def _stored_range(ds) -> tuple[float, float]:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0) == 0:
        return 0.0, float(2**bits - 1)
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


def _modality_range(ds) -> tuple[float, float]:
    """Nominal value range after step 3 (see the module docstring)."""
    if ds.get("ModalityLUTSequence"):
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    lo, hi = _stored_range(ds)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        a, b = lo * slope + intercept, hi * slope + intercept
        return min(a, b), max(a, b)
    return lo, hi


def _padding_mask(ds, stored: np.ndarray) -> np.ndarray | None:
    pad = ds.get("PixelPaddingValue")
    if pad is None:
        return None
    pad = int(pad)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return stored == pad
    lo, hi = sorted((pad, int(limit)))
    return (stored >= lo) & (stored <= hi)


def dicom_to_uint16(ds, stored: np.ndarray, path: str | os.PathLike = "<dataset>") -> np.ndarray:
    """Map decoded stored values ``[H, W]`` of dataset ``ds`` to display ``uint16`` ``[H, W]``
    (steps 2-7 of the module docstring)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(f"{path}: photometric interpretation {photometric}; expected a grayscale mammogram")
    padding = _padding_mask(ds, stored)
    lo, hi = _modality_range(ds)
    values = apply_modality_lut(stored, ds)
    voi_seq = ds.get("VOILUTSequence")
    has_lut = bool(voi_seq) and voi_seq[0].get("LUTDescriptor") is not None and voi_seq[0].get("LUTData") is not None
    has_window = ds.get("WindowCenter") not in (None, "") and ds.get("WindowWidth") not in (None, "")
    try:
        if has_lut:
            # A VOI LUT indexes integer inputs; rescaled values are float, so round them first.
            if not np.issubdtype(values.dtype, np.integer):
                values = np.rint(values).astype(np.int64)
            values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
            depth = int(voi_seq[0].LUTDescriptor[2])
            lo, hi = 0.0, float(2**depth - 1)
        elif has_window:
            # pydicom's window output spans the nominal [lo, hi] of step 3 (PS3.3 C.11.2.1.2).
            values = apply_voi_lut(values, ds, index=0, prefer_lut=False)
    except (ValueError, NotImplementedError, AttributeError, IndexError) as exc:
        raise ImageReadError(f"{path}: invalid VOI LUT / window ({exc})") from None
    span = hi - lo if hi > lo else 1.0
    out = np.rint((np.asarray(values, dtype=np.float64) - lo) / span * 65535.0)
    out = np.clip(out, 0, 65535).astype(np.uint16)
    if photometric == "MONOCHROME1":
        out = np.uint16(65535) - out
    if padding is not None:
        out[padding] = 0
    return out


def _laterality_of(ds) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = _str_or_none(_header_value(ds, keyword))
        if value and value.upper() in _LATERALITY:
            return _LATERALITY[value.upper()]
    return None


def _orientation_of(ds) -> list[str]:
    raw = _header_value(ds, "PatientOrientation")
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        return [safe_text(raw.strip())]
    return [safe_text(str(v).strip()) for v in raw]


def read_dicom_pixels(path: str | os.PathLike, standard_orientation: bool = True) -> np.ndarray:
    """Read a DICOM mammogram as display-ready ``uint16`` ``[H, W]`` with background 0 (see the
    module docstring). With ``standard_orientation`` (default), an image whose PatientOrientation
    says it is stored mirrored (L breast with the chest wall on the right, R breast with the chest
    wall on the left) is flipped left-right, so every DICOM enters the pipeline in the display
    convention and exams need ``horizontal_flip = NO``. Raises :class:`ImageReadError` naming the
    file and the reason."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except InvalidDicomError:
        raise ImageReadError(f"{path}: not a DICOM file") from None
    except Exception as exc:  # noqa: BLE001 - truncated files raise many error types
        raise ImageReadError(f"{path}: unreadable DICOM file ({one_line_reason(exc)})") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM file has no pixel data (7FE0,0010)")
    syntax = _str_or_none(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None))
    try:
        encapsulated = ds["PixelData"].is_undefined_length
        problem = pixel_module_problem(ds, syntax, None if encapsulated else len(ds.PixelData))
    except Exception as exc:  # noqa: BLE001 - a value pydicom cannot convert (bad DS/IS...)
        problem = f"unreadable image header ({one_line_reason(exc)})"
    if problem:
        raise ImageReadError(f"{path}: {problem}")
    stored = _decode(path, ds)
    if stored.ndim != 2:
        raise ImageReadError(f"{path}: pixel data has shape {stored.shape}; expected a 2-D image")
    out = dicom_to_uint16(ds, stored, path)
    if standard_orientation and _mirroring_hint(_laterality_of(ds), _orientation_of(ds)):
        out = np.ascontiguousarray(out[:, ::-1])
    return out
