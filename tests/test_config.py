"""Presets: scaling, lookup, and rebuilding a preset from the metadata stored in work folders."""

import pytest

from mammokit.config import (
    PRESETS,
    get_preset,
    preset_for_scale,
    preset_from_dict,
    preset_of,
    workdir_preset,
)


def test_paper_preset_has_the_papers_sizes():
    p = PRESETS["paper"]
    assert p.cc_input_size == (2677, 1942) and p.mlo_input_size == (2974, 1748)
    assert (p.erosion_iterations, p.crop_buffer, p.patch_size, p.heatmap_stride) == (100, 50, 256, 70)
    assert p.input_size("L-CC") == (2677, 1942) and p.input_size("R-MLO") == (2974, 1748)


def test_small_preset_scales_every_size_by_a_quarter():
    p = PRESETS["small"]
    # round(2677 / 4) = 669, round(1942 / 4) = 486 (485.5 rounds to even), round(2974 / 4) = 744 ...
    assert p.cc_input_size == (669, 486) and p.mlo_input_size == (744, 437)
    assert (p.erosion_iterations, p.crop_buffer, p.patch_size, p.heatmap_stride) == (25, 12, 64, 18)
    assert preset_for_scale(0.25) is p


def test_stored_presets_round_trip_and_bad_ones_are_named():
    small = PRESETS["small"]
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in small.to_dict().items()}  # as JSON holds it
    assert preset_from_dict(stored) == small
    assert preset_of("tiny") is PRESETS["tiny"] and preset_of(None) is None and preset_of(small) is small
    assert workdir_preset({"preset_config": stored}) == small
    assert workdir_preset({"preset": "half"}) == PRESETS["half"]
    with pytest.raises(ValueError, match="w/exams.json: unreadable preset_config .*unknown field"):
        workdir_preset({"preset_config": {**stored, "bogus": 1}}, "w/exams.json")
    with pytest.raises(ValueError, match="no preset recorded"):
        workdir_preset({}, "w/exams.json")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")
