"""DICOM decoding (rescale, VOI LUT, windows, MONOCHROME1, padding, compressed syntaxes,
orientation) and header parsing. Expected values come from the DICOM standard's formulas
(PS3.3 C.11.2) written out here with numpy."""

from __future__ import annotations

import re

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from mammokit.data.dicom import normalise_view, read_dicom_info, read_dicom_pixels
from mammokit.data.dicom_write import write_dicom
from mammokit.data.images import ImageReadError, read_image

H, W = 64, 48
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"


def ramp(bits: int = 12) -> np.ndarray:
    """[64, 48] stored values covering 0..2**bits-1 (both ends included)."""
    top = 2**bits - 1
    return np.rint(np.linspace(0, top, H * W)).astype(np.uint16).reshape(H, W)


def to16(x: np.ndarray, top: float) -> np.ndarray:
    return np.rint(np.asarray(x, np.float64) / top * 65535).astype(np.uint16)


def test_plain_12bit_scaled_to_16bit(tmp_path):
    x = ramp(12)
    write_dicom(tmp_path / "a.dcm", x, laterality="L", view="CC", bits_stored=12)
    out = read_image(tmp_path / "a.dcm")
    assert out.dtype == np.uint16 and out.shape == (H, W)
    np.testing.assert_array_equal(out, to16(x, 4095))
    assert out.min() == 0 and out.max() == 65535


def test_16bit_without_voi_is_unchanged(tmp_path):
    x = ramp(16)
    write_dicom(tmp_path / "a.dcm", x, laterality="R", view="MLO", bits_stored=16)
    np.testing.assert_array_equal(read_image(tmp_path / "a.dcm"), x)


def test_monochrome1_is_inverted_background_zero(tmp_path):
    x = ramp(12)
    x[:, -10:] = 4095  # air, stored bright in MONOCHROME1
    write_dicom(tmp_path / "m1.dcm", x, laterality="L", view="CC", bits_stored=12, photometric="MONOCHROME1")
    out = read_image(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(out, 65535 - to16(x, 4095))
    assert (out[:, -10:] == 0).all()


def _linear(x, c, w):
    # PS3.3 C.11.2.1.2.1, output normalised to [0, 1]
    x = x.astype(np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5).clip(0, 1)
    y[x <= c - 0.5 - (w - 1) / 2] = 0
    y[x > c - 0.5 + (w - 1) / 2] = 1
    return y


def test_linear_window_with_rescale(tmp_path):
    x = ramp(12)
    slope, intercept = 2.0, -100.0
    y = x * slope + intercept  # rescaled units; window is given in them
    c, w = 3000.0, 2001.0
    write_dicom(
        tmp_path / "w.dcm", x, laterality="L", view="CC", bits_stored=12,
        RescaleSlope=slope, RescaleIntercept=intercept, WindowCenter=[c, 500.0], WindowWidth=[w, 10.0],
    )
    out = read_image(tmp_path / "w.dcm")
    expected = np.rint(_linear(y, c, w) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(out, expected)  # first window of a multi-valued pair
    assert out.min() == 0 and out.max() == 65535


def test_linear_exact_window(tmp_path):
    x = ramp(12)
    c, w = 2000.0, 1000.0
    write_dicom(tmp_path / "le.dcm", x, laterality="L", view="CC", bits_stored=12,
                WindowCenter=c, WindowWidth=w, VOILUTFunction="LINEAR_EXACT")
    xf = x.astype(np.float64)
    y = ((xf - c) / w + 0.5).clip(0, 1)
    y[xf <= c - w / 2] = 0
    y[xf > c + w / 2] = 1
    np.testing.assert_array_equal(read_image(tmp_path / "le.dcm"), np.rint(y * 65535).astype(np.uint16))


def test_sigmoid_window_and_monochrome1(tmp_path):
    x = ramp(12)
    c, w = 1500.0, 800.0
    write_dicom(tmp_path / "s.dcm", x, laterality="L", view="CC", bits_stored=12, photometric="MONOCHROME1",
                WindowCenter=c, WindowWidth=w, VOILUTFunction="SIGMOID")
    y = 1.0 / (1.0 + np.exp(-4.0 * (x.astype(np.float64) - c) / w))  # PS3.3 C.11.2.1.3.1
    expected = 65535 - np.rint(y * 65535).astype(np.uint16)
    np.testing.assert_array_equal(read_image(tmp_path / "s.dcm"), expected)


def _voi_lut_item(first: int, data: np.ndarray, bits: int) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data), first, bits]
    item.LUTData = [int(v) for v in data]
    item["LUTData"].VR = "US"
    return item


