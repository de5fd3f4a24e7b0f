"""Strata boundaries, exactly as documented in cacflow.scoring.strata."""

import math

import pytest

from cacflow.scoring.strata import SCHEMES, strata


@pytest.mark.parametrize("score, label", [
    (0.0, "0"), (1e-9, "1-10"), (0.5, "1-10"), (10.0, "1-10"), (10.000001, "11-100"), (100.0, "11-100"),
    (100.5, "101-400"), (400.0, "101-400"), (400.01, ">400"), (5000.0, ">400"),
])
def test_five_class_right_closed(score, label):
    assert SCHEMES["five_class"].label(score) == label


@pytest.mark.parametrize("score, label", [
    (0.0, "0"), (0.01, "1-100"), (100.0, "1-100"), (100.01, "101-400"), (400.0, "101-400"), (401.0, ">400"),
])
def test_four_class(score, label):
    assert SCHEMES["four_class"].label(score) == label


@pytest.mark.parametrize("score, label", [
    (0.0, "0"), (0.2, "1-99"), (99.99, "1-99"), (100.0, "100-299"), (299.99, "100-299"), (300.0, ">=300"),
])
def test_cac_drs_left_closed(score, label):
    assert SCHEMES["cac_drs"].label(score) == label


def test_missing_score_has_no_stratum_and_negative_is_an_error():
    assert strata(None) == {"five_class": None, "four_class": None, "cac_drs": None}
    assert strata(math.nan)["five_class"] is None
    with pytest.raises(ValueError):
        SCHEMES["five_class"].index(-1.0)


def test_indices_are_ordinal():
    assert [SCHEMES["five_class"].index(s) for s in (0, 5, 50, 200, 500)] == [0, 1, 2, 3, 4]
