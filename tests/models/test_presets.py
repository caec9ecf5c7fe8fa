"""The preset a checkpoint records, and ``--preset auto``: read from the checkpoints, checked
against each other and against a work folder."""

from __future__ import annotations

import logging

import pytest
import torch

from mammokit.config import PRESETS, PresetMismatchError, scaled_preset
from mammokit.models import create_model, save_checkpoint
from mammokit.models.presets import check_against_workdir, checkpoint_preset, resolve_preset


def _ckpt(path, preset):
    torch.manual_seed(0)
    save_checkpoint(path, create_model("patchnet_small", width=4), arch="patchnet_small",
                    model_args={"width": 4}, preset=preset)
    return path


def test_checkpoint_records_every_size_of_its_preset(tmp_path):
    custom = scaled_preset("custom", 0.07)
    assert checkpoint_preset(_ckpt(tmp_path / "a.safetensors", custom)) == custom
    assert checkpoint_preset(_ckpt(tmp_path / "b.safetensors", "tiny")) == PRESETS["tiny"]
    assert checkpoint_preset(_ckpt(tmp_path / "c.safetensors", None)) is None
    # The authors' torch.save files are at full resolution.
    torch.save({"w": torch.zeros(1)}, tmp_path / "authors.p")
    assert checkpoint_preset(tmp_path / "authors.p") == PRESETS["paper"]
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        checkpoint_preset(tmp_path / "nope.safetensors")


def test_auto_reads_the_checkpoints_and_refuses_disagreement(tmp_path):
    tiny_a = _ckpt(tmp_path / "a.safetensors", "tiny")
    tiny_b = _ckpt(tmp_path / "b.safetensors", PRESETS["tiny"].to_dict())
    small = _ckpt(tmp_path / "s.safetensors", "small")
    none = _ckpt(tmp_path / "n.safetensors", None)
    assert resolve_preset("auto", [tiny_a, none, tiny_b]) == PRESETS["tiny"]
    with pytest.raises(PresetMismatchError, match=rf"{tiny_a} was trained at preset tiny .* but {small} at preset small"):
        resolve_preset("auto", [tiny_a, small])
    # Nothing to read: the error says what to pass.
    with pytest.raises(ValueError, match=r"--preset auto: no model given \(--model / --patch-model\).*scale:F"):
        resolve_preset("auto", [])
    with pytest.raises(ValueError, match=rf"{none} record\(s\) no preset"):
        resolve_preset(None, [none])
    assert resolve_preset("auto", [none], fallback=PRESETS["half"]) == PRESETS["half"]


def test_an_explicit_preset_wins_with_a_warning(tmp_path, caplog):
    small = _ckpt(tmp_path / "s.safetensors", "small")
    with caplog.at_level(logging.WARNING, logger="mammokit"):
        assert resolve_preset("scale:0.125", [small]) == PRESETS["tiny"]
    assert f"{small} was trained at preset small" in caplog.text


def test_work_folder_must_match_the_models_or_the_asked_preset(caplog):
    tiny, small = PRESETS["tiny"], PRESETS["small"]
    assert check_against_workdir("auto", tiny, "work folder W", [("model M", tiny), ("model N", None)]) is tiny
    with pytest.raises(PresetMismatchError, match=r"work folder W was made at preset tiny .* but model M at preset small"):
        check_against_workdir("auto", tiny, "work folder W", [("model M", small)])
    with pytest.raises(PresetMismatchError, match=r"work folder W .* tiny .* but --preset small"):
        check_against_workdir("small", tiny, "work folder W", [])
    with caplog.at_level(logging.WARNING, logger="mammokit"):
        assert check_against_workdir("tiny", tiny, "work folder W", [("model M", small)]) is tiny
    assert "model M was trained at preset small" in caplog.text
