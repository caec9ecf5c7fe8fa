"""``reproduce table3`` at a tiny size: every row and column of Table III, every paired CI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mammokit.errors import UsageError
from mammokit.workflows.reproduce import run_table3, table3_settings
from mammokit.workflows.table3 import INPUTS, PAPER_TABLE3, POPULATIONS, TASKS, VARIANTS, row_key


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("table3")
    return out, run_table3(out, scale="tiny", device="cpu", workers=1, threads=1, echo=False)


@pytest.mark.slow
def test_every_row_and_ci(tiny):
    out, result = tiny
    assert [(r["input"], r["variant"]) for r in result["rows"]] == [(i, v) for i in INPUTS for v in VARIANTS]
    for r in result["rows"]:
        assert r["pretrained"] == (not r["variant"].endswith("*"))
        for pop in POPULATIONS:
            for task in TASKS:
                cell = r[pop][task]
                assert len(cell["single"]["members"]) == 2
                ens = cell["ensemble"]
                if ens["auc"] is not None:
                    lo, hi = ens["ci"]
                    assert 0 <= lo <= hi <= 1
                vals = [m for m in cell["single"]["members"] if m is not None]
                if len(vals) == 2:
                    assert cell["single"]["auc"] == pytest.approx(np.mean(vals))
                    assert cell["single"]["std"] == pytest.approx(np.std(vals, ddof=1))
    # The ensemble's predictions are the members' mean probability.
    d = out / "predictions" / row_key("image+heatmaps", "joint")
    rows = [list(csv.DictReader(open(d / f))) for f in ("member0.csv", "member1.csv", "ensemble.csv")]
    for a, b, e in zip(*rows):
        assert float(e["left_malignant"]) == pytest.approx((float(a["left_malignant"]) + float(b["left_malignant"])) / 2,
                                                           abs=1e-6)
    comps = result["comparisons"]
    # Per task: 5 heatmaps comparisons, 10 ensemble - single, 2 pretrained - not.
    assert len(comps) == 2 * (5 + 10 + 2)
    for c in comps:
        assert c["verdict"] in ("holds", "within noise", "does not hold", "undetermined")
        if c["ci"][0] is not None:
            assert c["ci"][0] <= c["ci"][1]
    # Files: markdown with the paper's column, CSV with every cell, JSON, figure.
    md = (out / "table3.md").read_text()
    assert "0.895" in md and "view-wise*" in md and "paired" in md
    flat = list(csv.DictReader(open(out / "table3.csv")))
    assert len(flat) == 10 * 2 * 2 * 2
    assert {float(r["paper_auc"]) for r in flat if r["model"] == "ensemble" and r["task"] == "malignant"
            and r["population"] == "screening"} == {v["screening"][4] for v in PAPER_TABLE3.values()}
    assert json.loads((out / "table3.json").read_text())["format"] == "mammokit.table3"
    assert (out / "table3.png").stat().st_size > 1000


@pytest.mark.slow
def test_rerun_skips_every_stage(tiny):
    out, first = tiny
    again = run_table3(out, scale="tiny", device="cpu", workers=1, threads=1, echo=False)
    assert all(v["skipped"] for k, v in again["stages"].items() if k != "evaluate")
    assert again["rows"] == first["rows"]


def test_settings_checks():
    assert table3_settings("demo").ensemble == 3
    assert table3_settings("demo", exams=800, members=4).n_exams == 800
    with pytest.raises(UsageError):
        table3_settings("demo", members=1)
    with pytest.raises(UsageError):
        table3_settings("huge")
