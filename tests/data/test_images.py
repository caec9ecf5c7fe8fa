"""PNG reading/writing and read_image's format detection and errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mammokit.data.images import (
    ImageReadError,
    is_dicom_file,
    read_image,
    read_png8,
    write_png8,
    write_png16,
)


def test_png16_round_trip_exact(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(37, 23), dtype=np.uint16)
    arr[0, 0], arr[-1, -1] = 0, 65535
    write_png16(tmp_path / "a.png", arr)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint16 and out.shape == (37, 23)
    np.testing.assert_array_equal(out, arr)
    # No temporary files left beside the output (atomic write).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_png8_is_scaled_by_257(tmp_path):
    arr = np.array([[0, 1, 128], [200, 254, 255]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), arr)
    out = read_image(tmp_path / "g.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[0, 257, 32896], [51400, 65278, 65535]])


def test_grey_rgb_png_is_accepted_colour_refused(tmp_path):
    grey = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([grey, grey, grey]))
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), grey.astype(np.uint16) * 257)
    colour = np.dstack([grey, grey, grey + 1])
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(ImageReadError, match=r"colour\.png: colour image"):
        read_image(tmp_path / "colour.png")


def test_write_png8_mask_and_range_checks(tmp_path):
    mask = np.zeros((5, 4), bool)
    mask[1:3, 2] = True
    write_png8(tmp_path / "m.png", mask)
    got = read_png8(tmp_path / "m.png")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, mask.astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="outside uint16"):
        write_png16(tmp_path / "bad.png", np.array([[70000]]))
    with pytest.raises(ValueError, match="2-D"):
        write_png16(tmp_path / "bad.png", np.zeros((2, 2, 2), np.uint16))
    with pytest.raises(ValueError, match="integer"):
        write_png16(tmp_path / "bad.png", np.zeros((2, 2), np.float32))
    assert not (tmp_path / "bad.png").exists()


def test_read_image_errors_name_file_and_reason(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.png: not a PNG or DICOM image"):
        read_image(tmp_path / "notes.png")
    good = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 50
    write_png16(tmp_path / "t.png", good)
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match=r"trunc\.png: truncated or corrupt PNG"):
        read_image(tmp_path / "trunc.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: empty file"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)
    assert issubclass(ImageReadError, ValueError)


def test_dicom_detected_by_preamble_without_extension(tmp_path):
    data = b"\0" * 128 + b"DICM" + b"\0" * 10
    (tmp_path / "IM0001").write_bytes(data)
    (tmp_path / "short").write_bytes(b"\0" * 20)
    (tmp_path / "x.DCM").write_bytes(b"")
    assert is_dicom_file(tmp_path / "IM0001")
    assert not is_dicom_file(tmp_path / "short")
    assert is_dicom_file(tmp_path / "x.DCM")  # by extension, case-insensitive
    # The extension-less file is routed to the DICOM reader, whose error says so.
    with pytest.raises(ImageReadError, match=r"IM0001: (unreadable DICOM|DICOM file has no pixel data)"):
        read_image(tmp_path / "IM0001")


@pytest.mark.real
def test_real_pngs(real_data_dir):
    for name, chest_wall_col, far_col in (("1_L_CC", 0, -1), ("2_R_CC", -1, 0)):
        path = real_data_dir / f"{name}.png"
        img = read_image(path)
        assert img.dtype == np.uint16 and img.shape == (3328, 2560)
        # Exactly the stored 16-bit values (independent decoder: OpenCV's imread).
        np.testing.assert_array_equal(img, cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
        # Background exactly 0 over most of the image; display orientation: the breast touches the
        # chest-wall edge, the opposite edge is background.
        assert (img == 0).mean() > 0.5
        assert img[:, chest_wall_col].max() > 0 and img[:, far_col].max() == 0
