"""Patient-level train / val / test splits of an imported data set.

* The set has an official split (CBIS-DDSM Training/Test, VinDr ``training``/``test``): it is
  applied per *patient*; a patient with images in both official parts goes to ``test`` (so no
  test image is ever trained on), and ``val`` is carved from the train patients.
* No official split: a seeded patient-disjoint split, ``test_fraction`` of the patients to test,
  ``val_fraction`` to val, the rest train.

Random choices are stratified by the patient's worst label (malignant, else benign, else
normal), so that a small set still gets positives in every part, and depend only on ``seed``
and the patient ids (not on file order).
"""

from __future__ import annotations

from collections.abc import Iterable

from mammokit.utils.seed import rng_for

VAL_FRACTION = 0.15
TEST_FRACTION = 0.2
OFFICIAL = {"train": "train", "training": "train", "test": "test", "testing": "test", "val": "val"}


def _stratum(labels: Iterable[dict]) -> int:
    worst = 2
    for row in labels:
        if row.get("left_malignant") or row.get("right_malignant"):
            return 0
        if row.get("left_benign") or row.get("right_benign"):
            worst = 1
    return worst


def _carve(patients: list[str], fraction: float, seed: int, what: str) -> set[str]:
    """A seeded ``fraction`` of ``patients`` (round half up; at least one of three or more)."""
    if fraction <= 0 or not patients:
        return set()
    order = sorted(patients)
    rng_for(seed, "import-split", what).shuffle(order)
    k = int(len(order) * fraction + 0.5)
    if k == 0 and len(order) >= 3:
        k = 1
    return set(order[:k])


def _parts(value: object) -> set[str]:
    values = [value] if isinstance(value, str) or value is None else list(value)
    return {OFFICIAL.get(str(v or "").lower()) for v in values} - {None}


def assign_splits(
    patient_of_exam: dict[str, str],
    official: dict[str, str | Iterable[str] | None],
    labels: dict[str, dict],
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
) -> dict[str, str]:
    """``{exam_id: "train" | "val" | "test"}``.

    Args:
        patient_of_exam: exam id -> patient id.
        official: exam id -> the set's split(s) of that exam's images (``train``/``test``...).
        labels: exam id -> label columns (for stratification).
    """
    exams_of: dict[str, list[str]] = {}
    for exam, patient in patient_of_exam.items():
        exams_of.setdefault(patient, []).append(exam)
    has_official = any(_parts(official.get(e)) for e in patient_of_exam)
    patient_split: dict[str, str] = {}
    for patient, exams in exams_of.items():
        parts = set().union(*(_parts(official.get(e)) for e in exams))
        if has_official:
            patient_split[patient] = "test" if "test" in parts or not parts else ("val" if parts == {"val"} else "train")
    strata: dict[int, list[str]] = {}
    for patient, exams in exams_of.items():
        strata.setdefault(_stratum(labels.get(e, {}) for e in exams), []).append(patient)
    for stratum, patients in sorted(strata.items()):
        if has_official:
            train = [p for p in patients if patient_split[p] == "train"]
            for p in _carve(train, val_fraction, seed, f"val{stratum}"):
                patient_split[p] = "val"
            continue
        test = _carve(patients, test_fraction, seed, f"test{stratum}")
        rest = [p for p in patients if p not in test]
        val = _carve(rest, val_fraction / max(1e-9, 1 - test_fraction), seed, f"val{stratum}")
        for p in patients:
            patient_split[p] = "test" if p in test else ("val" if p in val else "train")
    return {exam: patient_split[patient] for exam, patient in patient_of_exam.items()}
