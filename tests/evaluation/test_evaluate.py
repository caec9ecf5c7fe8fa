"""`evaluate`: populations, strata, several models, outputs and errors (hand-computed values)."""

from __future__ import annotations

import json

import pytest

from mammokit.cli import main
from mammokit.evaluation.evaluate import evaluate
from mammokit.evaluation.tables_io import EvaluationInputError

HEADER = "exam_id,left_benign,right_benign,left_malignant,right_malignant"
# Malignant: a-L positive (.9), a-R (.3), b-L (.8), b-R (.1), c-L positive (.4), c-R (.4).
# Benign: a-R positive (.6); negatives a-L .2, b-L .7, b-R .1, c-L .3, c-R .0.
PRED = [HEADER, "a,0.2,0.6,0.9,0.3", "b,0.7,0.1,0.8,0.1", "c,0.3,0.0,0.4,0.4"]
LABELS = [HEADER + ",biopsied,density", "a,0,1,1,0,1,A", "b,0,0,0,0,0,B", "c,0,0,1,0,1,A"]


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    return _write(tmp_path / "model.csv", PRED), _write(tmp_path / "labels.csv", LABELS)


def test_screening_population_by_hand(files):
    pred, labels = files
    r = evaluate(pred, labels, bootstrap=0)
    m = r.models[0].populations["screening"]
    # Malignant: 6.5 / 8 pairs won (see test_evaluation_metrics); AP 0.75.
    assert m["malignant"].roc_auc.value == pytest.approx(6.5 / 8)
    assert m["malignant"].pr_auc.value == pytest.approx(0.75)
    # Benign: the positive .6 beats 4 of 5 negatives (loses to .7): 0.8; AP: .7 (N) then .6 (P):
    # precision 1/2 at recall 1 -> 0.5.
    assert m["benign"].roc_auc.value == pytest.approx(0.8)
    assert m["benign"].pr_auc.value == pytest.approx(0.5)
    assert (m["malignant"].n_breasts, m["malignant"].n_positive, m["benign"].n_positive) == (6, 2, 1)


def test_biopsied_population(files, tmp_path):
    pred, labels = files
    r = evaluate(pred, labels, population="all", bootstrap=0)
    assert r.population_sizes == {"screening": 3, "biopsied": 2}
    b = r.models[0].populations["biopsied"]
    # Exams a, c: positives .9, .4; negatives .3, .4: .9 wins 2, .4 wins 1 and ties 1 -> 3.5 / 4.
    assert b["malignant"].roc_auc.value == pytest.approx(0.875)
    # Benign positive .6 vs negatives .2, .3, .0 -> 1.
    assert b["benign"].roc_auc.value == pytest.approx(1.0)
    # Without a biopsied column: exams with any positive label (a, c) -> same population.
    nobiop = _write(tmp_path / "l2.csv", [HEADER, "a,0,1,1,0", "b,0,0,0,0", "c,0,0,1,0"])
    r2 = evaluate(pred, nobiop, population="biopsied", bootstrap=0)
    assert r2.population_sizes == {"biopsied": 2}
    assert "no 'biopsied' column" in r2.population_notes["biopsied"]
    # A biopsied column that differs from the positive labels is what counts: exams a, b.
    other = _write(tmp_path / "l3.csv", [HEADER + ",biopsied", "a,0,1,1,0,1", "b,0,0,0,0,1", "c,0,0,1,0,0"])
    r3 = evaluate(pred, other, population="biopsied", bootstrap=0)
    # Malignant positive .9 vs .3, .8, .1 -> 1.0.
    assert r3.models[0].populations["biopsied"]["malignant"].roc_auc.value == pytest.approx(1.0)


def test_stratified_with_single_class_stratum(files):
    pred, labels = files
    r = evaluate(pred, labels, bootstrap=0, by="density")
    strata = {s.value: s for s in r.models[0].strata["screening"]}
    assert set(strata) == {"A", "B"}
    assert strata["A"].n_exams == 2
    assert strata["A"].tasks["malignant"].roc_auc.value == pytest.approx(0.875)
    b = strata["B"].tasks["malignant"].roc_auc
    assert b.value is None and "all 2 breasts are negative" in b.undefined


def test_bootstrap_ci_reproducible(files, tmp_path):
    # 30 exams built from the 3 above (ids a0.. c9) so that bootstraps mostly have both classes.
    preds, labs = [HEADER], [HEADER]
    for i in range(10):
        for p, l in zip(PRED[1:], LABELS[1:]):
            preds.append(f"{p.split(',')[0]}{i}," + p.split(",", 1)[1])
            labs.append(f"{l.split(',')[0]}{i}," + ",".join(l.split(",")[1:5]))
    pred, labels = _write(tmp_path / "p30.csv", preds), _write(tmp_path / "l30.csv", labs)
    r1 = evaluate(pred, labels, bootstrap=100, seed=1)
    r2 = evaluate(pred, labels, bootstrap=100, seed=1)
    m1 = r1.models[0].populations["screening"]["malignant"].roc_auc
    m2 = r2.models[0].populations["screening"]["malignant"].roc_auc
    assert m1.value == pytest.approx(6.5 / 8)  # same ranking repeated 10 times
    assert (m1.ci_low, m1.ci_high) == (m2.ci_low, m2.ci_high)
    assert m1.ci_low <= m1.value <= m1.ci_high and m1.ci_low < m1.ci_high
    assert m1.n_boot_valid == 100


