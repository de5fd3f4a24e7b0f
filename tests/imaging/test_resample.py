import numpy as np
import pytest

from cacflow.imaging.resample import ZGrid, box_weights, output_positions, resample_z


def test_constant_volume_stays_constant_and_rows_sum_to_one():
    z = np.arange(40) * 1.25
    vol = np.full((40, 4, 4), 77.0)
    out, z_out = resample_z(vol, z, ZGrid(3.0, 1.5))
    assert np.allclose(out, 77.0)
    w, _ = box_weights(z, ZGrid(3.0, 1.5))
    assert np.allclose(w.sum(axis=1), 1.0)
    assert np.allclose(np.diff(z_out), 1.5)


def test_box_mean_hand_computed_from_one_mm_slices():
    # 1 mm slices at 0..5: intervals [-0.5,0.5], ... ; first 3 mm box [-0.5, 2.5] = mean of slices 0,1,2
    z = np.arange(6, dtype=float)
    vol = np.arange(6, dtype=float)[:, None, None] * np.ones((1, 2, 2))
    out, z_out = resample_z(vol, z, ZGrid(3.0, 1.5))
    assert z_out[0] == pytest.approx(1.0)
    assert out[0, 0, 0] == pytest.approx(1.0)  # (0+1+2)/3
    # second box [1.0, 4.0]: half of slice 1, slices 2 and 3, half of slice 4 -> (0.5*1+2+3+0.5*4)/3
    assert out[1, 0, 0] == pytest.approx((0.5 + 2 + 3 + 2) / 3)


def test_max_reduce_keeps_labels():
    z = np.arange(6, dtype=float) * 2.0
    lab = np.zeros((6, 3, 3), np.uint8)
    lab[3, 1, 1] = 4
    out, _ = resample_z(lab, z, ZGrid(3.0, 1.5), reduce="max")
    assert out.dtype == np.uint8 and out.max() == 4


def test_output_positions_fit_inside_range():
    z = np.arange(10) * 2.5
    zo = output_positions(z, ZGrid(3.0, 1.5))
    assert zo[0] - 1.5 >= z[0] - 1.25 - 1e-9 and zo[-1] + 1.5 <= z[-1] + 1.25 + 1e-9


def test_rejects_unsorted_positions():
    with pytest.raises(ValueError, match="ascending"):
        resample_z(np.zeros((3, 2, 2)), np.array([0.0, 2.0, 1.0]), ZGrid())