def test_voi_lut_sequence_preferred_over_window(tmp_path):
    x = ramp(12)
    first, n = 1000, 2048
    lut = np.rint(np.linspace(0, 1, n) ** 0.5 * 4095).astype(np.uint16)  # a 12-bit gamma LUT
    write_dicom(tmp_path / "lut.dcm", x, laterality="L", view="CC", bits_stored=12,
                VOILUTSequence=Sequence([_voi_lut_item(first, lut, 12)]), WindowCenter=100.0, WindowWidth=10.0)
    # PS3.3 C.11.2.1.1: values below the first mapped get the first entry, above the last the last.
    idx = np.clip(x.astype(np.int64) - first, 0, n - 1)
    expected = to16(lut[idx], 4095)
    np.testing.assert_array_equal(read_image(tmp_path / "lut.dcm"), expected)


def test_pixel_padding_value_and_range(tmp_path):
    x = ramp(16)
    x[:5, :] = 7
    write_dicom(tmp_path / "p.dcm", x, laterality="L", view="CC", PixelPaddingValue=7)
    expected = x.copy()
    expected[x == 7] = 0
    np.testing.assert_array_equal(read_image(tmp_path / "p.dcm"), expected)

    # Range limit given below the padding value: both orders are allowed by the standard.
    x12 = ramp(12)
    write_dicom(tmp_path / "r.dcm", x12, laterality="L", view="CC", bits_stored=12, photometric="MONOCHROME1",
                PixelPaddingValue=4095, PixelPaddingRangeLimit=4000)
    expected = 65535 - to16(x12, 4095)
    expected[x12 >= 4000] = 0
    out = read_image(tmp_path / "r.dcm")
    np.testing.assert_array_equal(out, expected)
    assert (x12 >= 4000).sum() > 10


# Each compressed syntax the public sets use, with the marker its first frame must start with
# (so the test proves the file really holds that codec's stream, not raw pixels).
_CODEC_MARKERS = {
    RLE_LOSSLESS: None,
    J2K_LOSSLESS: b"\xff\x4f",  # J2K codestream SOC
    JPEG_LOSSLESS_SV1: b"\xff\xc3",  # SOF3: lossless Huffman (RSNA)
    JPEG_LOSSLESS: b"\xff\xc3",
    JPEG_LS_LOSSLESS: b"\xff\xf7",  # SOF55: JPEG-LS
}


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("syntax", list(_CODEC_MARKERS))
def test_compressed_syntaxes_decode_exactly(tmp_path, syntax, bits):
    x = ramp(bits)
    x[::7, ::5] = 123  # some texture so the codec has work
    write_dicom(tmp_path / "c", x, laterality="R", view="CC", bits_stored=bits, transfer_syntax=syntax)
    ds = pydicom.dcmread(tmp_path / "c")
    assert ds.file_meta.TransferSyntaxUID == syntax and ds.BitsStored == bits
    marker = _CODEC_MARKERS[syntax]
    if marker is not None:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        assert frame[:2] == b"\xff\xd8" or frame[:2] == b"\xff\x4f"  # SOI or SOC
        assert marker in frame[:64]
    np.testing.assert_array_equal(read_image(tmp_path / "c"), to16(x, 2**bits - 1))  # extension-less


def test_rsna_like_jpeg2000_monochrome1_with_window(tmp_path):
    # RSNA: JPEG 2000 lossless, 12 bits stored, MONOCHROME1, a window pair and SIGMOID.
    x = ramp(12)
    c, w = 2047.0, 4096.0
    write_dicom(tmp_path / "r.dcm", x, laterality="L", view="MLO", bits_stored=12, photometric="MONOCHROME1",
                transfer_syntax=J2K_LOSSLESS, WindowCenter=[c, 1800.0], WindowWidth=[w, 3000.0],
                VOILUTFunction="SIGMOID")
    y = 4095.0 / (1.0 + np.exp(-4.0 * (x.astype(np.float64) - c) / w))
    np.testing.assert_array_equal(read_image(tmp_path / "r.dcm"), 65535 - to16(y, 4095))


