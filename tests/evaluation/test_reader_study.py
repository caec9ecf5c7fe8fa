"""Reader study: hybrids, lambda sweep, scale handling, and the paper's real reader study."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from mammokit.cli import main
from mammokit.evaluation.reader_study import reader_study
from mammokit.evaluation.tables_io import EvaluationInputError

# Breasts: e1-L malignant, e3-L malignant, the other four benign/normal.
LABELS = ["exam_id,left_malignant,right_malignant", "e1,1,0", "e2,0,0", "e3,1,0"]
MODEL = [
    "exam_id,left_benign,right_benign,left_malignant,right_malignant",
    "e1,0.1,0.1,0.6,0.2",
    "e2,0.1,0.1,0.5,0.1",
    "e3,0.1,0.1,0.3,0.4",
]
# Readers on a 0-100 scale.
READER_A = {("e1", "L"): 20, ("e1", "R"): 0, ("e2", "L"): 50, ("e2", "R"): 10, ("e3", "L"): 90, ("e3", "R"): 30}
READER_B = {("e1", "L"): 100, ("e1", "R"): 0, ("e2", "L"): 0, ("e2", "R"): 0, ("e3", "L"): 0, ("e3", "R"): 10}


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _readers(path, readers, divide=1):
    lines = ["reader_id,exam_id,breast,probability"]
    for rid, scores in readers.items():
        lines += [f"{rid},{e},{s},{v / divide:g}" for (e, s), v in scores.items()]
    return _write(path, lines)


@pytest.fixture
def study(tmp_path):
    return (
        _readers(tmp_path / "readers.csv", {"A": READER_A, "B": READER_B}),
        _write(tmp_path / "model.csv", MODEL),
        _write(tmp_path / "labels.csv", LABELS),
    )


def test_hand_computed_study(study, tmp_path):
    readers, model, labels = study
    r = reader_study(readers, model, labels, lambdas=[0.0, 0.5, 1.0], out_dir=tmp_path / "out")
    assert r.scale == 100 and "detected" in r.scale_source
    assert (r.n_exams, r.n_breasts, r.n_positive) == (3, 6, 2)
    # Model: positives .6, .3; negatives .2, .5, .1, .4: .6 wins 4, .3 wins 2 -> 6/8.
    assert r.model_roc_auc == pytest.approx(0.75)
    a, b = r.readers
    # Reader A (0-1): positives .2, .9; negatives 0, .5, .1, .3: .2 wins 2, .9 wins 4 -> 6/8.
    assert a.roc_auc == pytest.approx(0.75)
    # Hybrid 0.5: e1L .4, e1R .1, e2L .5, e2R .1, e3L .6, e3R .35. Positives .4, .6;
    # negatives .1, .5, .1, .35: .4 wins 3, .6 wins 4 -> 7/8.
    assert a.hybrid_roc_auc == pytest.approx(0.875)
    # Hybrid AP: .6 (P) -> P=1, R=.5; .5 (N); .4 (P) -> P=2/3, R=1: AP = .5 + .5 * 2/3.
    assert a.hybrid_pr_auc == pytest.approx(0.5 + 0.5 * 2 / 3)
    # Reader B (0-1): positives 1, 0; negatives 0, 0, 0, .1: 1 wins 4; 0 ties 3, loses 1 -> 5.5/8.
    assert b.roc_auc == pytest.approx(5.5 / 8)
    assert r.summary["readers_roc_auc_mean"] == pytest.approx((0.75 + 0.6875) / 2)
    assert r.summary["readers_roc_auc_std"] == pytest.approx(0.03125)  # population std
    # Sweep end points: lambda = 0 is the model, lambda = 1 the reader.
    for x in r.readers:
        assert r.sweep[x.reader]["roc_auc"][0] == pytest.approx(r.model_roc_auc)
        assert r.sweep[x.reader]["roc_auc"][2] == pytest.approx(x.roc_auc)
        assert r.sweep[x.reader]["pr_auc"][2] == pytest.approx(x.pr_auc)
        assert r.sweep[x.reader]["roc_auc"][1] == pytest.approx(x.hybrid_roc_auc)
    out = tmp_path / "out"
    for name in ("reader_curves.png", "lambda_sweep.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "| A | 6 | 2 | 0.750 |" in (out / "reader_study.md").read_text()


def test_scale_handling(study, tmp_path):
    _, model, labels = study
    # The same readers already on 0-1: detected as 1, same AUCs and hybrids.
    r01 = _readers(tmp_path / "r01.csv", {"A": READER_A, "B": READER_B}, divide=100)
    r = reader_study(r01, model, labels, lambdas=[0.5])
    assert r.scale == 1 and r.readers[0].hybrid_roc_auc == pytest.approx(0.875)
    # Values above 1 with --scale 1: an error naming the file.
    with pytest.raises(EvaluationInputError, match="readers.csv: .* exceed the scale 1"):
        reader_study(study[0], model, labels, scale=1)
    # Only 0 and 1: ambiguous, ask for --scale; with it given, it runs.
    binary = _readers(tmp_path / "bin.csv", {"A": {k: float(v > 40) for k, v in READER_A.items()}})
    with pytest.raises(EvaluationInputError, match="bin.csv: .*give --scale 1 or --scale 100"):
        reader_study(binary, model, labels)
    assert reader_study(binary, model, labels, scale=1, lambdas=[0.5]).scale == 1


def test_breast_level_model_and_missing_breasts(study, tmp_path):
    readers, _, labels = study
    rows = ["exam_id,breast,probability"]
    rows += ["e1,L,0.6", "e1,R,0.2", "e2,L,0.5", "e2,R,0.1", "e3,L,0.3", "e3,R,0.4"]
    r = reader_study(readers, _write(tmp_path / "m.csv", rows), labels, lambdas=[0.5])
    assert r.model_roc_auc == pytest.approx(0.75)
    with pytest.raises(EvaluationInputError, match=r"m2.csv: model predictions lack 1 of the 6 breasts .*e3/R"):
        reader_study(readers, _write(tmp_path / "m2.csv", rows[:-1]), labels)


def test_wide_format_and_cli(tmp_path, capsys):
    lines = ["case_ID,side,label,Reader01_POM,Reader02_POM,AI_DMVCNN_POM"]
    for (e, s), v in READER_A.items():
        lab = int((e, s) in {("e1", "L"), ("e3", "L")})
        model = {("e1", "L"): 0.6, ("e1", "R"): 0.2, ("e2", "L"): 0.5, ("e2", "R"): 0.1, ("e3", "L"): 0.3, ("e3", "R"): 0.4}
        lines.append(f"{e},{s},{lab},{v / 100:g},{READER_B[(e, s)] / 100:g},{model[(e, s)]}")
    wide = _write(tmp_path / "wide.csv", lines)
    r = reader_study(nyu_csv=wide, lambdas=[0.5])
    assert [x.reader for x in r.readers] == ["Reader01", "Reader02"]
    assert r.readers[0].hybrid_roc_auc == pytest.approx(0.875)
    assert main(["reader-study", "--nyu-csv", str(wide)]) == 0
    assert "| Reader01 | 6 | 2 | 0.750 |" in capsys.readouterr().out
    assert main(["reader-study", "--readers", str(wide)]) == 2


def _auc_mann_whitney(y, s):
    """Probability that a random positive outranks a random negative (ties 1/2): every
    (positive, negative) pair compared, as a broadcast double loop."""
    s, y = np.asarray(s, dtype=float), np.asarray(y)
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_real_reader_study(reader_study_csv):
    r = reader_study(nyu_csv=reader_study_csv, lambdas=[0.0, 0.5, 1.0])
    with open(reader_study_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    y = np.array([int(x["label"]) for x in rows])
    assert (r.n_breasts, r.n_exams, r.n_positive) == (1440, 720, int(y.sum()))
    model = np.array([float(x["AI_DMVCNN_POM"]) for x in rows])
    assert r.model_roc_auc == pytest.approx(_auc_mann_whitney(y, model), abs=1e-9)
    aucs = []
    for x in r.readers:
        s = np.array([float(row[f"{x.reader}_POM"]) for row in rows])
        assert x.roc_auc == pytest.approx(_auc_mann_whitney(y, s), abs=1e-9)
        h = 0.5 * s + 0.5 * model
        assert x.hybrid_roc_auc == pytest.approx(_auc_mann_whitney(y, h), abs=1e-9)
        aucs.append(x.roc_auc)
    assert len(aucs) == 14
    # The paper's readers: AUC 0.705-0.860, mean 0.778, std 0.0435; PR AUC 0.244-0.453.
    assert (round(min(aucs), 3), round(max(aucs), 3)) == (0.705, 0.860)
    assert r.summary["readers_roc_auc_mean"] == pytest.approx(0.778, abs=0.001)
    assert r.summary["readers_roc_auc_std"] == pytest.approx(0.0435, abs=0.0002)
    assert (round(r.summary["readers_pr_auc_min"], 3), round(r.summary["readers_pr_auc_max"], 3)) == (0.244, 0.453)
    # Every reader gains from the hybrid with the published model.
    assert all(x.hybrid_roc_auc > x.roc_auc for x in r.readers)
