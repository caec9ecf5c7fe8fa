"""DistributedDataParallel training on the CPU (gloo, 2 processes)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mammokit.training.config import TrainConfig
from tests.helpers.training_toy import make_toy_workdir

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_workdir(tmp_path_factory.mktemp("ddptoy"), n_train=8, n_val=6, seed=7, scale=0.03)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_dict: dict, out: str) -> None:
    from mammokit.training import distributed as D
    from mammokit.training.breast import (
        _Batches,
        _load_data,
        build_model,
        evaluate,
        make_loader,
        make_optimizer,
        sync_buffers,
        train_one_epoch,
    )
    from mammokit.training.datasets import ExamDataset
    from mammokit.training.sampling import batches, epoch_sample, shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = TrainConfig.from_dict(cfg_dict)
    ctx = D.init_distributed("cpu")
    data, preset, image_dir = _load_data(config, ctx)
    model = torch.nn.parallel.DistributedDataParallel(build_model(config, preset))
    optimizer = make_optimizer(model, config)
    torch.manual_seed(1000 + rank)  # different input noise per rank, as in the trainer
    train_set = ExamDataset(data.train, config.workdir, preset, False, True, config.seed, True, image_dir)
    order = epoch_sample([r.biopsied for r in data.train], config.seed, 0, config.sampling)
    first = batches(order, config.batch_size)[0]
    sampler = _Batches()
    part = shard(first, rank, world)
    sampler.items = [[(i, 0) for i in part]]
    loader = make_loader(train_set, sampler, config, torch.device("cpu"), 0)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    stats = train_one_epoch(model, optimizer, loader, [len(first)], [len(part)], torch.device("cpu"), epoch=0, ctx=ctx,
                            amp=False)
    sync_buffers(model, ctx)
    torch.save({"state": model.module.state_dict(), "before": before}, Path(out) / f"rank{rank}.pt")
    val_set = ExamDataset(data.val, config.workdir, preset, False, False, config.seed, True, image_dir)
    metrics = evaluate(model, val_set, torch.device("cpu"), config.task, ctx=ctx, batch_size=2, amp=False)
    (Path(out) / f"metrics{rank}.json").write_text(json.dumps({**metrics, "train_loss": stats["train_loss"]}))
    D.cleanup(ctx)


def _single_process_eval(config: TrainConfig, model) -> dict:
    from mammokit.training.breast import _load_data, evaluate
    from mammokit.training.datasets import ExamDataset

    data, preset, image_dir = _load_data(config, __import__("mammokit.training.distributed", fromlist=["x"]).DistContext())
    val_set = ExamDataset(data.val, config.workdir, preset, False, False, config.seed, True, image_dir)
    return evaluate(model, val_set, torch.device("cpu"), config.task, batch_size=3, amp=False)


def _same_metrics(a: dict, b: dict) -> None:
    assert set(a) >= {k for k in b}
    for k, v in b.items():
        if k == "val_loss":
            assert a[k] == pytest.approx(v, rel=1e-5)
        elif v == v:
            assert a[k] == v, k
        else:
            assert a[k] != a[k], k


@pytest.mark.slow
def test_ddp_step_identical_weights_and_gathered_metrics(toy, tmp_path):
    import torch.multiprocessing as mp

    from mammokit.models import create_model

    cfg = TrainConfig(workdir=toy.workdir, labels=toy.labels, out=tmp_path / "x", batch_size=4, lr=1e-3, device="cpu")
    # "spawn", not "fork": forking a process whose OpenMP/intra-op thread pools are already running
    # (any earlier torch test in the session) can deadlock the children. Bounded wait, so a hang
    # fails the test instead of stalling the suite.
    procs = mp.start_processes(
        _worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 600
    while not procs.join(timeout=5):
        if time.monotonic() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail("DDP worker processes did not finish within 600 s")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    changed = 0
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), f"ranks differ in {k}"
        changed += int(not torch.equal(v, r0["before"][k]))
    assert changed > 50  # the step trained (parameters and batch-norm statistics moved)
    m0 = json.loads((tmp_path / "metrics0.json").read_text())
    m1 = json.loads((tmp_path / "metrics1.json").read_text())
    assert m0 == m1
    model = create_model("view_wise", in_channels=1, task="cancer", input_noise_std=0.01)
    model.load_state_dict(r0["state"])
    single = _single_process_eval(cfg, model)
    _same_metrics(m0, {k: v for k, v in single.items()})


@pytest.mark.slow
def test_torchrun_two_processes_cli(toy, tmp_path):
    from mammokit.models.checkpoint import load_model

    torchrun = Path(sys.executable).with_name("torchrun")
    run = tmp_path / "run"
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "mammokit", "train",
           str(toy.workdir), "--labels", str(toy.labels), "--epochs", "2", "--lr", "1e-3", "--batch-size", "4",
           "--device", "cpu", "--out", str(run)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]  # rank 0 alone wrote the files: no duplicate rows
    conf = json.loads((run / "config.json").read_text())
    assert conf["_resolved"]["world_size"] == 2
    model, _ = load_model(run / "last.safetensors")
    single = _single_process_eval(TrainConfig.from_dict({k: v for k, v in conf.items() if k != "_resolved"}), model)
    _same_metrics({k: v if v is not None else float("nan") for k, v in rows[-1].items()}, single)
