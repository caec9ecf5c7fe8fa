"""``python -m mammokit.bench`` in its CI-safe form: structure and accuracy, never speed."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from mammokit import bench
from mammokit.config import VIEWS, get_preset


@pytest.mark.slow  # ~30 s of CPU time; more wall time on a loaded machine
def test_quick_bench_writes_complete_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # tiny preset, non-overlapping patches, 1 TTA draw, no warm-up: structure, not speed. The
    # fast heatmap path (folded channel, patches cut from a device tensor, other batch size)
    # differs from the reference (3 channels, host-cut patches, batch 100) and is compared with it.
    rc = bench.main([
        "--quick", "--preset", "tiny", "--device", "cpu", "--data", "synthetic", "--stride", "32",
        "--warmup", "0", "--max-patches", "128", "--tta", "1", "-o", str(out),
    ])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == bench.SCHEMA
    env = doc["environment"]
    assert env["device"]["device_type"] == "cpu" and env["device"]["device_name"].startswith("cpu-")
    for key in ("python", "torch", "cuda", "cudnn", "numpy", "opencv"):
        assert key in env["software"]
    settings = doc["settings"]
    assert settings["fast_dtype"] == "fp32" and settings["repeats"] == 1 and settings["channels_last"] is False
    res = doc["presets"]["tiny"]
    assert res["image_sizes"]["cropped"]["L-CC"] == list(bench.crop_size(get_preset("tiny"), "L-CC"))
    assert set(res["batch_sizes"]) >= {"heatmaps_fast", "heatmaps_reference", "predict_draws", "train_exams"}
    stages = res["stages"]
    assert set(stages) == set(bench.STAGES)
    for name, stage in stages.items():
        assert "error" not in stage, (name, stage.get("error"))

    hm = stages["heatmaps"]
    paths = [r["path"] for r in hm["rows"]]
    assert paths[:2] == ["reference", "fast"]
    assert hm["patches_timed"] == 128 and hm["extrapolated"] is True
    for r in hm["rows"]:
        assert r["patches_per_s"] > 0 and math.isfinite(r["s_per_exam"])
    assert hm["max_abs_diff"] <= 1e-4 and hm["accuracy_ok"] is True

    pr = stages["predict"]
    assert [r["path"] for r in pr["rows"]] == ["reference", "fast"]
    assert pr["tta"] == 1 and pr["max_abs_diff"] <= 1e-4
    pl = stages["pipeline"]
    assert pl["exams_done"] == 2 and pl["exams_timed"] == 1 and pl["exams_per_s"] > 0
    tr = stages["train"]
    assert tr["exams_per_s"] > 0 and tr["peak_memory_bytes"] > 0 and math.isfinite(tr["loss_last"])

    printed = capsys.readouterr().out
    assert "heatmaps" in printed and "pipeline" in printed and f"wrote {out}" in printed


def test_patch_engine_folded_host_cut_and_assembly_match_library():
    """The bench's patch paths compute the library's heatmaps (compute_heatmaps) on one image."""
    from mammokit.heatmaps.sliding import compute_heatmaps, standardize_image

    preset = get_preset("tiny")
    exam = bench.make_exams(preset, 1, seed=3, data="synthetic")[0]
    image = bench.model_frame(exam.images["R-MLO"], "R-MLO")
    std = standardize_image(image)
    P, stride = preset.patch_size, 24
    calib = bench._calibration_patches(exam, preset, seed=3)
    models = bench.build_patch_models(preset, seed=3, calib=calib)
    grids = bench.patch_grids([image.shape], P, stride, seed=5)
    ref = bench.PatchEngine(models, bench.Levers(cut="host", batch=37), "cpu").probabilities([std.numpy()], grids, P)[0]
    fast = bench.PatchEngine(models, bench.Levers(fold=True, channels_last=True, batch=64), "cpu").probabilities(
        [std], grids, P)[0]
    assert ref.shape == (len(grids[0][0]) * len(grids[0][1]), 3)
    assert float((ref - fast).abs().max()) < 1e-5
    # Probabilities are spread (calibrated weights), so the comparison is not trivially small.
    assert float(ref[:, 0].std()) > 1e-3
    maps = bench.assemble_heatmaps(ref, *grids[0], image.shape, P)
    lib = compute_heatmaps(std, models[0], P, stride, batch_size=50, device="cpu", dtype="fp32",
                           rng=random.Random(bench.derive_seed(5, "grid", 0)))
    assert maps.shape == lib.shape == (2, *image.shape)
    assert float((maps - lib).abs().max()) < 1e-5


def test_exams_sizes_orientation_and_device_name():
    preset = get_preset("tiny")
    exams = bench.make_exams(preset, 2, seed=0, data="synthetic")
    for e in exams:
        for v in VIEWS:
            img = e.images[v]
            assert img.dtype == np.uint16 and img.shape == bench.crop_size(preset, v)
            assert img.max() > 0 and (img == 0).any()  # breast and background
            # original orientation: the chest wall (breast side) left for L, right for R views
            left, right = img[:, : img.shape[1] // 4].mean(), img[:, -img.shape[1] // 4 :].mean()
            assert (left > right) == v.startswith("L")
        assert set(e.record["best_center"]) == set(VIEWS)
    assert bench.device_name(torch.device("cpu")).startswith("cpu-")
    assert bench.crop_size(get_preset("paper"), "L-MLO") == (3200, 1900)


def test_time_calls_median_and_settings_defaults():
    calls = []
    t = bench.time_calls(lambda: calls.append(1) or len(calls), "cpu", warmup=2, repeats=3)
    assert len(calls) == 5 and t["last"] == 5 and len(t["times"]) == 3
    assert t["median"] >= t["min"] >= 0
    s = bench.settings_from_args(bench.parse_args([]), cuda=False)
    assert s.presets == ["small"] and s.tta == bench.TTA and s.channels_last is False
    s = bench.settings_from_args(bench.parse_args([]), cuda=True)
    assert s.presets == ["paper", "small"] and s.exams == 100 and s.channels_last is True
    q = bench.settings_from_args(bench.parse_args(["--quick"]), cuda=False)
    assert q.presets == ["small"] and q.repeats == 1 and q.exams == 2
    with pytest.raises(SystemExit):
        bench.settings_from_args(bench.parse_args(["--stages", "heatmaps,bogus"]), cuda=False)


@pytest.mark.slow  # ~15 s of CPU time
def test_bench_with_trained_checkpoint_and_extra_dtype(tmp_path):
    """--patch-checkpoint replaces the random weights in the heatmap stages (recorded in the
    JSON); --compare-dtypes adds a library row per dtype, each compared with the fp32 reference."""
    from mammokit.models import create_model
    from mammokit.models.checkpoint import save_checkpoint

    torch.manual_seed(7)
    model = create_model("patchnet_small", num_classes=3, in_chans=1)
    ckpt = tmp_path / "patch.safetensors"
    save_checkpoint(ckpt, model, arch="patchnet_small", model_args={"num_classes": 3, "in_chans": 1}, preset="tiny")
    m3, m1 = bench.load_patch_models(str(ckpt))
    assert m3.in_chans == 3 and m1.in_chans == 1
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m3(x.expand(-1, 3, -1, -1)), model.eval()(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(m1(x), model(x), rtol=0, atol=0)

    out = tmp_path / "bench.json"
    rc = bench.main([
        "--quick", "--preset", "tiny", "--device", "cpu", "--data", "synthetic", "--stride", "32",
        "--warmup", "0", "--stages", "heatmaps", "--compare-dtypes", "bf16", "--patch-checkpoint", str(ckpt),
        "-o", str(out),
    ])
    assert rc == 0
    hm = json.loads(out.read_text())["presets"]["tiny"]["stages"]["heatmaps"]
    assert hm["weights"] == "trained: patch.safetensors"
    assert [r["path"] for r in hm["rows"]] == ["reference", "fast", "fast-bf16"]
    fast, bf16 = hm["rows"][1], hm["rows"][2]
    assert "library" in fast["label"] and fast["levers"]["dtype"] == "fp32" and bf16["levers"]["dtype"] == "bf16"
    assert fast["max_abs_diff_probs"] <= 1e-5  # fp32 vs fp32: the same function
    assert 0 < bf16["max_abs_diff_probs"] < 0.2  # bf16 rounds, but stays near
