"""Fuzz case generators for images: PNG (8/16 bit) and DICOM (see :mod:`tests.helpers.fuzz`).

PNG cases: byte mutations of valid PNGs, and structural ones that keep every chunk CRC valid so
the decoder sees them (IHDR width/height/bit depth/colour type/interlace, mutated or
recompressed IDAT scanlines, dropped/duplicated/reordered chunks).

DICOM cases: valid seeds (explicit and implicit VR little endian, big endian, deflated, RLE,
JPEG 2000 lossless, JPEG-LS, 12-bit MONOCHROME1 with window and padding), then header edits
through pydicom (Rows/Columns/BitsAllocated/BitsStored/PixelRepresentation/SamplesPerPixel/
Photometric/NumberOfFrames/transfer syntax/window/rescale/LUTs set to boundary values, or
deleted), pixel data truncated or extended, JPEG 2000 / JPEG-LS / RLE streams mutated after
their start, raw odd bytes in text VRs (PatientID, StudyDescription, UIDs) and odd
SpecificCharacterSet values, and plain byte mutations of the whole file.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from tests.helpers.fuzz import INTERESTING_INTS, FuzzFailure, Reader, Reject, mutate_bytes
from tests.helpers.hostile import breast_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# ----------------------------------------------------------------------------- PNG


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = [PNG_SIGNATURE]
    for kind, body in chunks:
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(out)


@functools.lru_cache(maxsize=1)
def png_seeds() -> tuple[bytes, ...]:
    """Valid PNGs: 8- and 16-bit grayscale, 8-bit RGB with equal channels, 16-bit RGBA,
    palette, 1-bit, interlaced 8-bit (each 20-40 pixels a side)."""
    import cv2
    from PIL import Image

    img16 = breast_image(40, 30, "L", seed=1)
    img8 = (img16 >> 8).astype(np.uint8)
    seeds = [
        cv2.imencode(".png", img16)[1].tobytes(),
        cv2.imencode(".png", img8)[1].tobytes(),
        cv2.imencode(".png", np.dstack([img8] * 3))[1].tobytes(),
        cv2.imencode(".png", np.dstack([img16] * 3 + [np.full_like(img16, 65535)]))[1].tobytes(),
    ]
    for mode, kwargs in (("P", {}), ("1", {}), ("L", {"interlace": 1})):
        buf = io.BytesIO()
        Image.fromarray(img8).convert(mode).save(buf, format="PNG", **kwargs)
        seeds.append(buf.getvalue())
    return tuple(seeds)


def _png_structural(rng: random.Random, seed: bytes) -> tuple[bytes, str]:
    chunks = _png_chunks(seed)
    op = rng.randrange(6)
    if op == 0:  # IHDR fields (CRC fixed, so the decoder acts on them)
        ihdr = bytearray(chunks[0][1])
        field = rng.randrange(5)
        if field < 2:
            value = rng.choice((0, 1, 2, 39, 41, 60000, 65535, 2**31 - 1, 2**31, 2**32 - 1))
            ihdr[4 * field:4 * field + 4] = struct.pack(">I", value)
        else:
            ihdr[6 + field] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 255))
        chunks[0] = (b"IHDR", bytes(ihdr))
        return _png_join(chunks), f"IHDR field {field}"
    idat = [i for i, (k, _) in enumerate(chunks) if k == b"IDAT"]
    if op == 1 and idat:  # mutate the decompressed scanlines (filter bytes, pixels), recompress
        i = idat[0]
        raw = zlib.decompress(b"".join(chunks[j][1] for j in idat))
        raw = mutate_bytes(rng, raw)
        chunks = [c for j, c in enumerate(chunks) if j not in idat[1:]]
        chunks[i] = (b"IDAT", zlib.compress(raw))
        return _png_join(chunks), "IDAT scanlines"
    if op == 2 and idat:  # mutate the zlib stream, CRC fixed
        i = rng.choice(idat)
        chunks[i] = (b"IDAT", mutate_bytes(rng, chunks[i][1]))
        return _png_join(chunks), "IDAT zlib stream"
    if op == 3:  # drop, duplicate or move a chunk
        i = rng.randrange(len(chunks))
        choice = rng.randrange(3)
        if choice == 0:
            del chunks[i]
        elif choice == 1:
            chunks.insert(i, chunks[i])
        else:
            chunks.insert(rng.randrange(len(chunks)), chunks.pop(i))
        return _png_join(chunks), "chunk order"
    if op == 4:  # an odd ancillary or critical chunk
        kind = rng.choice((b"tEXt", b"iCCP", b"sBIT", b"PLTE", b"tRNS", b"gAMA", b"zTXt", b"XXXX", b"IHDR"))
        chunks.insert(rng.randrange(1, len(chunks) + 1), (kind, rng.randbytes(rng.randint(0, 64))))
        return _png_join(chunks), f"extra {kind.decode()}"
    return mutate_bytes(rng, seed, start=8), "bytes after signature"


def generate_png(rng: random.Random) -> tuple[bytes, str]:
    seeds = png_seeds()
    seed = rng.choice(seeds)
    kind = rng.randrange(10)
    if kind == 0:
        return seed, "valid seed"
    if kind <= 6:
        return _png_structural(rng, seed)
    if kind == 7:
        return seed[: rng.randrange(len(seed))], "truncated"
    return mutate_bytes(rng, seed), "bytes"


def read_png_case(path: Path) -> None:
    from mammokit.data.images import read_image

    image = read_image(path)
    if image.ndim != 2 or image.dtype != np.uint16 or image.size == 0:
        raise FuzzFailure(f"read_image returned {image.dtype} {image.shape}")


# ----------------------------------------------------------------------------- DICOM

PATIENT_PLACEHOLDER = "PATIENTPLACEHOLDER01"
DESCRIPTION_PLACEHOLDER = "STUDYDESCRIPTIONPLACEHOLDER0"
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
SYNTAXES = UNCOMPRESSED + (
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.100", "1.2.3.4", "", "1.2.840.10008.1.2.4.90\x00",
)
_EDITS = {
    "Rows": (0, 1, 39, 41, 65535), "Columns": (0, 1, 31, 33, 65535),
    "BitsAllocated": (0, 1, 8, 12, 16, 32, 64), "BitsStored": (0, 1, 8, 12, 16, 17, 32),
    "HighBit": (0, 7, 11, 15, 16, 31), "PixelRepresentation": (0, 1, 2),
    "SamplesPerPixel": (0, 1, 3, 4), "PlanarConfiguration": (0, 1, 2),
    "PhotometricInterpretation": ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "", "XYZ"),
    "NumberOfFrames": ("0", "1", "2", "-1", "abc"),
    "WindowCenter": (0, -1, 1e30, "nan", [100, 200]), "WindowWidth": (0, -5, 1, 1e-30, "inf"),
    "VOILUTFunction": ("LINEAR", "SIGMOID", "LINEAR_EXACT", "BOGUS"),
    "RescaleSlope": (0, -1, 1e30, "nan"), "RescaleIntercept": (0, -32768, 1e30),
    "PixelPaddingValue": (0, 65535, 70000), "PixelPaddingRangeLimit": (0, 100, 65535),
    "ImageLaterality": ("L", "R", "B", "", "LEFT"), "ViewPosition": ("CC", "MLO", "ML", "", "cc "),
    "PatientOrientation": (["A", "R"], ["P", "L"], "CC", ["\\"], ["A"]),
    "Modality": ("MG", "CT", ""), "PresentationIntentType": ("FOR PROCESSING", "FOR PRESENTATION"),
    "SpecificCharacterSet": ("ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87", "GB18030", "BOGUS", ["", "ISO 2022 IR 149"]),
    "StudyInstanceUID": ("1.2.3", "1.02.3", "", "1..2", "1" * 65, "../../x"),
    "SOPInstanceUID": ("1.2.3", "x", ""),
}
_DELETABLE = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "PhotometricInterpretation",
              "PixelData", "SOPClassUID", "Modality", "ImageLaterality", "ViewPosition", "ViewCodeSequence",
              "StudyInstanceUID", "SamplesPerPixel", "HighBit")


def _write_seed(folder: Path, name: str, **kwargs) -> bytes:
    from mammokit.data.dicom_write import write_dicom

    path = folder / f"{name}.dcm"
    pixels = kwargs.pop("pixels", breast_image(40, 32, "L", seed=2))
    write_dicom(path, pixels, laterality="L", view="CC", study_uid="1.2.826.0.1.3680043.10.9",
                patient_id=PATIENT_PLACEHOLDER, uid_seed=name, StudyDescription=DESCRIPTION_PLACEHOLDER, **kwargs)
    return path.read_bytes()


@functools.lru_cache(maxsize=1)
def dicom_seeds() -> tuple[tuple[str, bytes], ...]:
    """``(transfer syntax, bytes)`` of valid single-image MG files, 40 x 32 pixels."""
    seeds = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
                       "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"):
            seeds.append((syntax, _write_seed(folder, syntax.replace(".", "_"), transfer_syntax=syntax)))
        twelve = (breast_image(40, 32, "L", seed=3) >> 4).astype(np.uint16)
        seeds.append(("1.2.840.10008.1.2.1", _write_seed(
            folder, "mono1", pixels=4095 - twelve, bits_stored=12, photometric="MONOCHROME1",
            WindowCenter=2048, WindowWidth=4096, PixelPaddingValue=4095)))
    return tuple(seeds)


def _dicom_header_edit(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    notes = []
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        if op <= 1:
            keyword = rng.choice(sorted(_EDITS))
            value = rng.choice(_EDITS[keyword])
            setattr(ds, keyword, value)
            notes.append(f"{keyword}={value!r}")
        elif op == 2:
            keyword = rng.choice(_DELETABLE)
            if keyword in ds:
                delattr(ds, keyword)
            notes.append(f"del {keyword}")
        elif op == 3 and "PixelData" in ds:
            pixels = ds.PixelData
            n = rng.choice((1, 2, 7, 64, len(pixels) // 2, len(pixels) - 1))
            if rng.random() < 0.5:
                ds.PixelData = pixels[: max(0, len(pixels) - n)]
                notes.append(f"PixelData -{n} bytes")
            else:
                ds.PixelData = pixels + rng.randbytes(n)
                notes.append(f"PixelData +{n} bytes")
        else:
            syntax = rng.choice(SYNTAXES)
            ds.file_meta.TransferSyntaxUID = syntax
            notes.append(f"TransferSyntaxUID={syntax!r}")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue(), "header: " + "; ".join(notes)


def _dicom_text_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    # Raw bytes in text VRs (and in the StudyInstanceUID), the way a broken device writes them.
    target = rng.choice((PATIENT_PLACEHOLDER, DESCRIPTION_PLACEHOLDER, "1.2.826.0.1.3680043.10.9"))
    n = len(target)
    pool = bytes(INTERESTING_INTS[:0]) + bytes((0x00, 0x0A, 0x0D, 0x1B, 0x5C, 0x85, 0xA0, 0xC3, 0xE2, 0xFF, 0x2F, 0x2E))
    new = bytes(rng.choice(pool) if rng.random() < 0.5 else rng.randrange(256) for _ in range(n))
    if rng.random() < 0.3:
        new = b"../../x" + new[7:]
    return data.replace(target.encode(), new), f"text bytes in {target[:12]}"


def _dicom_stream_bytes(rng: random.Random, data: bytes, syntax: str) -> tuple[bytes, str]:
    # Mutate the compressed stream only (after the J2K SOC+SIZ / JPEG SOI marker / RLE header),
    # so the header still parses and the decoder gets the broken stream.
    marker = {"1.2.840.10008.1.2.4.90": b"\xff\x4f\xff\x51", "1.2.840.10008.1.2.4.80": b"\xff\xd8"}.get(syntax)
    start = data.find(marker) if marker else data.rfind(b"\xfe\xff\x00\xe0")  # RLE: the last item
    if start < 0:
        start = len(data) // 2
    return mutate_bytes(rng, data, start=start + 2), f"stream bytes ({syntax})"


def generate_dicom(rng: random.Random) -> tuple[bytes, str]:
    syntax, seed = rng.choice(dicom_seeds())
    kind = rng.randrange(10)
    try:
        if kind == 0:
            return seed, f"valid seed {syntax}"
        if kind <= 4:
            return _dicom_header_edit(rng, seed)
        if kind == 5:
            return _dicom_text_bytes(rng, seed)
        if kind <= 7 and syntax not in UNCOMPRESSED:
            return _dicom_stream_bytes(rng, seed, syntax)
    except Exception:  # noqa: BLE001 - pydicom refused to write this edit: fall back to bytes
        pass
    if kind == 8:
        return seed[: rng.randrange(len(seed))], f"truncated {syntax}"
    return mutate_bytes(rng, seed, start=rng.choice((0, 128, 132))), f"bytes {syntax}"


def read_dicom_scan_case(path: Path) -> Reject | None:
    """``scan``'s decision, then the next stages: the manifest row round-trips through the CSV
    and the image reads; an accepted uncompressed file must decode."""
    from mammokit.data.images import read_image
    from mammokit.data.manifest import read_manifest, write_manifest
    from mammokit.data.scan import classify_dicom

    item = classify_dicom(path)
    if item.reject is not None:
        return Reject(item.reject.reason)
    row = item.row
    manifest = path.with_suffix(".csv")
    write_manifest(manifest, [row])
    back = read_manifest(manifest)
    if [(r.exam_id, r.view, r.patient_id) for r in back] != [(row.exam_id, row.view, row.patient_id)]:
        raise FuzzFailure(f"manifest row did not round-trip: {row} -> {back}")
    from mammokit.data.dicom import read_dicom_info

    info = read_dicom_info(path)
    if info.transfer_syntax in UNCOMPRESSED:
        try:
            image = read_image(path)
        except Exception as exc:
            raise FuzzFailure(f"accepted by scan, unreadable by preprocess: {type(exc).__name__}: {exc}") from None
    else:
        image = read_image(path)  # a compressed stream is decoded only here: ImageReadError is fine
    if image.ndim != 2 or image.dtype != np.uint16 or image.shape != (info.rows, info.columns):
        raise FuzzFailure(f"read_image returned {image.dtype} {image.shape}, header says {info.rows} x {info.columns}")
    return None


def read_dicom_pixels_case(path: Path) -> None:
    """``read_image`` on any DICOM (what preprocess does with a hand-written manifest)."""
    from mammokit.data.images import read_image

    image = read_image(path)
    if image.ndim != 2 or image.dtype != np.uint16 or image.size == 0:
        raise FuzzFailure(f"read_image returned {image.dtype} {image.shape}")


def readers() -> list[Reader]:
    return [
        Reader("png", ".png", generate_png, read_png_case),
        Reader("dicom-scan", ".dcm", generate_dicom, read_dicom_scan_case),
        Reader("dicom-pixels", ".dcm", generate_dicom, read_dicom_pixels_case),
    ]
