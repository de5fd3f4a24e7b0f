"""The robust Agatston score on hand-computed level maps (0.5 mm pixels: 4 pixels per mm²; 1.5 mm increment on
3 mm slabs: slice factor 0.5)."""

from __future__ import annotations

import numpy as np
import pytest

from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.robust_agatston import hu_to_levels, levels_to_hu, robust_score

SPACING = (1.5, 0.5, 0.5)


def test_levels_from_hu_follow_the_density_bounds_inside_calcium_only():
    hu = np.array([[[129, 130, 199, 200], [299, 300, 399, 400]]], dtype=np.float32)
    inside = np.ones(hu.shape, bool)
    np.testing.assert_array_equal(hu_to_levels(hu, inside), [[[0, 1, 1, 2], [2, 3, 3, 4]]])
    inside[0, 1] = False
    np.testing.assert_array_equal(hu_to_levels(hu, inside), [[[0, 1, 1, 2], [0, 0, 0, 0]]])
    np.testing.assert_array_equal(levels_to_hu(np.array([0, 1, 2, 3, 4])), [-1000, 130, 200, 300, 400])
    with pytest.raises(ValueError):
        levels_to_hu(np.array([5]))


def test_score_uses_the_highest_level_of_each_2d_lesion():
    levels = np.zeros((2, 20, 20), np.uint8)
    levels[0, 2:6, 2:6] = 1       # 16 px = 4 mm², peak level 3 -> factor 3
    levels[0, 3, 3] = 3
    levels[0, 10:12, 10:12] = 4   # 4 px = 1 mm², factor 4 (exactly the minimum area: kept)
    levels[1, 15, 15] = 2         # 1 px = 0.25 mm²: under 1 mm², dropped
    s = robust_score(levels, SPACING, np.zeros(3), np.eye(3))
    # (4 mm² x 3 + 1 mm² x 4) x 0.5
    assert s.total.agatston == pytest.approx((4 * 3 + 1 * 4) * 0.5)
    assert s.total.volume_mm3 == pytest.approx(20 * 0.25 * 1.5)
    assert np.isnan(s.total.mass_mg) and s.total.n_lesions == 2


def test_score_ignores_the_scan_hu_entirely_and_needs_matching_bounds():
    levels = np.zeros((1, 8, 8), np.uint8)
    levels[0, 2:6, 2:6] = 2
    assert robust_score(levels, SPACING, np.zeros(3), np.eye(3)).total.agatston == pytest.approx(4 * 2 * 0.5)
    with pytest.raises(ValueError, match="threshold"):
        robust_score(levels, SPACING, np.zeros(3), np.eye(3), AgatstonConvention(threshold_hu=100.0))
