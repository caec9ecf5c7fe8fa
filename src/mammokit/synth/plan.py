"""The exam plan: everything about an exam except its pixels (labels, findings, density, split).

Plans are cheap, so label statistics (prevalence, BI-RADS noise) can be checked on many exams
without rendering any image. Every random choice comes from a stream derived from the data set's
seed and the exam index / patient id, so a plan does not depend on worker counts or on which
other exams are generated.

Label rules (docs/synthetic-mammograms.md):
- per breast benign / malignant = the breast holds a finding of that class (occult ones included);
- biopsied = any finding, plus ``false_positive_biopsy_rate`` of finding-free exams;
- noisy BI-RADS: an exam with cancer -> 0 with p 0.87 (else 1 or 2, evenly); benign only -> 2 with
  p 0.80, 0 with p 0.15, 1 with p 0.05; finding-free -> 0 with p 0.10, else 1 (a false-positive
  biopsy follows a recall, so those exams are 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mammokit.synth.config import DENSITY_FRACTION, DENSITY_PREVALENCE, SynthConfig
from mammokit.synth.findings import Finding, sample_finding
from mammokit.utils.seed import derive_seed, rng_for

SPLIT_NAMES = ("train", "val", "test")
BIRADS_CANCER_P0 = 0.87
BIRADS_NORMAL_P0 = 0.10
BIRADS_BENIGN_P = (0.15, 0.05, 0.80)  # P(0), P(1), P(2)


@dataclass
class ExamPlan:
    """One exam's metadata (no pixels)."""

    index: int
    exam_id: str
    patient_id: str
    split: str
    density: str
    dense_fraction: float
    seed: int
    anatomy_seed: int
    findings: list[Finding] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    birads: int = 1
    biopsied: int = 0

    @property
    def finding_types(self) -> str:
        """``;``-joined ``<side>:<class>:<kind>[:occult]`` of the findings (empty when normal)."""
        return ";".join(
            f"{f.side}:{f.cls}:{f.kind}" + (":occult" if f.occult else "") for f in self.findings
        )


def exam_id_for(index: int) -> str:
    # A letter prefix keeps ids strings in spreadsheets and CSV readers (no lost leading zeros).
    return f"S{index:05d}"


def assign_patients(n_exams: int, seed: int, cfg: SynthConfig) -> list[str]:
    """Patient id of each exam: consecutive exams share a patient with ``repeat_exam_rate``."""
    rng = rng_for(seed, "patients")
    patients: list[str] = []
    p = 0
    while len(patients) < n_exams:
        visits = 2 if rng.random() < cfg.repeat_exam_rate else 1
        patients.extend([f"P{p:05d}"] * visits)
        p += 1
    return patients[:n_exams]


def split_for_patient(seed: int, patient_id: str, splits: tuple[float, float, float]) -> str:
    u = rng_for(seed, "split", patient_id).random()
    edges = np.cumsum(splits)
    for name, edge in zip(SPLIT_NAMES, edges):
        if u < edge:
            return name
    return SPLIT_NAMES[-1]


def _choose(rng: np.random.Generator, weights: dict) -> str:
    kinds = sorted(weights)
    p = np.array([weights[k] for k in kinds], float)
    return str(rng.choice(kinds, p=p / p.sum()))


def plan_exam(seed: int, index: int, patient_id: str, cfg: SynthConfig) -> ExamPlan:
    """Draw one exam's density, findings, labels, BI-RADS and biopsy status."""
    # Density is a property of the woman: drawn from her own stream, shared by her exams.
    prng = rng_for(seed, "patient", patient_id)
    cats = list(DENSITY_PREVALENCE)
    density = str(prng.choice(cats, p=[DENSITY_PREVALENCE[c] for c in cats]))
    dense_fraction = float(prng.uniform(*DENSITY_FRACTION[density]))

    rng = rng_for(seed, "exam", index)
    plan = ExamPlan(
        index=index,
        exam_id=exam_id_for(index),
        patient_id=patient_id,
        split=split_for_patient(seed, patient_id, cfg.splits),
        density=density,
        dense_fraction=dense_fraction,
        seed=derive_seed(seed, "exam-pixels", index),
        # The breasts' shapes belong to the woman: her repeat exams show the same anatomy.
        anatomy_seed=derive_seed(seed, "anatomy", patient_id),
    )
    has_cancer = rng.random() < cfg.cancer_rate
    has_benign = rng.random() < cfg.benign_rate
    cancer_side = "L" if rng.random() < 0.5 else "R"
    benign_side = "L" if rng.random() < 0.5 else "R"
    k = 0
    for present, cls, side, mix, occult in (
        (has_cancer, "malignant", cancer_side, cfg.malignant_mix, cfg.occult_rate_malignant),
        (has_benign, "benign", benign_side, cfg.benign_mix, cfg.occult_rate_benign),
    ):
        if not present:
            continue
        n = 1 if cls == "malignant" or rng.random() < 0.8 else 2
        for _ in range(n):
            kind = _choose(rng, mix)
            plan.findings.append(
                sample_finding(rng, cls, side, kind, occult, derive_seed(seed, "finding", index, k))
            )
            k += 1
    for side, name in (("L", "left"), ("R", "right")):
        for cls in ("benign", "malignant"):
            plan.labels[f"{name}_{cls}"] = int(any(f.side == side and f.cls == cls for f in plan.findings))

    u = rng.random()
    if has_cancer:
        plan.birads = 0 if u < BIRADS_CANCER_P0 else (1 if u < (1 + BIRADS_CANCER_P0) / 2 else 2)
    elif has_benign:
        p0, p1, _ = BIRADS_BENIGN_P
        plan.birads = 0 if u < p0 else (1 if u < p0 + p1 else 2)
    else:
        false_positive = rng.random() < cfg.false_positive_biopsy_rate
        plan.biopsied = int(false_positive)
        plan.birads = 0 if (false_positive or u < BIRADS_NORMAL_P0) else 1
    if plan.findings:
        plan.biopsied = 1
    return plan


def plan_dataset(n_exams: int, seed: int, cfg: SynthConfig) -> list[ExamPlan]:
    """Plans of exams ``0 .. n_exams - 1``."""
    if n_exams < 1:
        raise ValueError(f"n_exams must be >= 1, got {n_exams}")
    patients = assign_patients(n_exams, seed, cfg)
    return [plan_exam(seed, i, patients[i], cfg) for i in range(n_exams)]
