"""The participant split: seeded, stable as a cohort grows, close to the requested fractions."""

from __future__ import annotations

import pytest

from cacflow.training.data import split_of


def test_split_is_deterministic_and_near_the_fractions():
    ids = [str(100000 + 37 * i) for i in range(2000)]
    a = [split_of(p, 3, (0.7, 0.15, 0.15)) for p in ids]
    assert a == [split_of(p, 3, (0.7, 0.15, 0.15)) for p in ids]
    share = {k: a.count(k) / len(a) for k in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.7, abs=0.04) and share["test"] == pytest.approx(0.15, abs=0.03)
    assert a != [split_of(p, 4, (0.7, 0.15, 0.15)) for p in ids]  # the seed matters
    with pytest.raises(ValueError):
        split_of("1", 0, (0.5, 0.2, 0.2))