def test_several_models_outputs(files, tmp_path):
    pred, labels = files
    # A perfect second model.
    perfect = _write(tmp_path / "perfect.csv", [HEADER, "a,0,1,1,0", "b,0,0,0,0", "c,0,0,1,0"])
    out = tmp_path / "out"
    r = evaluate([pred, perfect], labels, bootstrap=20, out_dir=out, names=["dmv", "oracle"])
    assert [m.name for m in r.models] == ["dmv", "oracle"]
    assert r.model("oracle").populations["screening"]["malignant"].roc_auc.value == 1.0
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["models"][1]["name"] == "oracle"
    md = (out / "evaluation.md").read_text()
    assert "| dmv | 0.812 (" in md and "| oracle | 1.000" in md
    for task in ("malignant", "benign"):
        png = out / f"curves_screening_{task}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_mismatched_exam_ids(files, tmp_path):
    _, labels = files
    pred = _write(tmp_path / "p.csv", PRED[:3] + ["z,0.1,0.1,0.1,0.1"])
    with pytest.raises(EvaluationInputError) as exc:
        evaluate(pred, labels, bootstrap=0)
    msg = str(exc.value)
    assert "p.csv" in msg and "1 exam(s) of" in msg and "e.g. c" in msg and "z" in msg


def test_missing_columns_named(files, tmp_path):
    _, labels = files
    pred = _write(tmp_path / "p.csv", ["exam_id,left_benign,right_benign,left_malignant", "a,0,0,0"])
    with pytest.raises(EvaluationInputError, match=r"p\.csv: predictions file lacks column\(s\) right_malignant"):
        evaluate(pred, labels, bootstrap=0)


def test_nan_prediction(files, tmp_path):
    _, labels = files
    pred = _write(tmp_path / "p.csv", PRED[:2] + ["b,0.7,nan,0.8,0.1", PRED[3]])
    with pytest.raises(EvaluationInputError, match=r"p\.csv: 1 prediction\(s\) are NaN.*b/right_benign"):
        evaluate(pred, labels, bootstrap=0)


def test_single_class_task_reported_undefined(files, tmp_path):
    pred, _ = files
    labels = _write(tmp_path / "l.csv", [HEADER, "a,0,1,0,0", "b,0,0,0,0", "c,0,0,0,0"])
    r = evaluate(pred, labels, bootstrap=10, out_dir=tmp_path / "o")
    m = r.models[0].populations["screening"]["malignant"]
    assert m.roc_auc.value is None and "all 6 breasts are negative" in m.roc_auc.undefined
    assert "all 6 breasts are negative" in (tmp_path / "o" / "evaluation.md").read_text()


def test_unknown_by_column(files):
    pred, labels = files
    with pytest.raises(EvaluationInputError, match="no column 'scanner'.*density"):
        evaluate(pred, labels, by="scanner", bootstrap=0)


def test_cli_both_label_forms(files, tmp_path, capsys):
    pred, labels = files
    assert main(["evaluate", str(pred), str(labels), "--bootstrap", "0", "-o", str(tmp_path / "o1")]) == 0
    assert main(["evaluate", str(pred), "--labels", str(labels), "--bootstrap", "0", "-o", str(tmp_path / "o2")]) == 0
    j1 = json.loads((tmp_path / "o1" / "evaluation.json").read_text())
    j2 = json.loads((tmp_path / "o2" / "evaluation.json").read_text())
    assert j1["models"][0]["populations"] == j2["models"][0]["populations"]
    # One file and no --labels: a one-line error, exit 2.
    assert main(["evaluate", str(pred)]) == 2
    assert "--labels" in capsys.readouterr().err
    # Labels and predictions swapped: the labels reader says it looks like predictions.
    assert main(["evaluate", str(labels), str(pred), "--bootstrap", "0"]) == 2
    assert "looks like a predictions file" in capsys.readouterr().err


def test_breasts_without_views_are_left_out_and_counted(tmp_path):
    # Exam c had no right-breast image: its right cells are empty. Exam b lacks L-MLO.
    pred = _write(tmp_path / "m.csv", [HEADER + ",views", "a,0.2,0.6,0.9,0.3,L-CC;R-CC;L-MLO;R-MLO",
                                       "b,0.7,0.1,0.8,0.1,L-CC;R-CC;R-MLO", "c,0.3,,0.4,,L-CC;L-MLO"])
    labels = _write(tmp_path / "l.csv", LABELS)
    r = evaluate(pred, labels, bootstrap=200, out_dir=tmp_path / "ev")
    m = r.models[0].populations["screening"]["malignant"]
    assert (m.n_breasts, m.n_unscored, m.n_fewer_views) == (5, 1, 1)  # c-R out; b-L had one view (c-L had both; c-R is unscored, not counted)
    # Malignant over the 5 scored breasts: positives a-L .9, c-L .4 vs negatives .3, .8, .1: 5 / 6.
    assert m.roc_auc.value == pytest.approx(5 / 6)
    assert m.roc_auc.ci_low is not None and m.roc_auc.n_boot_valid > 0
    text = (tmp_path / "ev" / "evaluation.md").read_text()
    assert "1 breast(s) scored from fewer than their two views; 1 without any view" in text


def test_an_empty_cell_is_no_prediction_but_nan_text_is_an_error(tmp_path):
    labels = _write(tmp_path / "l.csv", LABELS)
    bad = _write(tmp_path / "m.csv", [HEADER, "a,0.2,0.6,0.9,nan", "b,0.7,0.1,0.8,0.1", "c,0.3,0.0,0.4,0.4"])
    with pytest.raises(EvaluationInputError, match="NaN, infinite or outside"):
        evaluate(bad, labels, bootstrap=0)