@pytest.mark.parametrize("bits", [8, 9, 10, 11, 12, 13, 14, 15, 16])
def test_bits_stored_8_to_16(tmp_path, bits):
    x = ramp(bits)
    write_dicom(tmp_path / "b.dcm", x, laterality="L", view="CC", bits_stored=bits)
    ds = pydicom.dcmread(tmp_path / "b.dcm")
    assert ds.BitsAllocated == (8 if bits == 8 else 16)
    out = read_image(tmp_path / "b.dcm")
    np.testing.assert_array_equal(out, to16(x, 2**bits - 1))
    assert out.min() == 0 and out.max() == 65535


def test_8bit_sigmoid_like_cmmd(tmp_path):
    # CMMD: 8 bits allocated and stored, VOILUTFunction SIGMOID, WC 128, WW 256.
    x = ramp(8)
    write_dicom(tmp_path / "c.dcm", x, laterality="R", view="CC", bits_stored=8,
                WindowCenter=128, WindowWidth=256, VOILUTFunction="SIGMOID")
    y = 255.0 / (1.0 + np.exp(-4.0 * (x.astype(np.float64) - 128) / 256))
    np.testing.assert_array_equal(read_image(tmp_path / "c.dcm"), to16(y, 255))


@pytest.mark.parametrize("function", [None, "LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_functions_match_pydicom_with_rescale_and_multivalued_window(tmp_path, function):
    # Cross-check against pydicom's own VOI implementation on the first window pair.
    x = ramp(12)
    extra = {"VOILUTFunction": function} if function else {}
    write_dicom(tmp_path / "v.dcm", x, laterality="L", view="CC", bits_stored=12, RescaleSlope=0.5,
                RescaleIntercept=10.0, WindowCenter=[900.0, 100.0], WindowWidth=[1200.0, 50.0], **extra)
    ds = pydicom.dcmread(tmp_path / "v.dcm")
    ref = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0)
    lo, hi = 10.0, 4095 * 0.5 + 10.0  # the stored range 0..4095 through the Rescale
    expected = np.rint((ref - lo) / (hi - lo) * 65535).clip(0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(read_image(tmp_path / "v.dcm"), expected)
    # And the formula itself, so a pydicom change cannot move both sides at once.
    yr = x.astype(np.float64) * 0.5 + 10.0
    if function == "SIGMOID":
        formula = 1.0 / (1.0 + np.exp(-4.0 * (yr - 900.0) / 1200.0))
    elif function == "LINEAR_EXACT":
        formula = ((yr - 900.0) / 1200.0 + 0.5).clip(0, 1)
    else:
        formula = _linear(yr, 900.0, 1200.0)
    np.testing.assert_allclose(expected / 65535.0, formula, atol=1.0 / 65535)


def test_unknown_and_unsupported_transfer_syntax_named(tmp_path):
    write_dicom(tmp_path / "a.dcm", ramp(12), laterality="L", view="CC", bits_stored=12)
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: a video syntax
    ds.save_as(tmp_path / "mpeg.dcm")
    with pytest.raises(ImageReadError, match=r"mpeg\.dcm: .*MPEG2.*1\.2\.840\.10008\.1\.2\.4\.100"):
        read_image(tmp_path / "mpeg.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.99.1"  # private
    ds.save_as(tmp_path / "priv.dcm")
    with pytest.raises(ImageReadError, match=r"priv\.dcm: .*1\.2\.826\.0\.1\.3680043\.99\.1.* (is )?not a transfer syntax|priv\.dcm: unknown transfer syntax"):
        read_image(tmp_path / "priv.dcm")


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS])
def test_corrupt_compressed_stream_names_file_and_syntax(tmp_path, syntax):
    write_dicom(tmp_path / "c.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, transfer_syntax=syntax)
    ds = pydicom.dcmread(tmp_path / "c.dcm")
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 8]])  # stream cut short
    ds.save_as(tmp_path / "bad.dcm")
    # libjpeg would decode the cut JPEG streams silently into made-up pixels: refused up front.
    with pytest.raises(ImageReadError, match=rf"bad\.dcm: truncated .*\({re.escape(syntax)}\).*no end marker"):
        read_image(tmp_path / "bad.dcm")
    # A complete-looking stream with garbage inside: the decoder's own error, with the syntax.
    ds.PixelData = encapsulate([frame[:2] + bytes(range(256)) * 2 + b"\xff\xd9"])
    ds.save_as(tmp_path / "garbage.dcm")
    with pytest.raises(ImageReadError, match=rf"garbage\.dcm: cannot decode pixel data, .*{re.escape(syntax)}"):
        read_image(tmp_path / "garbage.dcm")


