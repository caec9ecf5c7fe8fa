"""Breast-level trainer: learning, BI-RADS -> cancer transfer, resume after a kill, exclusions."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mammokit.training.config import TrainConfig
from tests.helpers.training_toy import make_toy_workdir

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
TIMING_KEYS = {"train_time_s", "val_time_s", "train_exams_per_s"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_workdir(tmp_path_factory.mktemp("toy"), n_train=24, n_val=12, seed=0)


@pytest.fixture(scope="module")
def small_toy(tmp_path_factory):
    return make_toy_workdir(tmp_path_factory.mktemp("smalltoy"), n_train=9, n_val=6, seed=1, scale=0.03)


def _read_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.mark.slow
def test_breast_trainer_learns(toy, tmp_path):
    from mammokit.models.checkpoint import load_model
    from mammokit.training.breast import train_breast

    torch.set_num_threads(1)
    cfg = TrainConfig(workdir=toy.workdir, labels=toy.labels, out=tmp_path / "run", epochs=4, lr=1e-3, device="cpu")
    summary = train_breast(cfg)
    hist = summary["history"]
    assert len(hist) == 4
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    # Malignant breasts have a bright disc: the malignant AUC must be far above chance.
    assert hist[-1]["val_breast_auc_malignant"] >= 0.85
    assert summary["best_score"] > 0.75
    # Files: resolved config, metrics rows, loadable best checkpoint with the best epoch.
    run = tmp_path / "run"
    conf = json.loads((run / "config.json").read_text())
    assert conf["lr"] == 1e-3 and conf["batch_size"] == 4 and conf["weight_decay"] == pytest.approx(10**-4.5)
    assert conf["_resolved"]["train_exams"] == 24
    with open(run / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    model, meta = load_model(run / "best.safetensors")
    assert meta["arch"] == "view_wise" and meta["extra"]["epoch"] == summary["best_epoch"]
    assert (run / "excluded_exams.csv").read_text().strip() == "exam_id,reason"


def test_paper_defaults():
    cfg = TrainConfig(workdir="w", labels="l", out="o")
    assert (cfg.lr, cfg.batch_size, cfg.patience, cfg.sampling) == (1e-5, 4, 20, "biopsied")
    assert cfg.weight_decay == pytest.approx(10**-4.5)
    b = TrainConfig(workdir="w", labels="l", out="o", task="birads")
    assert (b.batch_size, b.sampling) == (24, "all")
    with pytest.raises(ValueError, match="variant"):
        TrainConfig(workdir="w", labels="l", out="o", variant="patch-wise")


def test_birads_transfer_copies_columns_exactly(small_toy, tmp_path):
    from mammokit.models.checkpoint import load_model
    from mammokit.training.breast import build_model, train_breast

    torch.set_num_threads(1)
    birads = TrainConfig(workdir=small_toy.workdir, labels=small_toy.labels, out=tmp_path / "birads", task="birads",
                         epochs=1, batch_size=6, lr=1e-3, device="cpu")
    train_breast(birads)
    src, meta = load_model(tmp_path / "birads" / "best.safetensors")
    assert meta["model_args"]["task"] == "birads"
    src_state = src.state_dict()
    for heat in (False, True):
        cfg = TrainConfig(workdir="w", labels="l", out="o", heatmaps=heat, init=str(tmp_path / "birads"), seed=3)
        model = build_model(cfg, small_toy.preset)
        fresh = build_model(TrainConfig(workdir="w", labels="l", out="o", heatmaps=heat, seed=3), small_toy.preset)
        state = model.state_dict()
        cols = [k for k in state if k.startswith("columns.")]
        assert len(cols) > 100
        for k in cols:
            if heat and k.endswith("first_conv.weight"):
                assert state[k].shape[1] == 3
                for c in range(3):  # the 1-channel kernel duplicated in every channel
                    assert torch.equal(state[k][:, c : c + 1], src_state[k])
            else:
                assert torch.equal(state[k], src_state[k]), k
        # Heads start fresh: not the BI-RADS heads, and identical to a model built without --init.
        heads = [k for k in state if not k.startswith("columns.")]
        for k in heads:
            assert torch.equal(state[k], fresh.state_dict()[k]), k
        assert state["output_layer_cc.fc_layer.weight"].shape[0] == 8  # 4 labels x 2 classes


def test_transfer_rejects_mismatched_columns():
    from mammokit.models import create_model
    from mammokit.training.transfer import load_columns

    model = create_model("view_wise")
    bad = {k: v for k, v in model.state_dict().items() if k.startswith("columns.")}
    bad.pop("columns.cc.first_conv.weight")
    with pytest.raises(ValueError, match="missing"):
        load_columns(model, bad)


def _cli(*args, env=ENV, **kw):
    return subprocess.Popen([sys.executable, "-m", "mammokit", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _run_ok(*args):
    proc = _cli(*args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def _assert_same_run(a: Path, b: Path):
    assert _metrics(a) == _metrics(b)
    for name in ("best.safetensors", "last.safetensors"):
        ta, tb = _read_tensors(a / name), _read_tensors(b / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), f"{name}: {k} differs"


@pytest.mark.slow
def test_resume_after_kill_is_bit_identical(small_toy, tmp_path):
    common = [small_toy.workdir, "--labels", small_toy.labels, "--epochs", 2, "--lr", "1e-3", "--batch-size", 2,
              "--save-every", 2, "--deterministic", "--device", "cpu"]
    # 1. Uninterrupted reference.
    _run_ok("train", *common, "--out", tmp_path / "full")
    # 2. Deterministic stop mid-epoch, then resume.
    _run_ok("train", *common, "--out", tmp_path / "stopped", "--stop-after-steps", 6)
    st = torch.load(tmp_path / "stopped" / "state.pt", weights_only=True)
    assert st["step"] > 0 and not st["finished"]
    _run_ok("train", "--resume", tmp_path / "stopped")
    _assert_same_run(tmp_path / "full", tmp_path / "stopped")
    # 3. A real SIGKILL once a mid-epoch state exists.
    killed = tmp_path / "killed"
    proc = _cli("train", *common, "--out", killed)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (killed / "state.pt").exists():
            try:
                st = torch.load(killed / "state.pt", weights_only=True)
            except Exception:
                st = None
            if st is not None and st["step"] > 0:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    _run_ok("train", "--resume", killed)
    _assert_same_run(tmp_path / "full", killed)


def test_refuses_to_overwrite_a_run_and_resume_needs_a_run(small_toy, tmp_path):
    from mammokit.training.breast import resume_breast, train_breast

    (tmp_path / "run").mkdir()
    torch.save({"x": 1}, tmp_path / "run" / "state.pt")
    cfg = TrainConfig(workdir=small_toy.workdir, labels=small_toy.labels, out=tmp_path / "run", device="cpu")
    with pytest.raises(ValueError, match="--resume"):
        train_breast(cfg)
    with pytest.raises(FileNotFoundError, match="config.json"):
        resume_breast(tmp_path / "nothing")


def test_bad_exams_are_reported_and_excluded(tmp_path):
    from mammokit.data.examlist import load_exams, save_exams
    from mammokit.training.breast import train_breast

    toy = make_toy_workdir(tmp_path / "d", n_train=6, n_val=3, seed=2)
    exams, meta = load_exams(toy.workdir / "exams.json")
    # t000: unreadable image; t001: a missing view (kept: trained on with the view masked);
    # t002: no labels row; t003: no image at all.
    (toy.workdir / "cropped" / "t000_L_CC.png").write_bytes(b"not a png")
    exams[1]["R-MLO"] = []
    for f in ("window_location", "best_center", "source_paths"):
        exams[1][f].pop("R-MLO")
    for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
        exams[3][view] = []
        for f in ("window_location", "best_center", "source_paths"):
            exams[3][f].pop(view)
    save_exams(toy.workdir / "exams.json", exams, **meta)
    rows = list(csv.DictReader(open(toy.labels)))
    with open(toy.labels, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([r for r in rows if r["exam_id"] != "t002"])
    cfg = TrainConfig(workdir=toy.workdir, labels=toy.labels, out=tmp_path / "run", epochs=1, device="cpu")
    train_breast(cfg)
    excluded = {r["exam_id"]: r["reason"] for r in csv.DictReader(open(tmp_path / "run" / "excluded_exams.csv"))}
    assert set(excluded) == {"t000", "t002", "t003"}
    assert "t000_L_CC.png" in excluded["t000"] and "unreadable" in excluded["t000"]
    assert excluded["t002"] == "no labels"
    assert excluded["t003"] == "no image of any of the four views"
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["_resolved"]["train_exams"] == 6 - 3  # t000, t002, t003 out; t001 kept


def test_epoch_sample_biopsied_plus_equal_random_sample():
    from mammokit.training.sampling import batches, epoch_sample, shard

    flags = [True] * 3 + [False] * 10
    s0 = epoch_sample(flags, seed=5, epoch=0)
    assert len(s0) == 6 and set(range(3)) <= set(s0) and len(set(s0)) == 6
    assert s0 == epoch_sample(flags, seed=5, epoch=0)  # same seed -> same sample
    assert s0 != epoch_sample(flags, seed=5, epoch=1)
    assert sorted(epoch_sample(flags, 5, 0, mode="all")) == list(range(13))
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert shard([10, 11, 12], 0, 2) == [10, 12] and shard([10, 11, 12], 1, 2) == [11]


def test_ensemble_members_share_init_columns_and_differ_in_heads(small_toy, tmp_path):
    from mammokit.models.checkpoint import Ensemble, load_model
    from mammokit.training.breast import _member_config, build_model, train_breast

    torch.set_num_threads(1)
    base = dict(workdir=small_toy.workdir, labels=small_toy.labels, device="cpu", epochs=1, batch_size=6, lr=1e-3)
    train_breast(TrainConfig(**base, out=tmp_path / "birads", task="birads"))
    cfg = TrainConfig(**base, out=tmp_path / "ens", init=str(tmp_path / "birads"), ensemble=2)
    # Before training, both members start from the BI-RADS columns with different heads.
    m0, m1 = (build_model(_member_config(cfg, k), small_toy.preset).state_dict() for k in range(2))
    assert torch.equal(m0["columns.cc.first_conv.weight"], m1["columns.cc.first_conv.weight"])
    assert not torch.equal(m0["fc1_cc.weight"], m1["fc1_cc.weight"])
    summary = train_breast(cfg)
    ens, meta = load_model(summary["checkpoint"])
    assert isinstance(ens, Ensemble) and meta["kind"] == "ensemble" and len(meta["members"]) == 2
    views = {v: torch.zeros(1, 1, *small_toy.preset.input_size(v)) for v in ("L-CC", "R-CC", "L-MLO", "R-MLO")}
    p = ens.predict_proba(views)
    assert p.shape == (1, 4) and torch.all((p >= 0) & (p <= 1))
    # The ensemble holds exactly the members' best checkpoints.
    for k in range(2):
        member, _ = load_model(tmp_path / "ens" / f"member{k}" / "best.safetensors")
        expected = member.predict_proba(views)
        assert torch.allclose(ens.members[k].predict_proba(views), expected)


def test_loader_workers_default_by_device():
    from mammokit.training.breast import loader_workers

    assert loader_workers(None, torch.device("cpu")) == 0
    assert loader_workers(None, torch.device("cuda")) == min(4, os.cpu_count() or 1)
    assert loader_workers(2, torch.device("cpu")) == 2 and loader_workers(0, torch.device("cuda")) == 0


def _drop_views(workdir, drops: dict[int, list[str]]):
    from mammokit.data.examlist import load_exams, save_exams

    exams, meta = load_exams(workdir / "exams.json")
    for i, views in drops.items():
        for v in views:
            exams[i][v] = []
            for f in ("window_location", "best_center", "source_paths", "rightmost_points", "bottommost_points",
                      "distance_from_starting_side"):
                (exams[i].get(f) or {}).pop(v, None)
    save_exams(workdir / "exams.json", exams, **meta)


@pytest.mark.parametrize("variant", ["view_wise", "image_wise", "breast_wise", "joint"])
def test_exams_missing_views_are_trained_on(tmp_path, variant):
    from mammokit.training.breast import train_breast

    toy = make_toy_workdir(tmp_path / "d", n_train=6, n_val=4, seed=3, scale=0.03)
    _drop_views(toy.workdir, {0: ["R-MLO"], 1: ["L-CC", "L-MLO"], 7: ["R-CC"]})  # two train, one val
    run = tmp_path / "run"
    summary = train_breast(TrainConfig(workdir=toy.workdir, labels=toy.labels, out=run, epochs=1, device="cpu",
                                       batch_size=3, variant=variant, sampling="all"))
    assert list(csv.DictReader(open(run / "excluded_exams.csv"))) == []  # nobody dropped
    row = summary["history"][0]
    assert row["train_exams"] == 6 and all(v == v for k, v in row.items() if k in ("train_loss", "val_loss"))


def test_masked_heads_get_no_gradient_from_an_exam_missing_their_view():
    from mammokit.models import create_model
    from mammokit.training.losses import breast_loss

    torch.manual_seed(0)
    model = create_model("image_wise").train()
    views = {v: torch.randn(2, 1, 96, 80) for v in ("L-CC", "R-CC", "L-MLO", "R-MLO")}
    present = torch.tensor([[False, True, True, True], [False, True, True, True]])  # no L-CC in the batch
    out = model(views, present)
    targets = {c: torch.tensor([1, 0]) for c in ("left_benign", "right_benign", "left_malignant", "right_malignant")}
    loss, _ = breast_loss(out, model.output_labels, targets, model.label_mask(present))
    loss.backward()
    assert model.output_layer_lcc.fc_layer.weight.grad.abs().sum() == 0  # the L-CC head learns nothing
    assert model.output_layer_rcc.fc_layer.weight.grad.abs().sum() > 0
