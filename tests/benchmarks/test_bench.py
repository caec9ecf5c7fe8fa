"""``python -m benchmarks.bench`` in its CI-sized form: it times the library's functions and
writes a complete result file (structure and consistency, never speed)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import bench


@pytest.mark.slow  # ~30 s on 2 cores
def test_quick_bench_times_every_stage_and_writes_complete_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(["--quick", "--device", "cpu", "--stride", "16", "--compare-dtypes", "bf16",
                     "--stages", "heatmaps,predict,pipeline,train", "-o", str(out), "--keep", str(tmp_path / "d")])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == bench.SCHEMA
    env = doc["environment"]
    assert env["device"]["device_type"] == "cpu" and env["device"]["device_name"].startswith("cpu-")
    assert env["git_commit"] and {"python", "torch", "numpy", "opencv", "mammokit"} <= set(env["software"])
    assert "loadavg_end" in env["device"]
    assert doc["sizes"]["exams"] == 2 and doc["preset"]["name"] == "tiny"

    hm = doc["stages"]["heatmaps"]["rows"]
    assert [r["dtype"] for r in hm] == ["fp32", "bf16"]  # fp32 first: the reference of the diffs
    assert hm[0]["max_abs_diff_vs_fp32"] == 0.0 and 0 < hm[1]["max_abs_diff_vs_fp32"] < 0.5
    # Every patch of every image was computed: the count equals the grid sizes of the crops.
    from mammokit.data.examlist import load_exams
    from mammokit.heatmaps import num_patches

    exams, _ = load_exams(tmp_path / "d" / "work" / "exams.json")
    expected = sum(num_patches(b[1] - b[0], b[3] - b[2], doc["sizes"]["patch_size"], 16)
                   for e in exams for v in ("L-CC", "R-CC", "L-MLO", "R-MLO") for b in e["window_location"][v])
    assert all(r["patches"] == expected and r["patches_per_s"] > 0 for r in hm)

    pr = doc["stages"]["predict"]
    assert pr["tta"] == 2 and pr["rows"][0]["max_abs_diff_vs_fp32"] == 0.0
    assert all(math.isfinite(r["s_per_exam_scoring"]) for r in pr["rows"])
    pl = doc["stages"]["pipeline"]
    assert pl["exams_per_s"] > 0 and set(pl["stage_seconds"]) == {"preprocess", "heatmaps", "predict"}
    tr = doc["stages"]["train"]
    assert tr["train_exams"] == 1 and tr["exams_per_s"] > 0 and tr["peak_memory_bytes"] > 0
    assert math.isfinite(tr["loss"])
    printed = capsys.readouterr().out
    assert "patches/s" in printed and f"wrote {out}" in printed
