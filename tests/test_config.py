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


# ----------------------------------------------------------------------------- custom presets


def test_scale_spec_builds_every_size_from_the_papers():
    from mammokit.config import scaled_preset

    assert get_preset("scale:0.25") is PRESETS["small"]  # a named preset's scale gives that preset
    p = get_preset("scale:0.3")
    # round(2677 * 0.3) = 803, round(1942 * 0.3) = 583, round(256 * 0.3) = 77, round(70 * 0.3) = 21
    assert p.cc_input_size == (803, 583) and p.patch_size == 77 and p.heatmap_stride == 21
    assert p == scaled_preset("scale0.3", 0.3)
    for bad in ("scale:", "scale:abc", "scale:0", "scale:1.5"):
        with pytest.raises(ValueError, match="scale"):
            get_preset(bad)
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*scale:F.*TOML"):
        get_preset("huge")


def test_toml_preset_from_a_scale_or_a_base_with_overrides(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('scale = 0.2\ncc_input_size = [500, 400]\nheatmap_stride = 9\n')
    p = get_preset(str(f))
    assert p.name == "mine" and p.scale == 0.2 and p.cc_input_size == (500, 400) and p.heatmap_stride == 9
    # Everything not given is the paper's size times the scale: round(2974 * 0.2) = 595, round(100 * 0.2) = 20.
    assert p.mlo_input_size == (595, 350) and p.erosion_iterations == 20
    g = tmp_path / "based.toml"
    g.write_text('name = "smallish"\nbase = "small"\npatch_size = 48\n')
    q = get_preset(g)
    assert q.name == "smallish" and q.patch_size == 48
    assert q.cc_input_size == PRESETS["small"].cc_input_size and q.scale == 0.25


@pytest.mark.parametrize("text, message", [
    ('scale = 0.2\ncrop_size = 3\n', "unknown preset key.*crop_size"),
    ('cc_input_size = [500, 400]\n', "needs base"),
    ('scale = 2.0\n', "scale must be"),
    ('scale = 0.2\ncc_input_size = [500]\n', r"cc_input_size must be \[H, W\]"),
    ('scale = 0.2\npatch_size = "big"\n', "patch_size must be an integer"),
    ('base = "nope"\n', "unknown preset 'nope'"),
    ('scale = = 0.2\n', "not a valid TOML"),
])
def test_bad_toml_presets_name_the_key_and_the_file(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        get_preset(str(f))
    if "unknown preset '" not in message:
        assert str(f) in str(info.value)


def test_missing_toml_preset_is_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml: preset file not found"):
        get_preset(str(tmp_path / "nope.toml"))


def test_preset_differences_and_the_mismatch_error_name_both():
    import dataclasses

    from mammokit.config import PresetMismatchError, check_same_preset, preset_differences

    small, tiny = PRESETS["small"], PRESETS["tiny"]
    assert preset_differences(small, small) == []
    # Noise, stride, architecture and name do not decide what a model sees.
    other = dataclasses.replace(small, name="x", max_crop_noise=0, heatmap_stride=5, patch_arch="densenet121")
    assert preset_differences(small, other) == []
    assert preset_differences(small, tiny)[:2] == ["scale 0.25 vs 0.125", "cc_input_size 669x486 vs 335x243"]
    with pytest.raises(PresetMismatchError, match=r"work W was made at preset small \(scale 0.25.*but model M at preset tiny"):
        check_same_preset(small, "work W", tiny, "model M")
