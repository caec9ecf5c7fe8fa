"""Shared fixtures.

Real sample mammograms live in ``../shared/data/real`` beside the project (or in the folder named
by ``MAMMOKIT_REAL_DATA``); tests that need them skip with a clear message where they are absent.
The paper's reader study lives in ``../shared/data/reader_study`` (or ``MAMMOKIT_READER_STUDY``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _shared_path(env: str, default: Path) -> Path:
    return Path(os.environ.get(env, default))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    path = _shared_path("MAMMOKIT_REAL_DATA", SHARED / "data" / "real")
    if not (path / "1_L_CC.png").exists():
        pytest.skip(f"real sample mammograms not found at {path} (set MAMMOKIT_REAL_DATA to run these tests)")
    return path


@pytest.fixture(scope="session")
def reader_study_csv() -> Path:
    path = _shared_path("MAMMOKIT_READER_STUDY", SHARED / "data" / "reader_study") / "nyu_reader_study_results.csv"
    if not path.exists():
        pytest.skip(f"shared reader-study data not found at {path} (set MAMMOKIT_READER_STUDY to run these tests)")
    return path
