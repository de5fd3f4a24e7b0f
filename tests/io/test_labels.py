"""Reference label maps: NIfTI round trip in the series geometry, reoriented copies accepted, bad maps refused."""

import nibabel as nib
import numpy as np
import pytest

from cacflow.imaging.volume import Volume
from cacflow.io.labels import LabelMapError, find_label_map, read_label_map, write_label_map


def _volume():
    hu = np.zeros((7, 9, 11), np.int16)
    # rows toward anterior (-y), columns toward patient left (+x): a feet-first-like direction
    direction = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    return Volume(hu=hu, spacing_zyx=(2.5, 0.7, 0.8), origin=(-120.25, 80.5, -300.0), direction=direction,
                  z_positions_mm=np.arange(7) * 2.5)


def _labels(shape):
    rng = np.random.default_rng(0)
    return rng.integers(0, 5, size=shape).astype(np.uint8)


def test_round_trip(tmp_path):
    vol = _volume()
    labels = _labels(vol.hu.shape)
    p = write_label_map(tmp_path / "1.2.3.nii.gz", labels, vol.geometry)
    assert find_label_map(tmp_path, "1.2.3") == p
    assert find_label_map(tmp_path, "1.2.4") is None
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]
    np.testing.assert_array_equal(read_label_map(p, vol.geometry), labels)


def test_reoriented_copy_reads_back_identically(tmp_path):
    # the same labels stored as (z, y, x) with the x axis flipped: a different file layout, the same anatomy
    vol = _volume()
    labels = _labels(vol.hu.shape)
    write_label_map(tmp_path / "a.nii.gz", labels, vol.geometry)
    img = nib.load(str(tmp_path / "a.nii.gz"))
    data = np.asanyarray(img.dataobj)  # (x, y, z)
    flipped = data[::-1].transpose(2, 1, 0)  # store as (z, y, x) with x reversed
    aff = img.affine.copy()
    xcol = aff[:3, 0].copy()
    new = np.eye(4)
    new[:3, 0], new[:3, 1], new[:3, 2] = aff[:3, 2], aff[:3, 1], -xcol
    new[:3, 3] = aff[:3, 3] + xcol * (data.shape[0] - 1)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(flipped), new), str(tmp_path / "b.nii.gz"))
    np.testing.assert_array_equal(read_label_map(tmp_path / "b.nii.gz", vol.geometry), labels)


def test_wrong_grid_and_bad_values_are_refused(tmp_path):
    vol = _volume()
    labels = _labels(vol.hu.shape)
    write_label_map(tmp_path / "a.nii.gz", labels, vol.geometry)
    shifted = Volume(hu=vol.hu, spacing_zyx=vol.spacing_zyx, origin=(-119.0, 80.5, -300.0),
                     direction=vol.direction, z_positions_mm=vol.z_positions_mm)
    with pytest.raises(LabelMapError) as e:
        read_label_map(tmp_path / "a.nii.gz", shifted.geometry)
    assert e.value.reason == "reference_geometry_mismatch" and "a.nii.gz" in e.value.message
    bad = labels.copy()
    bad[0, 0, 0] = 9
    write_label_map(tmp_path / "bad.nii.gz", bad, vol.geometry)
    with pytest.raises(LabelMapError) as e:
        read_label_map(tmp_path / "bad.nii.gz", vol.geometry)
    assert e.value.reason == "reference_labels_invalid"
    (tmp_path / "junk.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(LabelMapError) as e:
        read_label_map(tmp_path / "junk.nii.gz", vol.geometry)
    assert e.value.reason == "reference_unreadable"
