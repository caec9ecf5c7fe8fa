"""Sharded heatmaps / predict / run: the merged outputs are the bytes one process writes; a
re-run redoes only the unfinished shard; torchrun ranks shard the job by themselves."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mammokit.cli import main
from mammokit.config import PRESETS
from mammokit.data.images import write_png16
from mammokit.data.examlist import save_exams
from mammokit.models import create_model, save_checkpoint
from tests.helpers.workdir import MICRO, make_workdir

TINY = PRESETS["tiny"]
VIEWS = ("L-CC", "R-CC", "L-MLO", "R-MLO")


def tree(root: Path, skip=(".shards",)) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), parts left out."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not set(p.relative_to(root).parts) & set(skip)}


@pytest.fixture(scope="module")
def vw_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    torch.manual_seed(0)
    save_checkpoint(d / "vw.safetensors", create_model("view_wise", in_channels=1), arch="view_wise",
                    model_args={"in_channels": 1}, preset=MICRO)
    return d / "vw.safetensors"


def test_predict_shards_merge_to_the_single_process_files(tmp_path, vw_model, monkeypatch):
    ids = tuple(f"e{i}" for i in range(5))
    wd, _ = make_workdir(tmp_path / "wd", exam_ids=ids, preset="micro", preset_config=MICRO.to_dict())
    (wd / "cropped" / "e3_L_MLO.png").write_bytes(b"broken")  # a skipped exam goes through the merge too
    args = ["predict", str(wd), "--model", str(vw_model), "--tta", "2", "--device", "cpu"]
    assert main([*args, "--output", str(tmp_path / "one.csv")]) == 0
    single = {n: (tmp_path / n).read_bytes() for n in ("one.csv", "one.skipped.csv", "one.meta.json")}
    assert b"e3" in single["one.skipped.csv"] and b'"precision": "fp32"' in single["one.meta.json"]

    out = tmp_path / "sharded" / "one.csv"
    assert main([*args, "--output", str(out), "--shard", "1/2"]) == 0
    assert not out.exists()  # shard 0 not finished: nothing merged yet
    assert main([*args, "--output", str(out), "--shard", "0/2"]) == 0  # completes the set: merges
    assert {n: (out.parent / n).read_bytes() for n in single} == single

    # A killed shard: its part and the merged files are gone. Re-running the other shard finds its
    # part and scores nothing; re-running the killed one scores only its exams and merges.
    import importlib

    P = importlib.import_module("mammokit.inference.predict")  # the module (the package exports its function)

    for n in single:
        (out.parent / n).unlink()
    (out.parent / ".shards" / "one.csv.shard-1-of-2.json").unlink()
    scored = []
    real = P.predict_exams
    monkeypatch.setattr(P, "predict_exams", lambda wd_, exams, *a, **k: scored.append([e["exam_id"] for e in exams])
                        or real(wd_, exams, *a, **k))
    P.predict(wd, [vw_model], tta=2, device="cpu", output=out, shard="0/2")
    assert scored == [] and not out.exists()
    r = P.predict(wd, [vw_model], tta=2, device="cpu", output=out, shard="1/2")
    assert len(scored) == 1 and 0 < len(scored[0]) < len(ids) and r.missing_shards == []
    assert {n: (out.parent / n).read_bytes() for n in single} == single
    # Other settings make another job: its parts are not reused.
    r = P.predict(wd, [vw_model], tta=1, device="cpu", output=out, shard="0/2")
    assert len(scored) == 2 and r.missing_shards == [1]


def _heat_workdir(root: Path, n_exams: int = 3) -> Path:
    rs = np.random.default_rng(1)
    exams = []
    for e in range(n_exams):
        exam = {"exam_id": f"x{e}", "horizontal_flip": "YES" if e % 2 else "NO"}
        for v in VIEWS:
            name = f"x{e}_{v.replace('-', '_')}"
            exam[v] = [name]
            write_png16(root / "cropped" / f"{name}.png", rs.integers(0, 4096, size=(44, 40)).astype(np.uint16))
        exams.append(exam)
    save_exams(root / "exams.json", exams, preset="tiny", image_dir="cropped")
    return root


def test_heatmap_shards_merge_to_the_single_process_files(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "patch.safetensors"
    save_checkpoint(ckpt, create_model("patchnet_small", width=4).eval(), arch="patchnet_small",
                    model_args={"width": 4}, preset="tiny")
    one, two = _heat_workdir(tmp_path / "one"), _heat_workdir(tmp_path / "two")
    _heat_exams_before = (two / "exams.json").read_bytes()
    for wd in (one, two):
        (wd / "cropped" / "x1_R_CC.png").write_bytes(b"broken")
    args = ["--patch-model", str(ckpt), "--device", "cpu", "--batch-size", "8"]
    assert main(["heatmaps", str(one), *args]) == 1  # one image failed
    expected = tree(one)
    assert b'"precision": "fp32"' in expected["exams.json"] and "heatmap_failures.csv" in expected
    assert main(["heatmaps", str(two), *args, "--shard", "0/2"]) == 1
    assert tree(two)["exams.json"] == _heat_exams_before  # shard 0 alone: the exam list untouched
    assert main(["heatmaps", str(two), *args, "--shard", "1/2"]) == 0  # its own images all succeeded
    # The same bytes (failure reasons name the image, so in the other folder).
    assert tree(two) == {k: v.replace(str(one).encode(), str(two).encode()) for k, v in expected.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory):
    from mammokit.synth.generator import generate

    d = tmp_path_factory.mktemp("runin")
    generate(d / "synth", n_exams=3, seed=3, scale=TINY.scale)
    torch.manual_seed(0)
    paths = {}
    for c in (1, 3):
        paths[c] = d / f"vw{c}.safetensors"
        save_checkpoint(paths[c], create_model("view_wise", in_channels=c), arch="view_wise",
                        model_args={"in_channels": c}, preset=TINY)
    paths["patch"] = d / "patch.safetensors"
    save_checkpoint(paths["patch"], create_model("patchnet_small", num_classes=3), arch="patchnet_small",
                    model_args={"num_classes": 3}, preset=TINY)
    return d / "synth" / "manifest.csv", paths


def _run_args(manifest, paths, out):
    return ["run", str(manifest), "--out", str(out), "--model", str(paths[3]), "--model", str(paths[1]),
            "--patch-model", str(paths["patch"]), "--preset", "tiny", "--tta", "2", "--device", "cpu"]


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process_and_a_lost_shard_is_redone_alone(tmp_path, run_inputs):
    manifest, paths = run_inputs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    one = tmp_path / "one"
    proc = subprocess.run([sys.executable, "-m", "mammokit", *_run_args(manifest, paths, one)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = tree(one)
    assert {"exams.json", "predictions.csv", "predictions.meta.json", "preprocess_failures.csv"} <= set(expected)
    assert any(k.startswith("heatmaps/malignant/") for k in expected)

    two = tmp_path / "two"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "mammokit",
           *_run_args(manifest, paths, two)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert tree(two) == expected  # byte for byte, every file
    parts = sorted(p.name for p in (two / ".shards").iterdir())
    assert parts == ["run.shard-0-of-2.json", "run.shard-1-of-2.json"]

    # Rank 1 lost: its part, its images and the merged files are gone; rank 0's work stays.
    from mammokit.utils.shard import Shard, shard_positions

    lost = shutil.copytree(two, tmp_path / "lost")
    (lost / ".shards" / "run.shard-1-of-2.json").unlink()
    for name in ("exams.json", "predictions.csv", "predictions.skipped.csv", "predictions.meta.json"):
        (lost / name).unlink()
    import csv

    with open(manifest, newline="") as f:
        ids = list(dict.fromkeys(r["exam_id"] for r in csv.DictReader(f)))
    mine = [ids[i] for i in shard_positions(ids, Shard(1, 2))]
    theirs = [ids[i] for i in shard_positions(ids, Shard(0, 2))]
    assert mine and theirs
    for p in (lost / "heatmaps").rglob("*.png"):
        if any(p.name.startswith(f"{e}_") for e in mine):
            p.unlink()
    kept = {p: p.stat().st_mtime_ns for p in (lost / "heatmaps").rglob("*.png")}
    proc = subprocess.run([sys.executable, "-m", "mammokit", *_run_args(manifest, paths, lost), "--shard", "1/2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all shards done: merged" in proc.stdout
    assert tree(lost) == expected
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # shard 0 untouched
