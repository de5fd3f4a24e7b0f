"""What each segmentation scorer kind's label map means to the scoring library (cacflow.scoring.masks)."""

from __future__ import annotations

import numpy as np
import pytest

from cacflow.scoring.masks import hu_region

LABELS = np.array([[[0, 1, 2], [3, 4, 1]]], dtype=np.uint8)


def test_vessel_maps_are_scored_with_their_vessel_labels():
    region, vessels = hu_region("vessel_segmentation", LABELS)
    assert vessels and region is LABELS


@pytest.mark.parametrize("kind", ["conv_lstm", "patch_unet3d"])
def test_coronary_maps_score_label_one_only(kind):
    region, vessels = hu_region(kind, LABELS)
    assert not vessels
    np.testing.assert_array_equal(region, [[[False, True, False], [False, False, True]]])


@pytest.mark.parametrize("kind", ["calcium_levels", "unknown"])
def test_level_maps_and_unknown_kinds_have_no_hu_region(kind):
    with pytest.raises(ValueError, match="no HU-scored region"):
        hu_region(kind, LABELS)
