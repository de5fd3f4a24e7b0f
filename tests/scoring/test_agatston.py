"""Hand-computed Agatston cases (area x weight x increment / 3 mm)."""

import numpy as np
import pytest

from cacflow.scoring.agatston import AgatstonConvention, agatston_score, density_weight


@pytest.mark.parametrize(
    "peak, weight",
    [(129, 0), (129.9, 0), (130, 1), (199, 1), (199.9, 1), (200, 2), (299, 2), (300, 3), (399, 3), (400, 4), (1200, 4)],
)
def test_density_weight_boundaries(peak, weight):
    assert int(density_weight(peak)) == weight


def _vol(shape=(3, 10, 10)):
    return np.full(shape, -50.0)


def test_single_lesion_three_mm():
    hu = _vol()
    hu[1, 2:4, 2:4] = 250.0  # 4 pixels of 1 mm² -> area 4 mm², weight 2, factor 1
    res = agatston_score(hu, (3.0, 1.0, 1.0))
    assert res.total == pytest.approx(8.0)
    assert res.per_slice.tolist() == [0.0, 8.0, 0.0]
    assert res.volume_mm3 == pytest.approx(12.0)


def test_peak_decides_weight_not_mean():
    hu = _vol()
    hu[0, 5, 5:8] = [140.0, 140.0, 410.0]  # area 3 mm², peak 410 -> weight 4
    assert agatston_score(hu, (3.0, 1.0, 1.0)).total == pytest.approx(12.0)


def test_area_just_under_and_at_one_mm2():
    hu = _vol()
    hu[0, 1, 1] = 500.0
    # one pixel of 0.99 x 1.0 mm = 0.99 mm² is dropped; 1.0 x 1.0 is kept
    assert agatston_score(hu, (3.0, 0.99, 1.0)).total == 0.0
    assert agatston_score(hu, (3.0, 1.0, 1.0)).total == pytest.approx(4.0)


def test_threshold_129_vs_130():
    hu = _vol()
    hu[0, 1:3, 1:3] = 129.0
    assert agatston_score(hu, (3.0, 1.0, 1.0)).total == 0.0
    hu[0, 1:3, 1:3] = 130.0
    assert agatston_score(hu, (3.0, 1.0, 1.0)).total == pytest.approx(4.0)


def test_slice_normalisation_for_overlapping_slices():
    hu = _vol()
    hu[:, 4:6, 4:6] = 300.0  # 4 mm² per slice, weight 3, on 3 slices
    # increment 1.5 mm: each slice counts 1.5/3 = 0.5
    assert agatston_score(hu, (1.5, 1.0, 1.0)).total == pytest.approx(3 * 4 * 3 * 0.5)


def test_eight_connectivity_joins_diagonals_four_does_not():
    hu = _vol()
    hu[0, 1, 1] = 450.0
    hu[0, 2, 2] = 150.0  # diagonal neighbour
    eight = agatston_score(hu, (3.0, 1.0, 1.0))
    assert eight.total == pytest.approx(2 * 4)  # one lesion, area 2, peak 450
    four = agatston_score(hu, (3.0, 1.0, 1.0), convention=AgatstonConvention(connectivity=4))
    assert four.total == pytest.approx(4 + 1)  # two lesions of 1 mm²: weights 4 and 1


def test_mask_restricts_candidates():
    hu = _vol()
    hu[0, 0:2, 0:2] = 600.0
    hu[2, 7:9, 7:9] = 600.0
    mask = np.zeros(hu.shape, bool)
    mask[2] = True
    res = agatston_score(hu, (3.0, 1.0, 1.0), mask=mask)
    assert res.total == pytest.approx(16.0)
    assert res.lesion_labels[0].max() == 0 and res.lesion_labels[2].max() == 1
