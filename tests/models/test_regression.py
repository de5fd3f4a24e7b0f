"""Regression ConvNet pieces: input crops and padding, target transforms, the zero rule, voxel size input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cacflow.models.regression import (
    INPUT_SIZE,
    RegressionNet,
    calcium_window_channel,
    decode_outputs,
    encode_targets,
    fit_box,
    slices_to_input,
)
from cacflow.scoring.regression_rule import min_slice_agatston, regression_totals, zero_below_minimum


def test_crop_is_centred_and_padded_with_air():
    hu = np.full((2, 100, 60), 130, np.int16)
    x = slices_to_input(hu)
    assert x.shape == (2, 1, INPUT_SIZE, INPUT_SIZE)
    assert float(x[0, 0, 0, 0]) == 0.0  # padding: air
    assert float(x[0, 0, 128, 128]) == pytest.approx(1.13)  # 130 HU
    assert int((x[0, 0] > 0).sum()) == 100 * 60
    rows = torch.nonzero(x[0, 0].sum(1))[:, 0]
    assert int(rows[0]) == (INPUT_SIZE - 100) // 2
    with pytest.raises(ValueError, match="fit_box"):
        slices_to_input(np.zeros((1, 300, 10), np.int16))


def test_calcium_window_channel_maps_the_density_bounds():
    # the level model's second input channel (cacflow.models.calcium_levels)
    hu = torch.tensor([-1000.0, 0.0, 100.0, 130.0, 200.0, 300.0, 400.0, 500.0, 1500.0])
    np.testing.assert_allclose(calcium_window_channel(hu).numpy(),
                               [0.0, 0.0, 0.0, 0.075, 0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-6)


def test_wide_boxes_are_centre_cropped_and_flagged():
    crop = fit_box((-5, 50, 10, 400, 0, 200), (40, 512, 512))
    assert crop.box_zyx == (0, 40, 77, 333, 0, 200) and crop.truncated
    assert not fit_box((0, 10, 0, 256, 0, 256), (10, 512, 512)).truncated


def test_log_targets_round_trip():
    y = np.array([[0.0, 0.0], [0.5, 3.4], [812.25, 640.0]])
    np.testing.assert_allclose(encode_targets(y)[2], np.log([813.25, 641.0]), rtol=1e-6)
    np.testing.assert_allclose(decode_outputs(encode_targets(y)), y, rtol=1e-5, atol=1e-4)
    assert (decode_outputs(np.array([[-0.5, -2.0]])) == 0).all()  # negative outputs clip at 0


def test_zero_rule_uses_the_smallest_possible_slice_score():
    # 1 mm² minimum area x weight 1 x slice factor 1.5 / 3 = 0.5 on the scoring grid
    assert min_slice_agatston(1.0, 0.5) == 0.5
    per = np.array([[0.49, 1.2], [0.5, 1.5], [30.0, 20.0]])
    out = zero_below_minimum(per, 0.5)
    np.testing.assert_array_equal(out, [[0.0, 0.0], [0.5, 1.5], [30.0, 20.0]])


def test_regression_totals_apply_the_convention():
    from cacflow.scoring.agatston import AgatstonConvention

    raw = [[0.49, 1.2], [0.5, 1.5], [30.0, 20.0]]
    # default: 1 mm² x weight 1 x (1.5 mm increment / 3 mm) = 0.5 -> the first slice is dropped
    assert regression_totals(raw, 1.5, AgatstonConvention()) == (30.5, 21.5)
    # 2 mm² minimum area -> 1.0: only the third slice counts
    assert regression_totals(raw, 1.5, AgatstonConvention(min_area_mm2=2.0)) == (30.0, 20.0)
    # no slice normalisation -> factor 1: minimum 1.0 as well
    assert regression_totals(raw, 1.5, AgatstonConvention(z_normalisation="none")) == (30.0, 20.0)
    # a model floor of 3 AU per slice is larger than the convention's 0.5: slices 1 and 2 are dropped
    assert regression_totals(raw, 1.5, AgatstonConvention(), floor_agatston=3.0) == (30.0, 20.0)
    # a floor below the convention's minimum changes nothing
    assert regression_totals(raw, 1.5, AgatstonConvention(), floor_agatston=0.2) == (30.5, 21.5)


def test_network_shape_and_voxel_size_input():
    torch.manual_seed(0)
    net = RegressionNet().eval()
    x = torch.rand(3, 1, INPUT_SIZE, INPUT_SIZE)
    with torch.inference_mode():
        a = net(x, torch.tensor([[1.5, 0.7, 0.7]] * 3))
        b = net(x, torch.tensor([[1.5, 0.9, 0.9]] * 3))
    assert a.shape == (3, 2)
    assert not torch.allclose(a, b)  # the voxel size reaches the fully connected layers
    with pytest.raises(ValueError, match="six"):
        RegressionNet(widths=(8, 8))
