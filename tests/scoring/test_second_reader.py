"""The second-reader rule on hand-worked cases: one stratum apart flags, same stratum does not, fewer than two
automatic methods is unknown."""

from __future__ import annotations

from cacflow.scoring.second_reader import MIN_STRATA_APART, second_reader
from cacflow.scoring.strata import SCHEMES


def _s(score: float) -> tuple[int, str]:
    scheme = SCHEMES["five_class"]
    return scheme.index(score), scheme.label(score)


def test_one_stratum_apart_is_flagged_with_a_note():
    assert MIN_STRATA_APART == 1
    flag, note = second_reader({"classic_heart_region": _s(0.0), "regression": _s(3.0), "unetpp": _s(0.0)})
    assert flag is True
    assert "classic_heart_region: 0" in note and "regression: 1-10" in note


def test_same_stratum_is_not_flagged():
    # 12 and 95 are both 11-100; 100 is still 11-100 (right-closed), 101 is not
    assert second_reader({"a": _s(12.0), "b": _s(95.0), "c": _s(100.0)}) == (False, None)
    assert second_reader({"a": _s(100.0), "b": _s(101.0)})[0] is True


def test_fewer_than_two_methods_is_unknown():
    assert second_reader({"regression": _s(500.0)}) == (None, None)
    assert second_reader({}) == (None, None)
