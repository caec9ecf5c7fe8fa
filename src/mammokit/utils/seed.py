"""Seeding: every random choice in mammokit takes an explicit seed."""

from __future__ import annotations

import hashlib
import random

import numpy as np


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (strings, ints): the same parts give the same seed on
    every machine and process, unlike ``hash()``. Used to give each exam, image or worker its own
    independent stream so results do not depend on the number of workers."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy Generator seeded by :func:`derive_seed`."""
    return np.random.default_rng(derive_seed(*parts))


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's legacy global state and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # torch is a dependency; this only keeps light tools importable
        pass
