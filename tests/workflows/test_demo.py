"""The end-to-end demo: ``run_demo(quick=True)`` produces every artefact; the committed full-run
summary (docs/demo_summary.json) shows the paper's claims; the synthetic readers behave as
specified."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mammokit.synth import SynthConfig, plan_dataset
from mammokit.synth.readers import (
    ReaderSettings,
    finding_conspicuity,
    synthetic_readers,
)
from mammokit.workflows.demo import FULL, MODEL_ROWS, QUICK, format_summary, run_demo

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_SUMMARY = ROOT / "docs" / "demo_summary.json"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------ quick end-to-end run


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(out, quick=True, seed=0, device="cpu", workers=2, threads=1, echo=False)
    return out, summary


@pytest.mark.slow
def test_quick_demo_writes_every_artefact(quick_demo):
    out, summary = quick_demo
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["format"] == "mammokit.demo.summary"
    assert on_disk["settings"]["name"] == "quick" and on_disk["settings"]["n_exams"] == QUICK.n_exams
    assert set(on_disk["models"]) == {key for key, *_ in MODEL_ROWS}
    for key, inputs, variant, kind in MODEL_ROWS:
        m = on_disk["models"][key]
        assert (m["input"], m["variant"], m["kind"]) == (inputs, variant, kind)
        for task in ("malignant", "benign"):
            auc = m["screening"][task]["auc"]
            lo, hi = m["screening"][task]["ci"]
            assert 0 <= auc <= 1 and 0 <= lo <= hi <= 1
    r = on_disk["reader_study"]
    assert r["n_readers"] == QUICK.n_readers
    for key in ("readers_auc_mean", "readers_auc_min", "readers_auc_max", "model_auc", "hybrid_auc_mean"):
        assert 0 <= r[key] <= 1
    assert r["readers_auc_min"] <= r["readers_auc_mean"] <= r["readers_auc_max"]
    assert set(on_disk["claims"]) == {
        "heatmaps_ensemble_malignant_auc_at_least_0.90", "heatmaps_ensemble_benign_auc_at_least_0.70",
        "heatmaps_beat_image_only_ensemble", "heatmaps_beat_image_only_single", "hybrid_beats_average_reader",
        "benign_heatmap_localisation_at_least_3",
    }
    # The claims are decided from the figures' CIs, not asserted blindly.
    from mammokit.evaluation.paired import claim_verdict

    c = on_disk["claims"]
    ih = on_disk["models"]["image_heatmaps_ensemble"]["screening"]["malignant"]
    lo, hi = ih["ci"]
    assert c["heatmaps_ensemble_malignant_auc_at_least_0.90"]["verdict"] == claim_verdict(lo - 0.9, hi - 0.9)
    for key in ("heatmaps_beat_image_only_ensemble", "heatmaps_beat_image_only_single", "hybrid_beats_average_reader"):
        assert c[key]["verdict"] == claim_verdict(*c[key]["ci"])
        assert c[key]["ci"][0] <= c[key]["ci"][1]
    a = on_disk["models"]["image_heatmaps_ensemble"]["screening"]["malignant"]["auc"]
    b = on_disk["models"]["image_only_ensemble"]["screening"]["malignant"]["auc"]
    assert c["heatmaps_beat_image_only_ensemble"]["delta"] == pytest.approx(a - b)
    assert c["hybrid_beats_average_reader"]["delta"] == pytest.approx(r["hybrid_auc_mean"] - r["readers_auc_mean"])
    loc = on_disk["heatmap_localisation"]
    assert loc["benign"]["n_images"] == 4 * len({row["exam_id"] for row in _rows(out / "test_labels.csv")})
    assert loc["malignant"]["ratio"] == pytest.approx(loc["malignant"]["inside_mean"] / loc["malignant"]["outside_mean"])
    assert summary["models"] == on_disk["models"]

    # Predictions for every test exam, by every model, probabilities in [0, 1].
    labels = _rows(out / "data" / "labels.csv")
    test_ids = {row["exam_id"] for row in labels if row["split"] == "test"}
    assert test_ids and summary["test_split"]["n_exams"] == len(test_ids)
    for key, *_ in MODEL_ROWS:
        rows = _rows(out / "predictions" / f"{key}.csv")
        assert {row["exam_id"] for row in rows} == test_ids
        values = np.array([[float(row[c]) for c in ("left_benign", "right_benign", "left_malignant", "right_malignant")]
                           for row in rows])
        assert ((values >= 0) & (values <= 1)).all()

    # Every stage's outputs.
    for path in ("work/exams.json", "runs/patch/best.safetensors", "runs/birads/best.safetensors",
                 "runs/image_only/ensemble.safetensors", "runs/image_heatmaps/ensemble.safetensors",
                 "runs/image_heatmaps/member0/best.safetensors", "evaluation/evaluation.json",
                 "evaluation/reader_study.json", "evaluation/reader_curves.png", "evaluation/lambda_sweep.png"):
        assert (out / path).is_file(), path
    assert len(list((out / "work" / "heatmaps" / "malignant").glob("*.png"))) == 4 * QUICK.n_exams

    # The reader study read every breast of the test split once per reader.
    readers = _rows(out / "readers.csv")
    assert len(readers) == 2 * len(test_ids) * QUICK.n_readers
    assert {row["exam_id"] for row in readers} == test_ids

    # A self-contained report: no external images, scripts or stylesheets.
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("data:") or s.startswith("#") for s in sources)
    assert "Reader study" in page or "reader" in page.lower()

    # The printed table has the four model rows and the reader line.
    table = format_summary(on_disk)
    assert table.count("view-wise") == 4 and "hybrid (lambda 0.5)" in table


@pytest.mark.slow
def test_quick_demo_rerun_skips_done_stages(quick_demo):
    out, first = quick_demo
    again = run_demo(out, quick=True, seed=0, device="cpu", workers=2, threads=1, echo=False)
    for stage in ("synth", "preprocess", "patch", "heatmaps", "birads", "image_only", "image_heatmaps", "predict"):
        assert again["stages"][stage]["skipped"], stage
    assert again["models"] == first["models"]
    assert again["reader_study"] == first["reader_study"]


@pytest.mark.slow
def test_demo_models_run_on_new_exams_without_a_preset_flag(quick_demo, tmp_path):
    """The demo's checkpoints describe their preset: `mammokit run` on exams it has never seen
    needs only the models (preprocess, heatmaps and predict all at the demo's preset)."""
    from mammokit.cli import main
    from mammokit.synth import generate

    out, _ = quick_demo
    generate(tmp_path / "new", n_exams=2, seed=99, scale=QUICK.scale)
    run_dir = tmp_path / "run"
    rc = main(["run", str(tmp_path / "new" / "manifest.csv"), "--out", str(run_dir),
               "--model", str(out / "runs" / "image_heatmaps" / "ensemble.safetensors"),
               "--patch-model", str(out / "runs" / "patch" / "best.safetensors"), "--tta", "1", "--device", "cpu"])
    assert rc == 0
    meta = json.loads((run_dir / "exams.json").read_text())
    assert meta["preset_config"] == json.loads(json.dumps(QUICK.preset().to_dict()))
    assert meta["preset_config"]["heatmap_stride"] == QUICK.heatmap_stride  # the stride the demo's heatmaps used
    rows = _rows(run_dir / "predictions.csv")
    assert len(rows) == 2 and all(0 <= float(r["left_malignant"]) <= 1 for r in rows)
    assert len(list((run_dir / "heatmaps" / "malignant").glob("*.png"))) == 8


def test_demo_refuses_a_folder_of_other_settings(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps({"settings": FULL.to_dict(), "seed": 0}))
    with pytest.raises(ValueError, match="other settings"):
        run_demo(tmp_path, quick=True, seed=0, echo=False)


# ------------------------------------------------------------------------ committed full run


def test_committed_full_summary_shows_the_papers_claims():
    assert COMMITTED_SUMMARY.is_file(), "docs/demo_summary.json (the full demo's summary) must be committed"
    s = json.loads(COMMITTED_SUMMARY.read_text())
    settings = {k: v for k, v in s["settings"].items() if k not in ("seed", "preset")}
    assert settings == FULL.to_dict(), "the committed summary was made with other settings than the demo's"
    assert s["test_split"]["n_exams"] >= 200
    m = s["models"]
    ih = m["image_heatmaps_ensemble"]["screening"]
    assert ih["malignant"]["auc"] >= 0.90
    c = s["claims"]
    # Every claim the README states as holding holds by its paired CI in the committed run.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for key, claim in c.items():
        if f"`{key}`: holds" in readme:
            assert claim["verdict"] == "holds", key
    r = s["reader_study"]
    assert 0.65 <= r["readers_auc_mean"] <= 0.90


# ------------------------------------------------------------------------ synthetic readers


def _reader_aucs(n_exams: int, seed: int, settings: ReaderSettings) -> list[float]:
    cfg = SynthConfig(scale=0.0625, cancer_rate=0.25, benign_rate=0.25)
    plans = plan_dataset(n_exams, seed, cfg)
    doc = {"exams": [{"exam_id": p.exam_id, "findings": [f.to_dict() for f in p.findings]} for p in plans]}
    truth = {(p.exam_id, side[0].upper()): p.labels[f"{side}_malignant"] for p in plans for side in ("left", "right")}
    rows = synthetic_readers(doc, seed=seed, settings=settings)
    by: dict[str, list] = {}
    for row in rows:
        by.setdefault(row["reader_id"], []).append((truth[(row["exam_id"], row["breast"])], float(row["probability"])))
    return [roc_auc_score(*zip(*v)) for _, v in sorted(by.items())]


def test_readers_span_the_papers_range():
    aucs = _reader_aucs(1500, 3, ReaderSettings())
    assert len(aucs) == 14
    # The paper: 0.705-0.860, mean 0.778.
    assert 0.74 <= np.mean(aucs) <= 0.82
    assert min(aucs) < 0.75 and max(aucs) > 0.82
    # Skill is ordered: the better half of the readers beats the worse half.
    assert np.mean(aucs[7:]) > np.mean(aucs[:7]) + 0.04


def test_readers_are_deterministic_and_per_breast():
    cfg = SynthConfig(scale=0.0625)
    plans = plan_dataset(30, 1, cfg)
    doc = {"exams": [{"exam_id": p.exam_id, "findings": [f.to_dict() for f in p.findings]} for p in plans]}
    a = synthetic_readers(doc, seed=5, settings=ReaderSettings(n_readers=3))
    b = synthetic_readers(doc, seed=5, settings=ReaderSettings(n_readers=3))
    c = synthetic_readers(doc, seed=6, settings=ReaderSettings(n_readers=3))
    assert a == b and a != c
    assert len(a) == 30 * 2 * 3
    # A breast's reading does not depend on which other exams are in the study.
    sub = synthetic_readers(doc, exam_ids=[plans[4].exam_id], seed=5, settings=ReaderSettings(n_readers=3))
    assert sub == [r for r in a if r["exam_id"] == plans[4].exam_id]
    assert all(0 <= float(r["probability"]) <= 1 and len(r["probability"]) == 4 for r in a)


def test_conspicuity():
    assert finding_conspicuity("mass", 14.0, occult=True) == 0.0
    assert finding_conspicuity("mass", 14.0, occult=False) == pytest.approx(14 / 20)
    assert finding_conspicuity("asymmetry", 12.0, occult=False) == pytest.approx(0.55 / 2)
    assert finding_conspicuity("mass", 25.0, False) > finding_conspicuity("mass", 5.0, False)


def test_readers_reject_unknown_exams():
    doc = {"exams": [{"exam_id": "A", "findings": []}]}
    with pytest.raises(ValueError, match="lack 1 exam"):
        synthetic_readers(doc, exam_ids=["B"])
