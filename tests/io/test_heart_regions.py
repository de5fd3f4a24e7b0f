"""User-supplied heart regions: the CSV reader's rows and its refusals, each naming the file and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from cacflow.imaging.volume import lps_box_to_voxels
from cacflow.io.heart_regions import HeartRegionsError, UserRegion, read_heart_regions

HEADER = "series_uid,min_x_mm,min_y_mm,min_z_mm,max_x_mm,max_y_mm,max_z_mm,mask\n"


def test_box_and_mask_rows(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "b.nii.gz").write_bytes(b"x")
    path = tmp_path / "regions.csv"
    path.write_text(HEADER + "1.2.3,-50,-60,-200,40.5,30,-120,\n1.2.4,,,,,,,masks/b.nii.gz\n")
    regions = read_heart_regions(path)
    assert regions["1.2.3"] == UserRegion(box_lps_mm=((-50.0, -60.0, -200.0), (40.5, 30.0, -120.0)))
    assert regions["1.2.4"].mask_path == str((tmp_path / "masks" / "b.nii.gz").resolve())
    for region in regions.values():
        assert UserRegion.from_json(region.as_json()) == region


@pytest.mark.parametrize("body, match", [
    ("1.2.3,1,2,3,4,5,6,m.nii.gz\n", "both a box and a mask"),
    ("1.2.3,1,2,3,,5,6,\n", "give all of"),
    ("1.2.3,1,2,3,1,5,6,\n", "empty box"),
    ("1.2.3,1,2,3,x,5,6,\n", "'x' is not a number"),
    ("1.2.3,,,,,,,missing.nii.gz\n", "mask missing.nii.gz not found"),
    ("1.2.3,1,2,3,4,5,6,\n1.2.3,1,2,3,4,5,6,\n", "listed twice"),
    (",1,2,3,4,5,6,\n", "empty series_uid"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, body, match):
    path = tmp_path / "regions.csv"
    path.write_text(HEADER + body)
    with pytest.raises(HeartRegionsError, match=match) as err:
        read_heart_regions(path)
    msg = str(err.value)
    assert str(path) in msg and ("line 2" in msg or "line 3" in msg)


def test_bad_files(tmp_path):
    with pytest.raises(HeartRegionsError, match="no such file; fix cohorts.<name>.heart_regions"):
        read_heart_regions(tmp_path / "nothing.csv")
    path = tmp_path / "r.csv"
    path.write_text("uid,box\n1,2\n")
    with pytest.raises(HeartRegionsError, match=r"expected series_uid .*unknown: \['box', 'uid'\]"):
        read_heart_regions(path)


def test_lps_box_to_voxels_hand_cases():
    shape, spacing = (10, 20, 30), (2.0, 1.0, 0.5)  # z, y, x
    origin = np.array([-7.5, -10.0, 100.0])
    # head first: voxel (z, y, x) at origin + (0.5 x, 1.0 y, 2.0 z)
    assert lps_box_to_voxels(((-7.5, -10.0, 100.0), (-6.5, -8.0, 104.0)), shape, spacing, origin, np.eye(3)) == \
        (0, 3, 0, 3, 0, 3)
    # a box beyond the volume is clipped; one beside it holds no voxel centre
    assert lps_box_to_voxels(((-100, -100, 90), (100, 100, 101.0)), shape, spacing, origin, np.eye(3)) == \
        (0, 1, 0, 20, 0, 30)
    assert lps_box_to_voxels(((-100, -100, 50), (100, 100, 99)), shape, spacing, origin, np.eye(3)) is None
    # feet first: x and z axes reversed (row cosine -x, normal -z); voxel 0 at the patient's left and the head
    ffs = np.diag([-1.0, 1.0, -1.0])
    box = lps_box_to_voxels(((-8.5, -10.0, 96.0), (-7.5, -9.0, 100.0)), shape, spacing, origin, ffs)
    assert box == (0, 3, 0, 2, 0, 3)
