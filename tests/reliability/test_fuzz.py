"""Quick fuzz run (a few hundred cases per reader; benchmarks/fuzz.py runs >= 10,000).

Every hostile file must end in a MammokitError naming the file, or a reject with a reason; an
accepted file must pass the reader's property (a 2-D uint16 image, a round-tripping manifest,
a file scan accepts that preprocess can read...). See tests/helpers/fuzz.py.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import Summary, all_readers, run_case

READERS = all_readers()
QUICK_CASES = {"checkpoint": 150, "reference-weights": 100, "exam-pickle": 150}  # slower readers: fewer cases
DEFAULT_CASES = 250


@pytest.mark.parametrize("name", sorted(READERS))
def test_reader_survives_hostile_files(name):
    reader = READERS[name]
    summary = Summary(name)

    @settings(max_examples=QUICK_CASES.get(name, DEFAULT_CASES), deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(min_value=0, max_value=2**31 - 1))
    def one_case(index):
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_case(reader, index, seed=0, folder=Path(tmp))
        summary.add(result)
        assert not result.failed, f"{name} case {index} ({result.note}): {result.status}: {result.detail}"

    one_case()
    # The generators reach both outcomes: some inputs are accepted, some refused.
    if reader.can_accept:
        assert summary.counts.get("accepted", 0) > 0, summary.counts
    assert summary.counts.get("error", 0) + summary.counts.get("reject", 0) > 0, summary.counts


# Cases the 10,000-case benchmark found (benchmarks/fuzz.py, seed 0), kept as regressions.
FOUND = [("dicom-scan", 5162)]  # PixelData element with a corrupt VR, accepted by scan


@pytest.mark.parametrize("name,index", FOUND)
def test_cases_found_at_volume(name, index, tmp_path):
    result = run_case(READERS[name], index, seed=0, folder=tmp_path)
    assert not result.failed, f"{name} case {index}: {result.status}: {result.detail}"
