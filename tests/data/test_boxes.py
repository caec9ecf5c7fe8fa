"""Lesion boxes: the CSV format and its errors, and the mapping into the preprocessed crop
checked against hand-computed coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from mammokit.data.boxes import Box, BoxesError, box_mask, box_to_crop_frame, read_boxes


def test_read_boxes_groups_by_exam_and_view(tmp_path):
    f = tmp_path / "boxes.csv"
    f.write_text("exam_id,view,label,x0,y0,x1,y1\n"
                 "e1,L-CC,malignant,10,20,30,40\n"
                 "e1,l_cc,Benign,1.5,2,3.5,4\n"
                 "e2,R-MLO,benign,0,0,5,5\n")
    boxes = read_boxes(f)
    assert list(boxes) == [("e1", "L-CC"), ("e2", "R-MLO")]
    assert boxes["e1", "L-CC"][0] == Box("e1", "L-CC", "malignant", 10, 20, 30, 40, 2)
    assert boxes["e1", "L-CC"][1].label == "benign" and boxes["e1", "L-CC"][1].x0 == 1.5


@pytest.mark.parametrize("row, message", [
    ("e1,L-XX,malignant,0,0,1,1", "line 2: unknown view 'L-XX'"),
    ("e1,L-CC,cancer,0,0,1,1", "line 2: label must be malignant or benign, got 'cancer'"),
    ("e1,L-CC,benign,a,0,1,1", "line 2: x0 must be a number"),
    ("e1,L-CC,benign,-1,0,1,1", "line 2: x0 must be a finite number >= 0"),
    ("e1,L-CC,benign,5,0,5,1", "line 2: empty box"),
    (",L-CC,benign,0,0,1,1", "line 2: empty exam_id"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    f = tmp_path / "boxes.csv"
    f.write_text("exam_id,view,label,x0,y0,x1,y1\n" + row + "\n")
    with pytest.raises(BoxesError, match=str(f).replace(".", r"\.") + ": " + message.replace("(", r"\(")):
        read_boxes(f)


def test_missing_columns_and_file(tmp_path):
    f = tmp_path / "boxes.csv"
    f.write_text("exam_id,view,x0,y0,x1,y1\ne1,L-CC,0,0,1,1\n")
    with pytest.raises(BoxesError, match="missing column.*label"):
        read_boxes(f)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_boxes(tmp_path / "nope.csv")


def test_box_mapping_by_hand():
    # Crop window (top, bottom, left, right) = (100, 300, 40, 190): the crop is 200 x 150.
    win = (100, 300, 40, 190)
    # L-CC, flip NO: chest wall left, no mirroring: subtract (left, top).
    assert box_to_crop_frame((60, 150, 80, 170), win, "L-CC") == (20, 50, 40, 70)
    # R-CC, flip NO: mirrored. x 20..40 in the crop -> 150 - 40 .. 150 - 20 = 110..130.
    assert box_to_crop_frame((60, 150, 80, 170), win, "R-CC") == (110, 50, 130, 70)
    # horizontal_flip YES swaps which side is mirrored.
    assert box_to_crop_frame((60, 150, 80, 170), win, "L-MLO", "YES") == (110, 50, 130, 70)
    assert box_to_crop_frame((60, 150, 80, 170), win, "R-MLO", "YES") == (20, 50, 40, 70)
    # Partly outside the crop: clipped (x 0..50 -> -40..10 -> 0..10; y 280..400 -> 180..200).
    assert box_to_crop_frame((0, 280, 50, 400), win, "L-CC") == (0, 180, 10, 200)
    # Entirely outside (left of the crop, or below it): None.
    assert box_to_crop_frame((0, 150, 30, 170), win, "L-CC") is None
    assert box_to_crop_frame((60, 300, 80, 310), win, "R-CC") is None


def test_box_mask_covers_every_touched_pixel():
    m = box_mask([(1.5, 2, 3.2, 4)], (6, 6))
    expected = np.zeros((6, 6), bool)
    expected[2:4, 1:4] = True  # columns 1, 2, 3 are touched by x in [1.5, 3.2); rows 2, 3
    np.testing.assert_array_equal(m, expected)
    # A mirrored pixel-exact box stays pixel-exact: columns 2..4 of 10 -> 10-5 .. 10-2 = 5..7.
    win = (0, 6, 0, 10)
    frame = box_to_crop_frame((2, 0, 5, 6), win, "R-CC")
    flipped = box_mask([frame], (6, 10))
    original = box_mask([(2, 0, 5, 6)], (6, 10))
    np.testing.assert_array_equal(flipped, original[:, ::-1])
