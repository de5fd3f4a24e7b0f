"""The regressor's per-slice floor chosen on validation scans (cacflow.training.regressor.choose_slice_floor), and
a one-channel checkpoint continued with the calcium window (initial_state, widen_input)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cacflow.models.regression import RegressionNet, slices_to_input
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.training.regressor import (
    RegressorHyper,
    choose_slice_floor,
    initial_state,
    log_mae,
    selection_figure,
    widen_input,
)

# five validation scans on the 1.5 mm scoring grid (convention minimum 0.5 AU per slice); raw [Agatston, volume]
RAW = [
    np.array([[0.6, 1.0], [0.7, 1.0]]),  # reference 0: 1.3 counted unless the floor drops both slices
    np.array([[49.0, 30.0], [0.8, 1.0]]),  # reference 50: 11-100 whatever the floor (49.8 or 49)
    np.array([[4.5, 3.0]]),  # reference 5: 1-10 unless the floor exceeds 4.5
    np.array([[300.0, 200.0], [250.0, 150.0]]),  # reference 500: > 400
    np.array([[150.0, 100.0]]),  # reference 150: 101-400
]
REFERENCE = np.array([0.0, 50.0, 5.0, 500.0, 150.0])


def test_the_lowest_floor_with_the_best_validation_kappa_wins():
    floor, rows = choose_slice_floor(RAW, [1.5] * 5, REFERENCE, AgatstonConvention(), (0.0, 0.75, 1.0, 5.0))
    # 0.75 and 1.0 both put every scan in its stratum; the lower one drops less calcium
    assert floor == 0.75
    by_floor = {r["floor_agatston"]: r for r in rows}
    assert list(by_floor) == [0.0, 0.75, 1.0, 5.0]
    # convention minimum only: the calcium-free scan scores 1.3 (stratum 1-10): 4 of 5 right, specificity 0
    assert by_floor[0.0]["five_class_accuracy"] == pytest.approx(0.8)
    assert by_floor[0.0]["zero_calcium_specificity"] == 0.0
    assert by_floor[0.75]["five_class_accuracy"] == 1.0 and by_floor[0.75]["five_class_kappa"] == pytest.approx(1.0)
    # 5 AU per slice drops the 4.5 AU scan: one of four calcified scans called zero
    assert by_floor[5.0]["any_calcium_sensitivity"] == pytest.approx(0.75)
    assert by_floor[5.0]["five_class_accuracy"] == pytest.approx(0.8)


def test_the_convention_minimum_stands_when_no_floor_helps():
    raw = [np.array([[0.0, 0.0]]), np.array([[0.9, 1.0]]), np.array([[30.0, 20.0]])]
    floor, _ = choose_slice_floor(raw, [1.5] * 3, np.array([0.0, 1.0, 30.0]), AgatstonConvention(),
                                  (0.0, 1.0, 2.0))
    assert floor == 0.0  # any floor above 0.9 calls the 1 AU scan zero


def test_the_selection_figure_can_judge_an_epoch_with_its_own_floor():
    # the convention's minimum (0.5 AU) only: the calcium-free scan keeps 0.6 + 0.7; the 0.75 floor that
    # choose_slice_floor picks for these outputs drops both
    without = log_mae(np.array([1.3, 49.8, 4.5, 550.0, 150.0]), REFERENCE)
    with_floor = log_mae(np.array([0.0, 49.8, 4.5, 550.0, 150.0]), REFERENCE)
    conv = AgatstonConvention()
    assert selection_figure(RAW, [1.5] * 5, REFERENCE, conv, with_floor=False) == pytest.approx(without)
    assert selection_figure(RAW, [1.5] * 5, REFERENCE, conv, with_floor=True) == pytest.approx(with_floor)
    assert with_floor < without


def test_widened_input_keeps_the_outputs_until_training_moves_them():
    torch.manual_seed(0)
    one = RegressionNet(widths=(4, 4, 4, 4, 4, 4), hidden=(8, 8)).eval()
    two = RegressionNet(widths=(4, 4, 4, 4, 4, 4), hidden=(8, 8), calcium_window=True).eval()
    two.load_state_dict(widen_input(one.state_dict()))
    hu = np.random.default_rng(0).normal(40, 200, (3, 50, 60)).astype(np.int16)
    voxel = torch.tensor([[1.5, 0.7, 0.7]] * 3)
    with torch.inference_mode():
        a = one(slices_to_input(hu), voxel)
        b = two(slices_to_input(hu, calcium_window=True), voxel)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="one-channel"):
        widen_input(two.state_dict())


def test_a_one_channel_checkpoint_gains_the_window_when_asked(tmp_path):
    from cacflow.models.checkpoint import save_checkpoint

    net = RegressionNet(widths=(4, 4, 4, 4, 4, 4), hidden=(8, 8))
    payload = {"arch": {"widths": [4] * 6, "hidden": [8, 8]}, "transform": "log",
               "state": {k: v.clone() for k, v in net.state_dict().items()}}
    save_checkpoint(tmp_path / "one", payload, {"kind": "regressor", "evaluated": False})
    hp, state, origin = initial_state(replace(RegressorHyper(), init_from=str(tmp_path / "one"), calcium_window=True))
    assert hp.calcium_window and origin["calcium_window_added"] and state["features.0.weight"].shape[1] == 2
    hp, state, origin = initial_state(replace(RegressorHyper(), init_from=str(tmp_path / "one")))
    assert not hp.calcium_window and "calcium_window_added" not in origin
    assert state["features.0.weight"].shape[1] == 1
