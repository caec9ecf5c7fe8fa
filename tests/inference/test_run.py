"""`mammokit run`: raw images -> predictions in one command (synthetic exams, tiny preset)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mammokit.config import LABEL_COLUMNS, PRESETS
from mammokit.models import create_model, save_checkpoint

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory):
    from mammokit.synth.generator import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, n_exams=1, seed=3, scale=TINY.scale)
    return out / "manifest.csv"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    paths = {}
    for c in (1, 3):
        model = create_model("view_wise", in_channels=c)
        paths[c] = d / f"vw{c}.safetensors"
        save_checkpoint(paths[c], model, arch="view_wise", model_args={"in_channels": c}, preset=TINY)
    patch = create_model("patchnet_small", num_classes=3)
    paths["patch"] = d / "patch.safetensors"
    save_checkpoint(paths["patch"], patch, arch="patchnet_small", model_args={"num_classes": 3}, preset=TINY)
    return paths


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_image_only_equals_stages_and_resumes(tmp_path, raw_dataset, checkpoints):
    from mammokit.cli import main
    from mammokit.inference.predict import predict

    out = tmp_path / "out"
    rc = main(["run", str(raw_dataset), "--out", str(out), "--model", str(checkpoints[1]), "--preset", "tiny",
               "--tta", "0", "--device", "cpu"])
    assert rc == 0
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 1 and list(rows[0]) == ["exam_id", *LABEL_COLUMNS, "views"]
    assert (out / "exams.json").is_file() and not (out / "heatmaps").exists()  # image-only: no heatmaps
    # Same as running predict on the work folder the run made.
    stage = predict(out, [checkpoints[1]], tta=0, device="cpu")
    np.testing.assert_allclose([float(rows[0][c]) for c in LABEL_COLUMNS], stage.probabilities[0], atol=5e-5)
    # A second run resumes (preprocessing reused) and gives the same file.
    before = (out / "predictions.csv").read_bytes()
    assert main(["run", str(raw_dataset), "--out", str(out), "--model", str(checkpoints[1]), "--preset", "tiny",
                 "--tta", "0", "--device", "cpu"]) == 0
    assert (out / "predictions.csv").read_bytes() == before


def test_run_with_heatmaps_needs_patch_model(tmp_path, raw_dataset, checkpoints):
    from mammokit.inference.run import run

    with pytest.raises(ValueError, match="--patch-model"):
        run(raw_dataset, tmp_path / "out", models=[checkpoints[3]], preset="tiny")
    assert not (tmp_path / "out").exists()  # checked before any stage ran
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        run(raw_dataset, tmp_path / "out", models=[tmp_path / "nope.safetensors"], preset="tiny")


@pytest.mark.slow
def test_run_with_heatmaps(tmp_path, raw_dataset, checkpoints):
    from mammokit.inference.run import run

    result = run(raw_dataset, tmp_path / "out", models=[checkpoints[3], checkpoints[1]],
                 patch_model=checkpoints["patch"], preset="tiny", tta=1, device="cpu")
    assert result.heatmaps is not None and (tmp_path / "out" / "heatmaps").is_dir()
    assert len(result.predictions.exam_ids) == 1 and not result.predictions.skipped
    p = result.predictions.probabilities
    assert p.shape == (1, 4) and np.all((p > 0) & (p < 1))


# ------------------------------------------------------------------------ --preset auto


def test_run_reads_the_preset_from_the_checkpoints(tmp_path, raw_dataset, checkpoints, capsys):
    """No preset flag: preprocess, (heatmaps) and predict run at the models' recorded preset."""
    import json

    from mammokit.cli import main

    out = tmp_path / "out"
    assert main(["run", str(raw_dataset), "--out", str(out), "--model", str(checkpoints[1]), "--tta", "0",
                 "--device", "cpu"]) == 0
    meta = json.loads((out / "exams.json").read_text())
    assert meta["preset"] == "tiny" and meta["preset_config"] == json.loads(json.dumps(TINY.to_dict()))
    assert len(_rows(out / "predictions.csv")) == 1


def test_preset_mismatches_are_errors_naming_both(tmp_path, raw_dataset, checkpoints, capsys):
    from mammokit.cli import main
    from mammokit.config import PresetMismatchError
    from mammokit.inference.heatmaps import make_heatmaps
    from mammokit.inference.predict import predict
    from mammokit.inference.run import run

    small = tmp_path / "small.safetensors"
    save_checkpoint(small, create_model("view_wise", in_channels=3), arch="view_wise", model_args={"in_channels": 3},
                    preset="small")
    # Models and patch model at different presets: refused before any stage runs.
    with pytest.raises(PresetMismatchError, match=rf"{small} .* small .* {checkpoints['patch']} .* tiny"):
        run(raw_dataset, tmp_path / "out", models=[small], patch_model=checkpoints["patch"])
    assert not (tmp_path / "out").exists()
    # preprocess --preset auto: from the model given, or an error naming what to pass.
    wd = tmp_path / "wd"
    assert main(["preprocess", str(raw_dataset), "--out", str(wd), "--patch-model", str(checkpoints["patch"])]) == 0
    assert main(["preprocess", str(raw_dataset), "--out", str(tmp_path / "w2")]) == 2
    err = capsys.readouterr().err
    assert "--preset auto: no model given (--model / --patch-model)" in err and "scale:F" in err
    # A work folder at tiny with a model at small: predict and heatmaps refuse, naming both.
    small1 = tmp_path / "small1.safetensors"
    save_checkpoint(small1, create_model("view_wise", in_channels=1), arch="view_wise", model_args={"in_channels": 1},
                    preset="small")
    with pytest.raises(PresetMismatchError, match=rf"work folder {wd} was made at preset tiny .* but model {small1} at preset small"):
        predict(wd, [small1], tta=0, device="cpu")
    small_patch = tmp_path / "small_patch.safetensors"
    save_checkpoint(small_patch, create_model("patchnet_small", num_classes=3), arch="patchnet_small",
                    model_args={"num_classes": 3}, preset="small")
    with pytest.raises(PresetMismatchError, match=rf"work folder {wd} .* tiny .* patch model {small_patch} .* small"):
        make_heatmaps(wd, small_patch, device="cpu")
    assert main(["predict", str(wd), "--model", str(small1), "--device", "cpu", "--tta", "0"]) == 2
    assert "PresetMismatch" not in capsys.readouterr().err  # one line, no traceback


def test_paper_preset_on_small_images_fails_naming_the_sizes(tmp_path, raw_dataset, capsys):
    """The paper's 2677 x 1942 CC window does not fit tiny-scale (416 x 320) images: each image
    fails with its size and the window's, never a mostly-padding crop."""
    from mammokit.cli import main

    assert main(["preprocess", str(raw_dataset), "--out", str(tmp_path / "w"), "--preset", "paper"]) == 1
    err = capsys.readouterr().err
    assert "no image could be preprocessed" in err
    assert "image 416x320 is smaller than preset 'paper''s L-CC window 2677x1942" in err
    import csv

    with open(tmp_path / "w" / "preprocess_failures.csv", newline="") as f:
        reasons = [row["reason"] for row in csv.DictReader(f)]
    assert len(reasons) == 4 and all("smaller than preset 'paper'" in r for r in reasons)
