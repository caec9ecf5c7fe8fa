"""The View type: parsing, orientation and the mirroring rule of the reference implementation."""

from __future__ import annotations

import numpy as np
import pytest

from mammokit.errors import MammokitError
from mammokit.transforms import from_model_frame, to_model_frame
from mammokit.views import (
    VIEWS,
    View,
    ViewError,
    chest_wall_side,
    needs_flip,
    normalise_view_name,
    view_kind,
)


def test_parse_and_names():
    v = View.parse("R-MLO")
    assert (v.laterality, v.kind, v.name, v.stem, v.breast, str(v)) == ("R", "MLO", "R-MLO", "R_MLO", "right", "R-MLO")
    assert View.parse(v) is v
    assert [View.parse(n).name for n in VIEWS] == list(VIEWS)
    assert view_kind("L-CC") == "CC" and view_kind("MLO") == "MLO"


@pytest.mark.parametrize("bad", ["L-ML", "LCC", "l-cc", "X-CC", "", "L-CC-2", None])
def test_unknown_views_are_user_errors_naming_the_value(bad):
    with pytest.raises(ViewError, match="unknown view .*expected one of L-CC, R-CC, L-MLO, R-MLO"):
        View.parse(bad)
    assert issubclass(ViewError, MammokitError) and issubclass(ViewError, ValueError)


def test_mirroring_rule():
    # Stored orientation NO: left breasts have the chest wall on the left, right breasts on the right.
    assert [needs_flip(v, "NO") for v in VIEWS] == [False, True, False, True]
    assert [needs_flip(v, "YES") for v in VIEWS] == [True, False, True, False]
    assert [chest_wall_side(v) for v in VIEWS] == ["left", "right", "left", "right"]
    with pytest.raises(ViewError, match="horizontal_flip must be 'YES' or 'NO'"):
        needs_flip("L-CC", "MAYBE")


@pytest.mark.parametrize("text, expected", [("L-CC", "L-CC"), ("l_cc", "L-CC"), ("LCC", "L-CC"), (" r mlo ", "R-MLO"),
                                            ("L-ML", None), ("XCCL", None), ("", None)])
def test_lenient_names_for_user_files(text, expected):
    assert normalise_view_name(text) == expected


def test_model_frame_round_trip():
    a = np.arange(12).reshape(2, 2, 3)  # [C, H, W]
    assert np.array_equal(to_model_frame(a, "R-CC"), a[..., ::-1])
    assert to_model_frame(a, "L-CC") is a
    assert np.array_equal(from_model_frame(to_model_frame(a, "R-MLO"), "R-MLO"), a)
    assert np.array_equal(to_model_frame(a, "L-MLO", "YES"), a[..., ::-1])
