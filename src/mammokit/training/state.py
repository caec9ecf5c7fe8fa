"""Resumable training state: everything needed to continue a killed run bit-for-bit.

``RUN/state.pt`` holds the model and optimiser state, the position (epoch, step within the
epoch), the early-stopping state, the metric history and the RNG states (Python, numpy's legacy
global state, torch CPU and CUDA). It is written atomically (temporary file + ``os.replace``),
so a kill at any moment leaves either the previous or the new state, never a torn one, and it is
read back with ``torch.load(weights_only=True)``: only tensors and plain containers, never code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammokit.errors import InputFileError, MissingFileError
from mammokit.utils.io import atomic_path

STATE_FORMAT = "mammokit.train_state"
STATE_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """The global RNG states as weights_only-loadable values."""
    py = random.getstate()
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, **state: Any) -> None:
    """Write the training state atomically (keys: model, optimizer, epoch, step, ...)."""
    doc = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(doc, tmp)


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (``weights_only=True``: data only)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no training state to resume from")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / foreign file
        raise InputFileError(f"{path}: not a readable mammokit training state ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise InputFileError(f"{path}: not a mammokit training state")
    if doc.get("version", 0) > STATE_VERSION:
        raise InputFileError(f"{path}: training state version {doc['version']} is newer than this mammokit")
    return doc
