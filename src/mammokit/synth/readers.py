"""Synthetic radiologists for the reader study of the demo (paper, Section VI).

A reader looks at a breast and reports a probability of malignancy. The model of a reading here
is a signal-detection one, driven by what is in the breast (``findings.json`` of the synthetic
data set), not by the model under test:

* a visible malignant finding raises the reader's suspicion by ``skill * conspicuity``, where the
  conspicuity depends on the finding's kind and size (``finding_conspicuity``); occult findings
  raise nothing (readers see the same pixels, Table I's occult lesions are invisible to them too);
* a visible benign finding raises suspicion too (benign calcifications and masses are what make
  radiologists recall and biopsy: the readers' false positives), by ``benign_confusion *
  conspicuity``;
* a *case* term shared by every reader (some normal breasts look suspicious to everyone, some
  cancers are subtle to everyone) and a *reader* term of each reading (inattention, reader's
  threshold); both are Gaussian and independent of anything the model sees, so the readers'
  errors are partly independent of the model's (what makes the paper's hybrid work).

The suspicion ``z`` is mapped to a probability with a logistic link ``sigmoid(z - bias)`` and
reported in whole per cent, as in the paper's study (0-100 scale written as 0-1 here).

Reader skills span ``skill_range`` linearly over the readers; the defaults were chosen (before
any model was trained, from the data-set plan alone) so that the readers' AUCs on a synthetic
screening population fall in the paper's range (0.705-0.860, mean 0.778): see
``test_readers_span_the_papers_range`` in ``tests/test_demo.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammokit.errors import InputFileError, MissingFileError, UsageError
from mammokit.utils.io import write_csv_atomic
from mammokit.utils.seed import rng_for

READER_COLUMNS = ("reader_id", "exam_id", "breast", "probability")

# How readily each kind of finding is seen at full resolution (radiologists read full-resolution
# images: calcifications are as conspicuous to them as masses; asymmetries and distortions are the
# classic misses).
KIND_CONSPICUITY = {"mass": 1.0, "calcification": 0.9, "asymmetry": 0.55, "distortion": 0.65}
# Size (mm) at which a finding reaches half of its kind's conspicuity.
HALF_SIZE_MM = {"mass": 6.0, "calcification": 4.0, "asymmetry": 12.0, "distortion": 8.0}


@dataclass(frozen=True)
class ReaderSettings:
    """Parameters of the synthetic readers.

    Attributes:
        n_readers: number of readers (paper: 14).
        skill_range: (least, most) skill: suspicion added by a fully conspicuous cancer, in units
            of the per-reading noise std.
        benign_confusion: suspicion added by a fully conspicuous benign finding, as a fraction of
            the reader's skill.
        case_noise: std of the case term shared by all readers.
        reader_noise: std of each reading's own term.
        bias: logistic offset (a normal breast reads around sigmoid(-bias) ~ 5 %).
    """

    n_readers: int = 14
    skill_range: tuple[float, float] = (1.7, 3.8)
    benign_confusion: float = 0.55
    case_noise: float = 0.6
    reader_noise: float = 1.0
    bias: float = 3.0


def finding_conspicuity(kind: str, size_mm: float, occult: bool) -> float:
    """How visible a finding is to a radiologist, in [0, 1] (0 for occult findings)."""
    if occult:
        return 0.0
    base = KIND_CONSPICUITY.get(kind, 0.7)
    half = HALF_SIZE_MM.get(kind, 8.0)
    return float(base * size_mm / (size_mm + half))


def breast_conspicuity(findings_doc: dict) -> dict[tuple[str, str], dict[str, float]]:
    """Per (exam_id, side L/R): the largest malignant and benign conspicuity of its findings.

    ``findings_doc`` is the content of a synthetic data set's ``findings.json``.
    """
    out: dict[tuple[str, str], dict[str, float]] = {}
    for exam in findings_doc.get("exams", []):
        eid = str(exam["exam_id"])
        for side in ("L", "R"):
            out[(eid, side)] = {"malignant": 0.0, "benign": 0.0}
        for f in exam.get("findings", []):
            key = (eid, f["side"])
            c = finding_conspicuity(f["kind"], float(f["size_mm"]), bool(f["occult"]))
            cls = "malignant" if f["class"] == "malignant" else "benign"
            out[key][cls] = max(out[key][cls], c)
    return out


def reader_skills(settings: ReaderSettings) -> np.ndarray:
    lo, hi = settings.skill_range
    if settings.n_readers == 1:
        return np.array([(lo + hi) / 2])
    return np.linspace(lo, hi, settings.n_readers)


def synthetic_readers(
    findings: dict | str | Path,
    exam_ids: Iterable[str] | None = None,
    seed: int = 0,
    settings: ReaderSettings | None = None,
) -> list[dict]:
    """Reader-study rows ``reader_id, exam_id, breast, probability`` (probability in 0-1, whole
    per cent) for every breast of ``exam_ids`` (default: every exam of ``findings``).

    Args:
        findings: a synthetic data set's ``findings.json`` (path or loaded document).
        exam_ids: the exams of the study (e.g. the test split).
        seed: the same seed gives the same readings; each reading's noise comes from a stream
            derived from (seed, reader, exam, breast), so it does not depend on which other exams
            are in the study.
        settings: :class:`ReaderSettings` (default: 14 readers of the paper's range of skill).
    """
    settings = settings or ReaderSettings()
    if settings.n_readers < 1:
        raise UsageError(f"n_readers must be >= 1, got {settings.n_readers}")
    if not isinstance(findings, dict):
        path = Path(findings)
        if not path.is_file():
            raise MissingFileError(f"{path}: findings file not found")
        findings = json.loads(path.read_text(encoding="utf-8"))
    consp = breast_conspicuity(findings)
    known = sorted({e for e, _ in consp})
    ids = known if exam_ids is None else [str(e) for e in exam_ids]
    missing = [e for e in ids if (e, "L") not in consp]
    if missing:
        raise InputFileError(f"findings lack {len(missing)} exam(s) of the study (e.g. {', '.join(missing[:5])})")
    skills = reader_skills(settings)
    rows: list[dict] = []
    for e in ids:
        for side in ("L", "R"):
            c = consp[(e, side)]
            case = settings.case_noise * float(rng_for(seed, "case", e, side).standard_normal())
            for r, skill in enumerate(skills):
                own = settings.reader_noise * float(rng_for(seed, "reader", r, e, side).standard_normal())
                z = skill * (c["malignant"] + settings.benign_confusion * c["benign"]) + case + own
                p = 1.0 / (1.0 + math.exp(-(z - settings.bias)))
                rows.append({"reader_id": f"R{r + 1:02d}", "exam_id": e, "breast": side,
                             "probability": f"{round(p * 100) / 100:.2f}"})
    return rows


def write_readers(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write reader rows (``READER_COLUMNS``) atomically; returns the path."""
    path = Path(path)
    write_csv_atomic(path, list(rows), READER_COLUMNS)
    return path
