"""Shared fixtures: the real CT data folder and one small synthetic cohort per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = (REPO / ".." / "shared" / "data" / "real").resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.fail(f"real CT test data not found at {REAL_DATA}; the tests need ../shared beside the checkout")
    return REAL_DATA


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Path:
    """A small synthetic cohort (6 participants): <dir>/dicom and <dir>/truth."""
    from cacflow.synth.cohort import generate_cohort

    out = tmp_path_factory.mktemp("synth_small")
    generate_cohort(out, n=6, seed=11, small=True, workers=2)
    return out
