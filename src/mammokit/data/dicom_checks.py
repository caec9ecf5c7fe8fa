"""Consistency checks of a DICOM image's pixel module, made from the header alone.

``scan`` reads only headers, yet a file it accepts must be readable by ``preprocess``; so the
header is checked here for everything the pixel decoder will rely on: one frame of one sample,
grayscale, 8 or 16 bits allocated, BitsStored within them, a known transfer syntax, a size
within :data:`MAX_PIXELS`, and, for uncompressed syntaxes, pixel data at least
``Rows x Columns x BitsAllocated / 8`` bytes long. :func:`read_dicom_pixels` applies the same
checks before decoding, so both stages give the same reason for the same file.
"""

from __future__ import annotations

from mammokit.utils.text import safe_text

# Larger than any mammogram (about 4 000 x 5 000 = 20 M pixels); a header declaring more is
# corrupt, and decoding it would allocate gigabytes.
MAX_PIXELS = 100_000_000

NATIVE_SYNTAXES = frozenset({
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian (retired, still found in archives)
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
})


def as_int(value: object) -> int | None:
    """A header value as an int, or None when absent, multi-valued or not a number."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None  # absent, multi-valued (MultiValue), bytes, a sequence...
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number or number in (float("inf"), float("-inf")) or not number.is_integer():
        return None
    return int(number)


def one_line_reason(exc: BaseException, max_len: int = 300) -> str:
    """``"Type: message"`` of a library exception as one safe line (decoders raise multi-line
    messages, sometimes quoting header bytes)."""
    text = " ".join(str(exc).split())
    return safe_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, max_len=max_len,
                     escape_backslash=False)


def pixel_module_problem(ds, syntax: str | None, pixel_length: int | None) -> str | None:
    """Why the image of dataset ``ds`` (header only is enough) cannot be decoded into one 2-D
    grayscale image, or None. ``pixel_length``: byte length of the PixelData element (None when
    encapsulated or unknown)."""
    from pydicom.uid import UID

    if not syntax:
        return "no TransferSyntaxUID in the file meta information"
    missing = [k for k in _REQUIRED if k not in ds]
    if missing:
        return f"image pixel module lacks {', '.join(missing)}"
    uid = UID(syntax)
    if not uid.is_transfer_syntax:
        return f"TransferSyntaxUID {safe_text(syntax, max_len=70)!r} is not a transfer syntax"
    samples = as_int(ds.get("SamplesPerPixel", 1))
    if samples != 1:
        return f"{safe_text(ds.get('SamplesPerPixel'), max_len=30)} samples per pixel (colour?); expected a grayscale mammogram"
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return f"photometric interpretation {safe_text(photometric, max_len=30)!r}; expected MONOCHROME1 or MONOCHROME2"
    frames_raw = ds.get("NumberOfFrames", 1)
    frames = as_int(frames_raw if frames_raw not in (None, "") else 1)
    if frames != 1:
        return f"{safe_text(frames_raw, max_len=30)} frames (e.g. tomosynthesis); expected one 2-D image"
    rows, columns = as_int(ds.get("Rows")), as_int(ds.get("Columns"))
    if not rows or not columns or rows < 0 or columns < 0:
        return f"image size Rows {safe_text(ds.get('Rows'))} x Columns {safe_text(ds.get('Columns'))} is missing or 0"
    if rows * columns > MAX_PIXELS:
        return f"image size {rows} x {columns} is larger than {MAX_PIXELS} pixels"
    allocated, stored = as_int(ds.get("BitsAllocated")), as_int(ds.get("BitsStored", ds.get("BitsAllocated")))
    if allocated not in (8, 16):
        return f"BitsAllocated {safe_text(ds.get('BitsAllocated'), max_len=30)}; expected 8 or 16"
    if stored is None or not 1 <= stored <= allocated:
        return f"BitsStored {safe_text(ds.get('BitsStored'), max_len=30)} does not fit BitsAllocated {allocated}"
    if as_int(ds.get("PixelRepresentation", 0)) not in (0, 1):
        return f"PixelRepresentation {safe_text(ds.get('PixelRepresentation'), max_len=30)}; expected 0 or 1"
    if str(uid) in NATIVE_SYNTAXES and pixel_length is not None:
        needed = rows * columns * allocated // 8
        if pixel_length < needed:
            return (f"pixel data holds {pixel_length} bytes; Rows {rows} x Columns {columns} x "
                    f"{allocated} bits need {needed}")
        if pixel_length >= 2 * needed:
            return (f"pixel data holds {pixel_length} bytes, at least two frames of Rows {rows} x "
                    f"Columns {columns} x {allocated} bits")
    return _lut_problem(ds) or _voi_problem(ds)


_REQUIRED = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel",
             "PhotometricInterpretation")
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def _first_float(value: object) -> float | None:
    if value is not None and not isinstance(value, (str, int, float)):
        try:
            value = value[0]  # a multi-valued window: the first one is used
        except (TypeError, IndexError, KeyError):
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _lut_problem(ds) -> str | None:
    # The LUTs the pixel read applies: the first item of each sequence (PS3.3 C.11.1, C.11.2).
    for keyword in ("ModalityLUTSequence", "VOILUTSequence"):
        seq = ds.get(keyword)
        if not seq:
            continue
        item = seq[0]
        descriptor, data = item.get("LUTDescriptor"), item.get("LUTData")
        if keyword == "VOILUTSequence" and (descriptor is None or data is None):
            continue  # ignored by the read (window used instead)
        try:
            entries, _first, depth = (int(v) for v in descriptor)
        except (TypeError, ValueError):
            return f"{keyword}: LUTDescriptor {safe_text(descriptor, max_len=40)} is not three numbers"
        entries = entries or 65536
        n_data = len(data) if isinstance(data, (list, tuple)) or hasattr(data, "__len__") else 1
        if not 8 <= depth <= 16 or n_data < entries:
            return f"{keyword}: LUTDescriptor {safe_text(descriptor, max_len=40)} does not fit {n_data} LUT entries"
    return None


def _voi_problem(ds) -> str | None:
    if ds.get("VOILUTSequence"):
        return None
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center in (None, "") or width in (None, ""):
        return None
    c, w = _first_float(center), _first_float(width)
    if c is None or w is None:
        return f"WindowCenter {safe_text(center, max_len=30)} / WindowWidth {safe_text(width, max_len=30)} are not numbers"
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in _VOI_FUNCTIONS:
        return f"VOILUTFunction {safe_text(function, max_len=30)!r}; expected one of {', '.join(_VOI_FUNCTIONS)}"
    if (function == "LINEAR" and w < 1) or w <= 0:
        return f"WindowWidth {w:g} is too small for a {function} window"
    return None
