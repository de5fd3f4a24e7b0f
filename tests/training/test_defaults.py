"""The training targets' default hyper-parameters are those of the shipped models' runs, so
`snakemake results/models/<model>/weights.pt` retrains what `models/<model>` ships (its card records them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacflow.models.checkpoint import read_card
from cacflow.training.calcium_levels import LevelHyper
from cacflow.training.common import hyper_dict, recorded_hyper
from cacflow.training.conv_lstm import LSTMHyper
from cacflow.training.localizer import LocalizerHyper
from cacflow.training.patch_unet3d import PatchHyper
from cacflow.training.regressor import RegressorHyper
from cacflow.training.segmentation import UNET_COMPARISON, VesselSegHyper

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("model, defaults", [
    ("regressor", RegressorHyper()), ("unetpp", VesselSegHyper()), ("unet", UNET_COMPARISON), ("levels", LevelHyper()),
    ("lstm", LSTMHyper()), ("patch3d", PatchHyper())])
def test_defaults_are_the_shipped_runs(model, defaults):
    # the level model's card also records full_resolution: false, an option since removed (RETIRED_HYPER)
    assert recorded_hyper(read_card(MODELS / model)) == hyper_dict(defaults)


def test_the_regressor_card_records_each_stage_of_its_recipe():
    card = read_card(MODELS / "regressor")
    stages = card["training"]["stages"]
    assert [s["learning_rate"] for s in stages] == [s.learning_rate for s in RegressorHyper().stages] == [2e-3, 1e-3]
    # each stage's record: its settings and its epochs, the best one among them
    for stage in stages:
        assert stage["best_val_log_mae"] == min(h["val_log_mae"] for h in stage["history"])
        assert len(stage["history"]) <= stage["max_epochs"] + 1


def test_every_shipped_model_is_covered():
    covered = {"localizer", "regressor", "unetpp", "unet", "levels", "lstm", "patch3d"}
    assert {p.parent.name for p in MODELS.glob("*/model_card.json")} == covered


def test_localizer_defaults_are_the_shipped_recipe():
    # the card predates the batch workers setting, which does not change the result
    defaults = {k: v for k, v in hyper_dict(LocalizerHyper()).items() if k != "workers"}
    assert read_card(MODELS / "localizer")["hyper_parameters"] == defaults
