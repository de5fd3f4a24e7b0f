"""The regressor's per-slice floor chosen on validation scans (cacflow.training.regressor.choose_slice_floor), its
epoch selection figure, and a run started from a checkpoint (initial_state)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cacflow.models.checkpoint import CheckpointError
from cacflow.models.predict import SliceRegressor
from cacflow.models.regression import RegressionNet
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.training.common import hyper_dict
from cacflow.training.inputs import hyper_from_config
from cacflow.training.regressor import (
    RegressorHyper,
    RegressorStage,
    choose_slice_floor,
    initial_state,
    log_mae,
    selection_figure,
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


def test_the_selection_figure_counts_slices_from_the_convention_minimum():
    # the convention's minimum (0.5 AU) only: the calcium-free scan keeps 0.6 + 0.7, which the 0.75 floor that
    # choose_slice_floor picks for these outputs would drop; the epoch is judged without it
    without = log_mae(np.array([1.3, 49.8, 4.5, 550.0, 150.0]), REFERENCE)
    assert selection_figure(RAW, [1.5] * 5, REFERENCE, AgatstonConvention()) == pytest.approx(without)


def test_a_run_started_from_a_checkpoint_takes_its_architecture(tmp_path):
    from cacflow.models.checkpoint import save_checkpoint

    net = RegressionNet(widths=(4, 4, 4, 4, 4, 4), hidden=(8, 8))
    payload = {"arch": {"widths": [4] * 6, "hidden": [8, 8]}, "transform": "log",
               "state": {k: v.clone() for k, v in net.state_dict().items()}}
    save_checkpoint(tmp_path / "one", payload, {"kind": "regressor", "evaluated": False})
    hp, state, origin = initial_state(replace(RegressorHyper(), init_from=str(tmp_path / "one")))
    assert (hp.widths, hp.hidden) == ((4,) * 6, (8, 8))
    assert origin["directory"] == str(tmp_path / "one")
    assert state.keys() == net.state_dict().keys()
    assert initial_state(RegressorHyper()) == (RegressorHyper(), None, None)  # from scratch by default
    # a checkpoint of the retired raw target is refused, naming the setting
    save_checkpoint(tmp_path / "raw", {**payload, "transform": "raw"}, {"kind": "regressor", "evaluated": False})
    with pytest.raises(CheckpointError, match="init_from.*'raw'"):
        initial_state(replace(RegressorHyper(), init_from=str(tmp_path / "raw")))
    with pytest.raises(CheckpointError, match="'raw' targets"):
        SliceRegressor.load(tmp_path / "raw", "cpu")


def test_stages_come_from_the_config_typed_and_checked():
    hp = hyper_from_config(RegressorHyper, {"stages": [{"learning_rate": 0.01, "max_epochs": 2, "patience": 1}]})
    assert hp.stages == (RegressorStage(0.01, 2, 1),)
    assert hyper_dict(hp)["stages"] == [{"learning_rate": 0.01, "max_epochs": 2, "patience": 1}]
    with pytest.raises(ValueError, match="at least one stage"):
        RegressorHyper(stages=())
    with pytest.raises(ValueError, match="schedule 'step'"):
        RegressorHyper(schedule="step")
    with pytest.raises(TypeError):
        RegressorHyper(stages=({"learning_rate": 0.01, "max_epoch": 2, "patience": 1},))