@pytest.mark.parametrize(
    "syntax,package",
    [(JPEG_LOSSLESS_SV1, "pylibjpeg-libjpeg"), (JPEG_LS_LOSSLESS, "pyjpegls"), (J2K_LOSSLESS, "pylibjpeg-openjpeg")],
)
def test_missing_decoder_per_syntax(tmp_path, monkeypatch, syntax, package):
    from pydicom.pixels.decoders.base import Decoder

    write_dicom(tmp_path / "j.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, transfer_syntax=syntax)
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(ImageReadError, match=rf"j\.dcm: cannot decode .*\({re.escape(syntax)}\): no decoder.*{package}"):
        read_image(tmp_path / "j.dcm")


def test_missing_decoder_names_syntax_and_package(tmp_path, monkeypatch):
    from pydicom.pixels.decoders.base import Decoder

    write_dicom(tmp_path / "j.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, transfer_syntax=J2K_LOSSLESS)
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(ImageReadError, match=r"j\.dcm: cannot decode JPEG 2000.*install .*pylibjpeg-openjpeg"):
        read_image(tmp_path / "j.dcm")


def test_corrupt_and_pixel_less_files(tmp_path):
    write_dicom(tmp_path / "ok.dcm", ramp(12), laterality="L", view="CC", bits_stored=12)
    data = (tmp_path / "ok.dcm").read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(data[: len(data) - 1000])  # pixel data cut short
    with pytest.raises(ImageReadError, match=r"trunc\.dcm: "):
        read_image(tmp_path / "trunc.dcm")
    # Header parsing alone also notices the cut (declared pixel length exceeds the file).
    with pytest.raises(ImageReadError, match=r"trunc\.dcm: truncated DICOM file"):
        read_dicom_info(tmp_path / "trunc.dcm")
    (tmp_path / "head.dcm").write_bytes(data[:200])  # header cut short
    with pytest.raises(ImageReadError, match=r"head\.dcm: "):
        read_dicom_info(tmp_path / "head.dcm")
    write_dicom(tmp_path / "nopix.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, PixelData=None)
    with pytest.raises(ImageReadError, match=r"nopix\.dcm: DICOM file has no pixel data"):
        read_image(tmp_path / "nopix.dcm")
    assert read_dicom_info(tmp_path / "nopix.dcm").has_pixel_data is False
    assert read_dicom_info(tmp_path / "ok.dcm").has_pixel_data is True
    (tmp_path / "text.dcm").write_text("not dicom")
    with pytest.raises(ImageReadError, match=r"text\.dcm: "):
        read_image(tmp_path / "text.dcm")


def test_multiframe_and_colour_refused(tmp_path):
    write_dicom(tmp_path / "mf.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, NumberOfFrames=2)
    with pytest.raises(ImageReadError, match=r"mf\.dcm: 2 frames"):
        read_image(tmp_path / "mf.dcm")
    write_dicom(tmp_path / "rgb.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, SamplesPerPixel=3)
    with pytest.raises(ImageReadError, match=r"rgb\.dcm: 3 samples per pixel"):
        read_image(tmp_path / "rgb.dcm")


def test_mirrored_storage_is_flipped_to_display_convention(tmp_path):
    x = ramp(12)
    # L breast stored with rows running Posterior: chest wall on the right -> flip.
    write_dicom(tmp_path / "l.dcm", x, laterality="L", view="CC", bits_stored=12, PatientOrientation=["P", "L"])
    assert read_dicom_info(tmp_path / "l.dcm").mirrored is True
    np.testing.assert_array_equal(read_image(tmp_path / "l.dcm"), to16(x, 4095)[:, ::-1])
    np.testing.assert_array_equal(read_dicom_pixels(tmp_path / "l.dcm", standard_orientation=False), to16(x, 4095))
    # R breast with rows running Posterior is the convention: unchanged.
    write_dicom(tmp_path / "r.dcm", x, laterality="R", view="MLO", bits_stored=12, PatientOrientation=["P", "F"])
    assert read_dicom_info(tmp_path / "r.dcm").mirrored is False
    np.testing.assert_array_equal(read_image(tmp_path / "r.dcm"), to16(x, 4095))


def test_header_info_fields(tmp_path):
    write_dicom(tmp_path / "a.dcm", ramp(12), laterality="R", view="MLO", bits_stored=12, patient_id="P7",
                study_uid="1.2.3.4")
    info = read_dicom_info(tmp_path / "a.dcm")
    assert (info.study_uid, info.patient_id, info.laterality, info.view, info.view_name) == (
        "1.2.3.4", "P7", "R", "MLO", "R-MLO")
    assert (info.modality, info.presentation_intent, info.rows, info.columns) == ("MG", "FOR PRESENTATION", H, W)


def test_view_from_code_sequence_only(tmp_path):
    # CMMD: no ViewPosition, ViewCodeSequence with the SNOMED code.
    write_dicom(tmp_path / "a.dcm", ramp(12), laterality="L", view="MLO", bits_stored=12, ViewPosition=None)
    assert read_dicom_info(tmp_path / "a.dcm").view == "MLO"
    # Code meaning only, and a spot-compression modifier.
    code = Dataset()
    code.CodeMeaning = "cranio-caudal"
    mod = Dataset()
    mod.CodeValue, mod.CodeMeaning = "399055006", "spot compression"
    code.ViewModifierCodeSequence = Sequence([mod])
    write_dicom(tmp_path / "b.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, ViewPosition=None,
                ViewCodeSequence=Sequence([code]))
    info = read_dicom_info(tmp_path / "b.dcm")
    assert info.view == "CC" and info.view_modifiers == ["spot compression"]


def test_cbis_ddsm_style_header(tmp_path):
    # CBIS-DDSM: implicit VR little endian, Laterality (not ImageLaterality), view in
    # PatientOrientation, no ViewPosition.
    x = ramp(16)
    write_dicom(tmp_path / "1-1.dcm", x, laterality="R", view="CC", ImageLaterality=None, Laterality="R",
                ViewPosition=None, ViewCodeSequence=None, PatientOrientation="CC", transfer_syntax="1.2.840.10008.1.2")
    assert pydicom.dcmread(tmp_path / "1-1.dcm").file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    info = read_dicom_info(tmp_path / "1-1.dcm")
    assert info.view_name == "R-CC" and info.mirrored is None and info.has_pixel_data
    np.testing.assert_array_equal(read_image(tmp_path / "1-1.dcm"), x)
    data = (tmp_path / "1-1.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-10])
    with pytest.raises(ImageReadError, match="truncated"):
        read_dicom_info(tmp_path / "cut.dcm")


@pytest.mark.parametrize(
    "raw,expected",
    [("CC", "CC"), ("cc", "CC"), ("MLO ", "MLO"), ("ML O", "MLO"), ("M L O", "MLO"), ("medio-lateral oblique", "MLO"),
     ("XCCL", "XCCL"), ("ml", "ML"), ("", None), (None, None)],
)
def test_normalise_view(raw, expected):
    assert normalise_view(raw) == expected


def test_write_dicom_is_deterministic(tmp_path):
    write_dicom(tmp_path / "a" / "x.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, uid_seed="s1")
    write_dicom(tmp_path / "b" / "x.dcm", ramp(12), laterality="L", view="CC", bits_stored=12, uid_seed="s1")
    assert (tmp_path / "a" / "x.dcm").read_bytes() == (tmp_path / "b" / "x.dcm").read_bytes()
