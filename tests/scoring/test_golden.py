"""Golden cases, hand-computed: every weight boundary, the 1 mm² minimum, thin and overlapping slices, and the
nine cross-implementation cases of ``../shared/research/anchors-cac.md`` §1b ("textbook" column).

Each expected value is written as the arithmetic a reader can redo: area (px x pixel area) x weight x factor.
"""

import numpy as np
import pytest

from cacflow.scoring.agatston import AgatstonConvention, agatston_score


def _blank(shape=(3, 12, 12), hu=-20.0):
    return np.full(shape, hu, dtype=np.float64)


@pytest.mark.parametrize("peak, weight", [(129, 0), (130, 1), (199, 1), (200, 2), (299, 2), (300, 3), (399, 3),
                                          (400, 4)])
def test_each_weight_boundary_on_a_lesion(peak, weight):
    # 2 x 2 px at 0.5 mm: area 1.0 mm² (kept); every pixel at the peak HU; 3 mm slices (factor 1)
    hu = _blank()
    hu[1, 4:6, 4:6] = peak
    res = agatston_score(hu, (3.0, 0.5, 0.5))
    assert res.total == pytest.approx(1.0 * weight)
    assert res.n_counted_voxels == (4 if weight else 0)


def test_weight_from_peak_with_a_129_rim_not_counted():
    # a 3x3 px lesion of 130 HU with a 401 HU centre, surrounded by a 129 HU rim that is never a candidate
    hu = _blank()
    hu[1, 2:7, 2:7] = 129
    hu[1, 3:6, 3:6] = 130
    hu[1, 4, 4] = 401
    res = agatston_score(hu, (3.0, 1.0, 1.0))
    assert res.total == pytest.approx(9 * 1.0 * 4)
    assert res.n_counted_voxels == 9


def test_area_just_under_and_at_one_mm2():
    hu = _blank()
    hu[1, 4:6, 4:6] = 500.0  # 4 px
    under = agatston_score(hu, (3.0, 0.49, 0.5))  # 4 x 0.245 = 0.98 mm² < 1: dropped
    at = agatston_score(hu, (3.0, 0.5, 0.5))  # 4 x 0.25 = 1.00 mm²: kept
    assert under.total == 0.0 and under.volume_mm3 == 0.0 and under.mass_mg == 0.0
    assert at.total == pytest.approx(1.0 * 4)


def test_min_area_is_per_slice_not_per_3d_lesion():
    # a column of single 0.7 mm pixels (0.49 mm² each) over 5 slices: 3-D volume is large, but no 2-D lesion counts
    hu = _blank((5, 8, 8))
    hu[:, 3, 3] = 600.0
    assert agatston_score(hu, (2.5, 0.7, 0.7)).total == 0.0


def test_overlapping_slices_count_half():
    # 3 mm slabs every 1.5 mm: a 2x2 mm² (4 px of 1 mm²) lesion at 250 HU seen on 2 slabs
    hu = _blank((4, 8, 8))
    hu[1:3, 2:4, 2:4] = 250.0
    res = agatston_score(hu, (1.5, 1.0, 1.0))
    assert res.total == pytest.approx(2 * (4 * 2 * 1.5 / 3.0))  # = 8.0
    assert res.volume_mm3 == pytest.approx(8 * 1.0 * 1.5)


def test_thin_slices_factor():
    # 0.625 mm slices: factor 0.625 / 3
    hu = _blank((8, 8, 8))
    hu[2:6, 2:5, 2:5] = 320.0
    res = agatston_score(hu, (0.625, 0.6, 0.6))
    assert res.total == pytest.approx(4 * 9 * 0.36 * 3 * 0.625 / 3.0)


def test_mass_hand_computed():
    # 4 voxels of 0.5 x 0.5 x 3 mm = 0.75 mm³ each, HU 300, 300, 500, 500: sum 1600 HU
    hu = _blank()
    hu[1, 4, 4:6] = 300.0
    hu[1, 5, 4:6] = 500.0
    conv = AgatstonConvention(mass_calibration_mg_per_cm3_hu=0.8)
    res = agatston_score(hu, (3.0, 0.5, 0.5), convention=conv)
    assert res.volume_mm3 == pytest.approx(4 * 0.75)
    assert res.mass_mg == pytest.approx(0.8 * (0.75 / 1000.0) * 1600.0)


def test_label_map_keeps_vessels_apart():
    # two touching 2x2 px patches in different vessels: two lesions, weights from their own peaks
    hu = _blank()
    hu[1, 2:4, 2:4] = 150.0
    hu[1, 2:4, 4:6] = 450.0
    labels = np.zeros(hu.shape, np.uint8)
    labels[1, 2:4, 2:4] = 2
    labels[1, 2:4, 4:6] = 3
    res = agatston_score(hu, (3.0, 1.0, 1.0), mask=labels)
    assert sorted(res.lesion_score.tolist()) == pytest.approx([4 * 1, 4 * 4])
    merged = agatston_score(hu, (3.0, 1.0, 1.0), mask=labels > 0)
    assert merged.total == pytest.approx(8 * 4)


