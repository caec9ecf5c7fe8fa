"""Kill -9 while preprocess works, re-run, outputs identical to an uninterrupted run."""

from __future__ import annotations

import csv

import pytest

from mammokit.data.images import write_png16
from tests.helpers.hostile import breast_image, tree_hash
from tests.helpers.kill9 import kill_matrix, run_stage

VIEWS4 = ("L-CC", "R-CC", "L-MLO", "R-MLO")


@pytest.mark.slow
def test_preprocess_survives_kill9_at_five_points(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["exam_id", "view", "path"])
        for e in range(6):
            for view in VIEWS4:
                name = f"e{e}_{view}.png"
                write_png16(src / name, breast_image(400, 300, view[0], seed=e * 4 + VIEWS4.index(view)))
                w.writerow([f"e{e}", view, f"src/{name}"])
    before = tree_hash(tmp_path / "src"), manifest.read_bytes()

    def make_args(out):
        return ["preprocess", str(manifest), "--out", str(out), "--preset", "tiny"]

    reference = tmp_path / "reference"
    run_stage(make_args(reference))
    assert len(list((reference / "cropped").glob("*.png"))) == 24
    results = kill_matrix(make_args, reference, "cropped/*.png", [2, 6, 11, 16, 21], tmp_path / "runs")
    for r in results:
        assert r.killed, f"kill point {r.point}: the run finished before it ({r.files_at_kill} files)"
        assert r.identical, f"kill point {r.point}: {r.differences}"
    assert (tree_hash(tmp_path / "src"), manifest.read_bytes()) == before  # input never modified
