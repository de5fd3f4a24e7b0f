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
from cacflow.training.segmentation import VesselSegHyper

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("model, hyper", [("unetpp", VesselSegHyper), ("levels", LevelHyper), ("lstm", LSTMHyper),
                                                 ("patch3d", PatchHyper)])
def test_defaults_are_the_shipped_runs(model, hyper):
    # the level model's card also records full_resolution: false, an option since removed (RETIRED_HYPER)
    assert recorded_hyper(read_card(MODELS / model)) == hyper_dict(hyper())


def test_localizer_defaults_are_the_shipped_recipe():
    # the card predates the batch workers setting, which does not change the result
    defaults = {k: v for k, v in hyper_dict(LocalizerHyper()).items() if k != "workers"}
    assert read_card(MODELS / "localizer")["hyper_parameters"] == defaults
