"""Shard assignment, option parsing and part files (mammokit.utils.shard)."""

from __future__ import annotations

import hashlib
import json

import pytest

from mammokit.errors import UsageError
from mammokit.utils.shard import (
    Shard,
    assign,
    job_key,
    parse_shard,
    part_path,
    read_part,
    read_parts,
    resolve_shard,
    shard_positions,
    write_part,
)


def test_assignment_balanced_order_free_and_hash_sorted():
    ids = [f"exam{i:03d}" for i in range(23)]
    shards = assign(ids, 4)
    counts = [shards.count(s) for s in range(4)]
    assert sorted(counts) == [5, 6, 6, 6]  # round robin: sizes differ by at most one
    # The rule, computed independently: sorted by sha256 of the id, dealt round robin.
    by_hash = sorted(ids, key=lambda e: hashlib.sha256(e.encode()).hexdigest())
    assert {e: s for e, s in zip(ids, shards)} == {e: k % 4 for k, e in enumerate(by_hash)}
    # Independent of the exam list's order.
    rev = list(reversed(ids))
    assert dict(zip(rev, assign(rev, 4))) == dict(zip(ids, shards))
    # Positions of all shards partition the list.
    parts = [shard_positions(ids, Shard(i, 4)) for i in range(4)]
    assert sorted(p for part in parts for p in part) == list(range(23))
    # Equal ids share a shard.
    dup = ["a", "b", "a", "c"]
    got = assign(dup, 3)
    assert got[0] == got[2]


def test_parse_and_resolve():
    assert parse_shard("2/8") == Shard(2, 8) and str(Shard(2, 8)) == "2/8"
    assert parse_shard(None) is None
    for bad in ("8/8", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    assert resolve_shard(None, {}) is None
    assert resolve_shard("1/3", {}) == Shard(1, 3)
    assert resolve_shard(None, {"WORLD_SIZE": "4", "RANK": "3"}) == Shard(3, 4)
    assert resolve_shard(None, {"WORLD_SIZE": "1", "RANK": "0"}) is None
    with pytest.raises(UsageError, match="torchrun"):
        resolve_shard("0/2", {"WORLD_SIZE": "2", "RANK": "0"})


def test_parts_belong_to_one_job(tmp_path):
    key = job_key("predict", {"tta": 10}, [{"exam_id": "a"}])
    assert key != job_key("predict", {"tta": 9}, [{"exam_id": "a"}])
    assert key != job_key("predict", {"tta": 10}, [{"exam_id": "b"}])
    s0, s1 = Shard(0, 2), Shard(1, 2)
    write_part(part_path(tmp_path, "x", s0), "predict", key, s0, {"v": 0})
    assert part_path(tmp_path, "x", s0) == tmp_path / ".shards" / "x.shard-0-of-2.json"
    assert read_part(part_path(tmp_path, "x", s0), "predict", key, s0) == {"v": 0}
    assert read_part(part_path(tmp_path, "x", s0), "predict", "other", s0) is None  # another job
    assert read_parts(tmp_path, "x", "predict", key, 2) == ([{"v": 0}], [1])
    part_path(tmp_path, "x", s1).write_text("{truncated")  # a torn file is not a finished part
    assert read_parts(tmp_path, "x", "predict", key, 2)[1] == [1]
    write_part(part_path(tmp_path, "x", s1), "predict", key, s1, {"v": 1})
    assert read_parts(tmp_path, "x", "predict", key, 2) == ([{"v": 0}, {"v": 1}], [])
    assert json.loads(part_path(tmp_path, "x", s1).read_text())["shard"] == [1, 2]