# --- anchors-cac.md §1b: spacing 2.5 x 0.7 x 0.7 mm unless noted; expected = the "textbook (/3)" column ---------

def _case(shape=(3, 12, 12)):
    return np.full(shape, -50.0), (2.5, 0.7, 0.7)


def _anchor_cases():
    cases = {}
    hu, sp = _case()
    hu[:, 4:7, 4:7] = 300  # A: 3x3 px x 3 slices at 300 HU
    cases["A"] = (hu, sp, None, 3 * 9 * 0.49 * 3 * 2.5 / 3)
    hu, sp = _case()
    hu[:, 4:7, 4:7] = np.array([250, 450, 250])[:, None, None]  # B: slices 250 / 450 / 250 HU
    cases["B"] = (hu, sp, None, 9 * 0.49 * (2 + 4 + 2) * 2.5 / 3)
    hu, sp = _case()
    hu[1, 5, 5:7] = 300  # C: 2 px = 0.98 mm² < 1 mm²
    cases["C"] = (hu, sp, None, 0.0)
    hu, sp = _case()
    hu[1, 3:8, 3:8] = 125
    hu[1, 4:7, 4:7] = 140  # D: 3x3 core at 140 HU + 125 HU rim, all inside the mask
    mask = np.zeros(hu.shape, bool)
    mask[1, 3:8, 3:8] = True
    cases["D"] = (hu, sp, mask, 9 * 0.49 * 1 * 2.5 / 3)
    hu, sp = _case()
    hu[1, 2:4, 2:4] = 450
    hu[1, 4:6, 4:6] = 250  # E: two 2x2 blobs touching diagonally: one 8-connected lesion, peak 450
    cases["E"] = (hu, sp, None, 8 * 0.49 * 4 * 2.5 / 3)
    hu, sp = _case()
    hu[1, 4:7, 4:7] = 150
    hu[1, 5, 5] = 199  # F: single slice, max 199 -> weight 1
    cases["F"] = (hu, sp, None, 9 * 0.49 * 1 * 2.5 / 3)
    hu, sp = _case()
    hu[1, 4:7, 4:7] = 350
    hu[1, 5, 5] = 399  # G: max 399 -> weight 3
    cases["G"] = (hu, sp, None, 9 * 0.49 * 3 * 2.5 / 3)
    hu, _ = _case()
    hu[1, 4:7, 4:7] = 250
    hu[1, 5, 5] = 450  # H: pixel 0.9 mm
    cases["H"] = (hu, (2.5, 0.9, 0.9), None, 9 * 0.81 * 4 * 2.5 / 3)
    hu, _ = _case()
    hu[1, 4:7, 4:7] = 300  # I: 1.0 mm slices
    cases["I"] = (hu, (1.0, 0.7, 0.7), None, 9 * 0.49 * 3 * 1.0 / 3)
    return cases


#: The textbook column of anchors-cac.md §1b, as printed there (2 decimals).
ANCHOR_TEXTBOOK = {"A": 33.07, "B": 29.40, "C": 0.0, "D": 3.67, "E": 13.07, "F": 3.67, "G": 11.02, "H": 24.30,
                   "I": 4.41}


@pytest.mark.parametrize("name", sorted(ANCHOR_TEXTBOOK))
def test_anchor_case_matches_textbook_column(name):
    hu, spacing, mask, hand = _anchor_cases()[name]
    res = agatston_score(hu, spacing, mask=mask)
    assert res.total == pytest.approx(hand, rel=1e-12, abs=1e-12)
    # the anchors table prints 2 decimals (truncated where the 3rd is 5): within 0.01 of it
    assert abs(res.total - ANCHOR_TEXTBOOK[name]) <= 0.0051 + 1e-9


def test_anchor_convention_switches_reproduce_other_columns():
    # the convention is real config: 'none' z normalisation gives the raw column; lesion_peak gives AI-CAC's B
    cases = _anchor_cases()
    hu, sp, mask, _ = cases["I"]
    assert agatston_score(hu, sp, mask, AgatstonConvention(z_normalisation="none")).total == pytest.approx(13.23)
    hu, sp, mask, _ = cases["B"]
    ai_cac_like = agatston_score(hu, sp, mask, AgatstonConvention(weight_source="lesion_peak"))
    assert ai_cac_like.total == pytest.approx(3 * 9 * 0.49 * 4 * 2.5 / 3)  # 44.1: every slice weighted by 450 HU
