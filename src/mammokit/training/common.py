"""Pieces shared by the trainers: device and precision setup, presets, run folders."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from mammokit.utils.io import write_csv_atomic, write_json_atomic


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """``None`` -> ``cuda:<local_rank>`` when CUDA is available, else the CPU."""
    if name is None:
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; a no-op context on the CPU (bf16 convolutions on the CPU are slow
    and change the numbers the CPU tests compare)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_channels_last(device: torch.device, enabled: bool) -> bool:
    return enabled and device.type == "cuda"


def set_determinism(deterministic: bool) -> None:
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls on CUDA.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def write_run_config(run_dir: Path, config_dict: dict, extra: dict | None = None) -> None:
    write_json_atomic(run_dir / "config.json", {**config_dict, **({"_resolved": extra} if extra else {})})


def write_excluded(run_dir: Path, rows: list[dict]) -> None:
    write_csv_atomic(run_dir / "excluded_exams.csv", rows, ("exam_id", "reason"))


def loader_generator(seed: int) -> torch.Generator:
    """A private generator for DataLoaders: creating a DataLoader iterator draws a base seed from
    its generator, which would otherwise consume the global torch RNG and make a resumed run
    diverge from an uninterrupted one."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g
