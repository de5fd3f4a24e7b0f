"""Scan scores: lesions, vessels and totals agree; centroids in patient coordinates."""

import numpy as np
import pytest

from cacflow.scoring.scan import VESSELS, score_scan


def _scan():
    hu = np.full((10, 20, 20), 30.0)
    labels = np.zeros(hu.shape, np.uint8)
    hu[2:5, 3:6, 3:6] = 320.0  # LAD lesion over 3 slabs
    labels[2:5, 3:6, 3:6] = 2
    hu[6, 10:12, 10:14] = 180.0  # RCA lesion on one slab
    hu[6, 10, 13] = 420.0
    labels[6, 10:12, 10:14] = 4
    hu[6, 15:17, 15:17] = 800.0  # calcium outside every label: not counted
    return hu, labels


def test_totals_equal_sums_over_vessels_and_lesions():
    hu, labels = _scan()
    direction = np.eye(3)
    s = score_scan(hu, (1.5, 0.8, 0.8), (-100.0, -50.0, 200.0), direction, labels, vessel_labels=True)
    pa, f = 0.64, 0.5
    lad = 3 * 9 * pa * 3 * f
    rca = 8 * pa * 4 * f
    assert s.total.agatston == pytest.approx(lad + rca)
    assert s.vessels["LAD"].agatston == pytest.approx(lad)
    assert s.vessels["RCA"].agatston == pytest.approx(rca)
    assert s.vessels["LM"].agatston == 0.0 and s.vessels["CX"].n_lesions == 0
    assert set(s.vessels) == set(VESSELS.values())
    assert sum(v.agatston for v in s.vessels.values()) == pytest.approx(s.total.agatston)
    assert sum(v.volume_mm3 for v in s.vessels.values()) == pytest.approx(s.total.volume_mm3)
    assert sum(v.mass_mg for v in s.vessels.values()) == pytest.approx(s.total.mass_mg)
    assert sum(les.agatston for les in s.lesions) == pytest.approx(s.total.agatston)
    assert s.total.n_lesions == 2 == len(s.lesions)
    lad_lesion = [les for les in s.lesions if les.label == 2][0]
    assert (lad_lesion.z_first, lad_lesion.z_last, lad_lesion.n_slices, lad_lesion.n_voxels) == (2, 4, 3, 27)
    assert lad_lesion.peak_hu == 320.0 and lad_lesion.mean_hu == 320.0
    # centroid voxel (3, 4, 4) -> LPS origin + (x*0.8, y*0.8, z*1.5)
    assert lad_lesion.centroid_lps_mm == pytest.approx((-100.0 + 3.2, -50.0 + 3.2, 200.0 + 4.5))
    assert s.strata == {"five_class": "11-100", "four_class": "1-100", "cac_drs": "1-99"}


def test_region_without_calcium_scores_zero_not_missing():
    hu = np.full((4, 8, 8), 40.0)
    s = score_scan(hu, (1.5, 0.7, 0.7), (0, 0, 0), np.eye(3), np.ones(hu.shape, bool))
    assert s.total.agatston == 0.0 and s.total.volume_mm3 == 0.0 and s.total.n_lesions == 0
    assert s.strata["five_class"] == "0"


def test_centroid_uses_direction_columns():
    hu = np.full((3, 6, 6), 0.0)
    hu[1, 2:4, 2:4] = 500.0
    # rows run toward -y (anterior), columns toward -x: direction columns x->(-1,0,0), y->(0,-1,0), z->(0,0,1)
    direction = np.diag([-1.0, -1.0, 1.0])
    s = score_scan(hu, (2.0, 1.0, 1.0), (10.0, 20.0, 30.0), direction)
    assert s.lesions[0].centroid_lps_mm == pytest.approx((10.0 - 2.5, 20.0 - 2.5, 32.0))


def test_unknown_vessel_label_is_an_error():
    hu, labels = _scan()
    labels[labels == 4] = 7
    with pytest.raises(ValueError, match="vessel label map"):
        score_scan(hu, (1.5, 0.8, 0.8), (0, 0, 0), np.eye(3), labels, vessel_labels=True)
