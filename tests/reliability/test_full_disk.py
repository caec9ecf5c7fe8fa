"""A full disk or a read-only output folder: one clear error, nothing already written corrupted,
the input tree untouched (ENOSPC / EROFS injected into the atomic writer: mounting a small tmpfs
needs root, which CI may not have, and root bypasses chmod, so neither is portable)."""

from __future__ import annotations

import contextlib
import csv
import errno
import os

import pytest

import mammokit.utils.io as mio
from mammokit.cli import main
from mammokit.data.images import write_png16
from tests.helpers.hostile import breast_image, tree_hash

VIEWS4 = ("L-CC", "R-CC", "L-MLO", "R-MLO")


@pytest.fixture()
def done_workdir(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    manifest = src / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["exam_id", "view", "path"])
        for view in VIEWS4:
            write_png16(src / f"{view}.png", breast_image(side=view[0], seed=VIEWS4.index(view)))
            w.writerow(["e0", view, f"{view}.png"])
    work = tmp_path / "work"
    assert main(["-q", "preprocess", str(manifest), "--out", str(work), "--preset", "scale:0.05"]) == 0
    return src, manifest, work


def _fail_after(monkeypatch, n_ok: int, err: int, half_written: bool):
    """Let ``n_ok`` atomic writes succeed, then fail every later one with ``err``."""
    real = mio.atomic_path
    calls = {"n": 0}

    @contextlib.contextmanager
    def failing(path, suffix=None):
        calls["n"] += 1
        if calls["n"] <= n_ok:
            with real(path, suffix) as tmp:
                yield tmp
            return
        if not half_written:  # read-only folder: the temporary file cannot even be created
            raise OSError(err, os.strerror(err), str(path))
        with real(path, suffix) as tmp:
            yield tmp
            data = tmp.read_bytes()
            tmp.write_bytes(data[: len(data) // 2])  # the disk filled up half way
            raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(mio, "atomic_path", failing)


@pytest.mark.parametrize("err,half", [(errno.ENOSPC, True), (errno.EROFS, False)])
@pytest.mark.parametrize("n_ok", [0, 2])
def test_failed_writes_give_one_error_and_corrupt_nothing(done_workdir, monkeypatch, capsys, err, half, n_ok):
    src, manifest, work = done_workdir
    inputs, outputs = tree_hash(src), tree_hash(work)
    _fail_after(monkeypatch, n_ok, err, half)
    code = main(["-q", "preprocess", str(manifest), "--out", str(work), "--preset", "scale:0.05", "--no-resume"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and os.strerror(err) in lines[0] and str(work) in lines[0], lines
    after = tree_hash(work)
    # The files that were rewritten successfully have the same content (same inputs); every other
    # file is byte for byte as before; no partial or temporary file is left.
    assert {k: v.split()[0] for k, v in after.items()} == {k: v.split()[0] for k, v in outputs.items()}
    assert tree_hash(src) == inputs
