"""Pieces shared by the trainers: precision setup, determinism, run folders."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch

from mammokit.errors import InputFileError, MissingFileError, ResourceError
from mammokit.utils.device import autocast as device_autocast
from mammokit.utils.device import resolve_device, resolve_dtype
from mammokit.utils.io import write_csv_atomic, write_json_atomic

__all__ = ["autocast", "resolve_device", "use_channels_last", "set_determinism", "write_run_config", "write_excluded",
           "loader_generator", "load_run_config", "out_of_memory_is_fatal"]


def autocast(device: torch.device, enabled: bool):
    """Mixed precision for training: bf16 autocast on CUDA when ``enabled``; fp32 on the CPU
    (bf16 convolutions are emulated on CPUs without bf16 hardware, and would change the numbers
    the CPU tests compare)."""
    dtype = resolve_dtype("auto" if enabled else "fp32", device, "training")
    return device_autocast(device, dtype)


@contextlib.contextmanager
def out_of_memory_is_fatal(device: torch.device, what: str):
    """Turn a CUDA out-of-memory error in a training step into a one-line
    :class:`~mammokit.errors.ResourceError`. Training does not retry with a smaller batch by
    itself: that would silently change the optimisation; the message says what to change, and
    the run resumes from its last saved state."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise ResourceError(
            f"out of GPU memory on {device} in a training step: lower --batch-size ({what}), then resume "
            f"the run with --resume (it continues from its last saved state)"
        ) from None


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


def load_run_config(run_dir: str | Path, cls):
    """The config (a :class:`~mammokit.training.config.TrainConfig` or ``PatchTrainConfig``)
    written in ``RUN/config.json`` by the run being resumed."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise MissingFileError(f"{path}: not a mammokit run folder (no config.json)")
    return read_config_file(path, cls)


def read_config_file(path: str | Path, cls):
    """A config of class ``cls`` from a JSON file; any problem (not JSON, not UTF-8, unknown or
    mistyped fields, invalid values) is an :class:`InputFileError` naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict):
            doc.pop("_resolved", None)
        return cls.from_dict(doc)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, UsageError
        raise InputFileError(f"{path}: not a valid {cls.__name__} ({' '.join(str(exc).split())[:300]})") from None
