"""Which exams each epoch trains on, in which order, and how the order is split into batches and
across processes. Everything is a pure function of (seed, epoch), so a resumed run or a run on
another number of workers sees exactly the same sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mammokit.utils.seed import rng_for


def epoch_sample(biopsied: Sequence[bool], seed: int, epoch: int, mode: str = "biopsied") -> list[int]:
    """Indices of the exams trained on in ``epoch``, shuffled.

    ``mode="biopsied"`` (paper, IV-A.1): every exam with a biopsy plus an equal-sized random
    sample (without replacement) of the exams without one (all of them if there are fewer).
    ``mode="all"``: every exam. The order is a seeded permutation.

    Args:
        biopsied: one flag per training exam.
    Returns:
        list of indices into ``biopsied``.
    """
    flags = np.asarray(biopsied, dtype=bool)
    rng = rng_for(seed, "epoch-sample", epoch)
    if mode == "all":
        chosen = np.arange(len(flags))
    elif mode == "biopsied":
        pos = np.flatnonzero(flags)
        neg = np.flatnonzero(~flags)
        take = min(len(pos), len(neg))
        neg_sample = rng.choice(neg, size=take, replace=False) if take else np.empty(0, dtype=int)
        chosen = np.concatenate([pos, np.sort(neg_sample)])
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    return [int(i) for i in rng.permutation(chosen)]


def batches(indices: Sequence[int], batch_size: int, drop_last: bool = False) -> list[list[int]]:
    """Consecutive batches of ``batch_size`` (the last one shorter unless ``drop_last``)."""
    out = [list(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]
    if drop_last and out and len(out[-1]) < batch_size:
        out.pop()
    return out


def shard(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This process's part of a global batch: every ``world_size``-th exam from ``rank``.

    Strided (not blocked) so the parts differ by at most one exam. A rank may get an empty part
    when the batch is smaller than the world; the trainer then contributes a zero-weight loss so
    DistributedDataParallel still sees every rank in the all-reduce.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    return list(batch[rank::world_size])
