"""The bone guard (cacflow.imaging.bone): structures at or above 130 HU of 10 mL or more are bone; on real chest CT
the read coronary and aortic calcium lies outside it and the read bone inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cacflow.imaging.bone import BONE_HU, MIN_BONE_ML, bone_mask

REPO = Path(__file__).resolve().parents[2]


def _cube_volume(side_voxels: int, hu: float, spacing=(2.0, 1.0, 1.0)) -> np.ndarray:
    vol = np.full((60, 60, 60), 40, dtype=np.int16)  # soft tissue
    vol[5:5 + side_voxels, 5:5 + side_voxels, 5:5 + side_voxels] = hu
    vol[50, 50, 50:53] = 600  # a 3-voxel calcification: never bone
    return vol


@pytest.mark.parametrize("side, is_bone", [(17, False), (18, True)])
def test_ten_millilitres_at_130_hu_is_bone(side, is_bone):
    # voxels of 2 mm3: 17^3 x 2 = 9826 mm3 < 10 mL; 18^3 x 2 = 11664 mm3 >= 10 mL
    assert MIN_BONE_ML == 10.0
    mask = bone_mask(_cube_volume(side, 700), (2.0, 1.0, 1.0))
    assert bool(mask[10, 10, 10]) is is_bone
    assert int(mask.sum()) == (side**3 if is_bone else 0)
    assert not mask[50, 50, 50:53].any()


def test_the_threshold_is_the_calcium_threshold():
    assert BONE_HU == 130.0
    assert bone_mask(_cube_volume(20, 130), (2.0, 1.0, 1.0))[10, 10, 10]
    assert not bone_mask(_cube_volume(20, 129), (2.0, 1.0, 1.0)).any()


def test_structures_touching_by_a_corner_are_one():
    vol = np.full((40, 40, 40), 0, dtype=np.int16)
    vol[0:10, 0:10, 0:10] = 500  # 1000 voxels of 6 mm3 = 6 mL each
    vol[10:20, 10:20, 10:20] = 500  # touches the first at one corner: 12 mL together
    assert bone_mask(vol, (6.0, 1.0, 1.0)).sum() == 2000
    vol[10:20, 10:20, 10:20] = 0
    assert not bone_mask(vol, (6.0, 1.0, 1.0)).any()


def _near_bone(mask: np.ndarray, volume, point_lps: tuple[float, float, float]) -> bool:
    """Whether bone lies within one slice and two pixels of an LPS point on a scoring-grid volume."""
    direction, origin = np.asarray(volume.direction), np.asarray(volume.origin)
    ijk = np.linalg.inv(direction * np.asarray(volume.spacing_zyx[::-1])) @ (np.asarray(point_lps) - origin)
    i, j, k = (int(round(v)) for v in ijk)
    return bool(mask[max(k - 1, 0):k + 2, max(j - 2, 0):j + 3, max(i - 2, 0):i + 3].any())


@pytest.mark.parametrize("scan", ["lung2", "philips_4dct_phase00", "A0001_B"])
def test_read_calcium_is_outside_bone_and_read_bone_inside(real_data, scan):
    """The reads of real chest CT (reads/real_ct.json): every coronary, valve and aortic cluster is clear of the
    bone mask; every cluster read as bone is in it."""
    from cacflow.evaluation.reads import load_reads, load_scan, read_by_id
    from cacflow.imaging.resample import ZGrid, resample_volume

    read = read_by_id(load_reads(REPO / "reads" / "real_ct.json"), scan)
    volume = resample_volume(load_scan(real_data.parents[1], read), ZGrid(3.0, 1.5), "scoring")
    mask = bone_mask(volume.hu, volume.spacing_zyx)
    clusters = [(c.kind, _near_bone(mask, volume, c.center_lps_mm)) for c in read.calcium]
    assert not [k for k, near in clusters if k in ("coronary", "aortic_valve", "aorta") and near]
    assert all(near for k, near in clusters if k == "bone")
    if scan == "lung2":  # the scan with heavy coronary calcium: eight coronary clusters read
        assert sum(k == "coronary" for k, _ in clusters) >= 6
