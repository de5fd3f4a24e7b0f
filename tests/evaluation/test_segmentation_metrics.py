"""Calcium Dice and lesion detection on hand-built label maps (1 mm pixels, so a pixel is 1 mm²)."""

from __future__ import annotations

import numpy as np
import pytest

from cacflow.evaluation.segmentation import SegmentationCounts, compare_masks, scored_voxels, stored_mask_counts
from cacflow.scoring.agatston import AgatstonConvention

SPACING = (3.0, 1.0, 1.0)
CONV = AgatstonConvention()


def _volume():
    hu = np.zeros((4, 20, 20), dtype=np.int16)
    ref = np.zeros(hu.shape, dtype=np.uint8)
    hu[1, 2:4, 2:4] = 300  # LAD lesion, 4 px
    ref[1, 2:5, 2:5] = 2   # drawn with a sub-threshold halo
    hu[2, 10:12, 10:13] = 500  # RCA lesion, 6 px
    ref[2, 10:12, 10:13] = 4
    hu[3, 15, 15] = 400  # a 1 px RCA "lesion" at exactly 1 mm²: kept (strictly below 1 mm² is dropped)
    ref[3, 15, 15] = 4
    return hu, ref


def test_scored_voxels_drop_the_halo_and_keep_one_square_mm():
    hu, ref = _volume()
    got = scored_voxels(hu, SPACING, ref, CONV)
    assert (got > 0).sum() == 4 + 6 + 1
    assert got[1, 4, 4] == 0 and got[1, 2, 2] == 2


def test_dice_and_detection_hand_computed():
    hu, ref = _volume()
    pred = np.zeros_like(ref)
    pred[1, 2:4, 2:3] = 2    # half of the LAD lesion (2 of 4 px), right vessel
    pred[2, 10:12, 10:13] = 3  # the whole RCA lesion, but called CX: voxels agree, the RCA lesion is missed
    pred[0, 0, 0] = 1          # below threshold: never counted
    hu[0, 5:7, 5:7] = 200
    pred[0, 5:7, 5:7] = 1      # a false LM lesion of 4 px
    c = compare_masks(hu, SPACING, pred, ref, CONV)
    assert (c.tp, c.fp, c.fn) == (2 + 6, 4, 2 + 1)
    assert c.dice == pytest.approx(2 * 8 / (2 * 8 + 4 + 3))
    assert c.tp_vessel == 2  # the 6 RCA voxels called CX are calcium but not their vessel
    assert c.vessel_dice == pytest.approx(2 * 2 / (2 * 8 + 4 + 3))
    assert c.lesions == {"LM": 0, "LAD": 1, "CX": 0, "RCA": 2}
    assert c.detected == {"LM": 0, "LAD": 1, "CX": 0, "RCA": 0}
    assert c.detection_rate() == {"LM": None, "LAD": 1.0, "CX": None, "RCA": 0.0}


def test_detection_without_vessel_labels_counts_any_calcium_hit():
    hu, ref = _volume()
    pred = np.zeros_like(ref)
    pred[1, 2:4, 2:3] = 1      # half of the LAD lesion, marked as (vessel-less) coronary calcium
    pred[2, 10, 10] = 1        # one voxel (1 mm², scored) of the 6 px RCA lesion
    c = compare_masks(hu, SPACING, pred, ref, CONV, vessel_aware=False)
    assert c.detected == {"LM": 0, "LAD": 1, "CX": 0, "RCA": 1}
    assert (c.tp, c.fp, c.fn) == (2 + 1, 0, 2 + 5 + 1)
    aware = compare_masks(hu, SPACING, pred, ref, CONV)  # label 1 read as LM: nothing of LAD or RCA found
    assert aware.detected == {"LM": 0, "LAD": 0, "CX": 0, "RCA": 0}


def test_counts_pool_over_scans_and_empty_is_perfect():
    assert SegmentationCounts().dice == 1.0
    a = SegmentationCounts(tp=2, fp=0, fn=2)
    a.lesions["LAD"], a.detected["LAD"] = 2, 1
    b = SegmentationCounts(tp=0, fp=4, fn=0)
    b.lesions["LAD"], b.detected["LAD"] = 2, 2
    pooled = SegmentationCounts().add(a).add(b)
    assert pooled.dice == pytest.approx(2 * 2 / (2 * 2 + 4 + 2))  # 0.4, not the mean of per-scan Dice (0.667, 0)
    assert pooled.detection_rate()["LAD"] == 0.75
    assert SegmentationCounts().vessel_dice == 1.0
    assert SegmentationCounts(tp=3, tp_vessel=1, fp=1, fn=1).add(SegmentationCounts(tp=1, tp_vessel=1)).vessel_dice \
        == pytest.approx(2 * 2 / (2 * 4 + 1 + 1))


def test_stored_maps_are_read_by_their_kind():
    """The evaluation target reads each scorer's stored map as scoring.masks defines its kind."""
    hu, ref = _volume()
    coronary = np.zeros_like(ref)
    coronary[1, 2:4, 2:4] = 1    # the LAD lesion as coronary calcium
    coronary[2, 10:12, 10:13] = 2  # the RCA lesion as non-coronary: not a finding
    c = stored_mask_counts("conv_lstm", coronary, hu, SPACING, ref, CONV)
    assert c.detected == {"LM": 0, "LAD": 1, "CX": 0, "RCA": 0}
    assert (c.tp, c.fp, c.fn) == (4, 0, 6 + 1) and c.tp_vessel == 0
    vessels = np.zeros_like(ref)
    vessels[2, 10:12, 10:13] = 4
    v = stored_mask_counts("vessel_segmentation", vessels, hu, SPACING, ref, CONV)
    assert v.detected == {"LM": 0, "LAD": 0, "CX": 0, "RCA": 1} and v.tp_vessel == 6
    assert stored_mask_counts("calcium_levels", vessels, hu, SPACING, ref, CONV) is None  # judged against levels
