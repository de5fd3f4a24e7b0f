"""Contrast recognised from the image (cacflow.imaging.contrast): hand-made volumes at the 150 HU boundary, and the
real CT angiography, which carries no contrast tag, in its heart box."""

from __future__ import annotations

import numpy as np
import pytest

from cacflow.imaging.contrast import (
    BLOOD_POOL_RANGE_HU,
    CONTRAST_BLOOD_POOL_HU,
    MIN_CORE_VOXELS,
    blood_pool,
    core_box,
)


def test_the_core_is_the_central_half_of_each_axis():
    assert core_box((0, 8, 0, 8, 0, 8)) == (2, 6, 2, 6, 2, 6)
    assert core_box((10, 30, 4, 7, 0, 100)) == (15, 25, 4, 7, 25, 75)  # 3 voxels: quarter 0, all kept
    assert core_box((5, 6, 0, 1, 2, 3)) == (5, 6, 0, 1, 2, 3)  # one voxel stays one voxel


def _heart(blood_hu: float) -> np.ndarray:
    """A 40^3 volume of lung (-850 HU) with a 20^3 'heart' of blood at ``blood_hu`` and fat, a calcification and a
    wire in its core."""
    hu = np.full((40, 40, 40), -850, dtype=np.int16)
    hu[10:30, 10:30, 10:30] = blood_hu
    hu[15:25, 15:18, 15:25] = -100  # epicardial fat: below the range, not counted
    hu[20, 20, 20:23] = 1200  # calcium / wire: above the range, not counted
    return hu


@pytest.mark.parametrize("blood, enhanced", [(40, False), (CONTRAST_BLOOD_POOL_HU - 1, False),
                                             (CONTRAST_BLOOD_POOL_HU, True), (466, True)])
def test_the_boundary_is_150_hu_of_the_core_median(blood, enhanced):
    pool = blood_pool(_heart(blood), (10, 30, 10, 30, 10, 30))
    assert pool is not None and pool.median_hu == blood
    assert pool.contrast_enhanced is enhanced
    # core 10^3 = 1000 voxels; 10 x 3 x 10 of fat and 3 of metal are outside the range
    assert pool.voxels == 1000 - 300 - 3


def test_fat_lung_and_metal_do_not_count_and_too_few_voxels_give_no_reading():
    lo, hi = BLOOD_POOL_RANGE_HU
    assert (lo, hi) == (0.0, 800.0)
    hu = _heart(40)
    assert blood_pool(hu, (0, 8, 0, 8, 0, 8)) is None  # all lung
    small = np.full((8, 8, 8), 300, dtype=np.int16)
    assert blood_pool(small, (0, 8, 0, 8, 0, 8)) is None  # core of 64 voxels < MIN_CORE_VOXELS
    assert MIN_CORE_VOXELS == 200
    # a box reaching past the volume is clipped, not an error
    assert blood_pool(hu, (10, 60, 10, 60, 10, 60)).median_hu == 40


def test_the_real_ct_angiography_is_contrast_enhanced_in_its_heart_box(real_data):
    """TotalSegmentator's example CTA (no contrast tag anywhere): its heart mask's box reads as contrast."""
    import SimpleITK as sitk

    folder = real_data / "chest_ct_contrast_with_labels" / "chest_cta"
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_ct.nii.gz")))
    heart = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "heart.nii.gz"))) > 0
    z, y, x = np.nonzero(heart)
    box = (z.min(), z.max() + 1, y.min(), y.max() + 1, x.min(), x.max() + 1)
    pool = blood_pool(hu, box)
    assert pool.contrast_enhanced and 400 < pool.median_hu < 520  # PROVENANCE: heart median 466 HU
