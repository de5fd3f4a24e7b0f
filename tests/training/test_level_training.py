"""The level model's training pieces: the information-gain loss by hand, and where its windows are drawn."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cacflow.models.checkpoint import CheckpointError, load_checkpoint
from cacflow.scoring.agatston import DEFAULT_CONVENTION
from cacflow.training import calcium_levels as tcl


def _pair(z: int = 4, size: int = 64) -> tcl.PairRecord:
    """A pair whose slice 1 has a coronary lesion at (10, 10) and slice 3 a dense rib-like spot at (50, 50)."""
    soft = np.full((z, size, size), 40, dtype=np.int16)
    labels = np.zeros((z, size, size), dtype=np.uint8)
    soft[1, 9:12, 9:12] = 350
    labels[1, 9:12, 9:12] = 2
    soft[3, 48:53, 48:53] = 700  # dense, outside every label
    levels = np.where(labels > 0, 3, 0).astype(np.uint8)
    return tcl.PairRecord("p", None, None, soft.copy(), soft, levels, labels, (0, size, 0, size), (3.0, 0.7, 0.7),
                          np.nonzero(levels.any(axis=(1, 2)))[0])


def test_information_gain_loss_by_hand():
    # two classes, equal scores: log softmax = log 1/2 for both; target 0 weights M(0,0)=1, M(0,1)=exp(-alpha)
    logits = torch.zeros(1, 2, 1, 1)
    target = torch.zeros(1, 1, 1, 1, dtype=torch.long)
    alpha = 0.5
    expected = -(1 + math.exp(-alpha)) * math.log(0.5)
    assert tcl.information_gain_loss(logits, target, alpha).item() == pytest.approx(expected)
    # a confident right answer costs less than a confident near miss, which costs less than a far miss
    t = torch.full((1, 1, 1, 1), 2, dtype=torch.long)
    costs = [tcl.information_gain_loss(torch.eye(5)[k].view(1, 5, 1, 1) * 20, t, 1.0).item() for k in (2, 1, 0)]
    assert costs[0] < costs[1] < costs[2]


def test_dense_pixels_exclude_the_labelled_lesion():
    rec = _pair()
    assert not tcl.dense_pixels(rec, 1).any()  # the only dense pixels of slice 1 are coronary calcium
    assert tcl.dense_pixels(rec, 3).sum() == 25


def test_negative_windows_hold_dense_tissue_and_positive_windows_calcium():
    rec = _pair()
    rng = np.random.default_rng(0)
    neg = tcl.LevelHyper(patch=16, positive_fraction=0.0, negative_fraction=1.0 - 1e-12)
    hits = 0
    for _ in range(40):
        hu, lev = tcl._sample(rec, rng, neg)
        assert not lev.any()
        hits += bool((hu >= 700).any())
    # a random slice: only slice 3 (one in four) has dense tissue; it is then always inside the window
    assert 3 <= hits <= 20
    pos = tcl.LevelHyper(patch=16, positive_fraction=1.0, negative_fraction=0.0)
    for _ in range(10):
        hu, lev = tcl._sample(rec, rng, pos)
        assert (lev == 3).any()


def test_shares_that_do_not_add_up_are_refused():
    with pytest.raises(ValueError, match="negative_fraction"):
        tcl.train_level_net([], [], tcl.LevelHyper(positive_fraction=0.8, negative_fraction=0.3),
                            torch.device("cpu"), np.random.default_rng(0), None)


def test_init_from_takes_the_checkpoint_weights_and_architecture():
    shipped = Path(__file__).resolve().parents[2] / "models" / "levels"
    payload, card = load_checkpoint(shipped, "calcium_levels")
    hp, state, origin = tcl.initial_state(replace(tcl.LevelHyper(), channels=(4, 8), norm=None, calcium_window=False,
                                                  init_from=str(shipped)))
    # the run's own architecture settings give way to the checkpoint's, whose weights only fit that
    assert (hp.backbone, list(hp.channels)) == (payload["arch"]["backbone"], payload["arch"]["channels"])
    assert (hp.norm, hp.calcium_window) == (payload["arch"]["norm"], payload["arch"]["calcium_window"])
    assert set(state) == set(payload["state"]) and origin["weights_sha256"] == card["weights_sha256"]
    assert tcl.initial_state(tcl.LevelHyper()) == (tcl.LevelHyper(), None, None)  # from scratch by default
    with pytest.raises(CheckpointError, match="init_from"):
        tcl.initial_state(replace(tcl.LevelHyper(), init_from=str(shipped.parent / "missing")))


def test_a_continued_run_scores_its_start_as_epoch_minus_one():
    series = SimpleNamespace(series_key="s", kvp=120.0)  # what the validation rows read of a series
    rec = replace(_pair(z=4, size=32), sharp=series, soft=series)
    hp = tcl.LevelHyper(channels=(4, 8, 16, 32, 64), patch=32, batch_size=2, samples_per_epoch=2, max_epochs=1,
                        patience=5, val_pairs=1)
    torch.manual_seed(0)
    start = tcl.LevelPredictor.build(tcl.level_arch(hp)).state_dict()
    net, history = tcl.train_level_net([rec], [rec], hp, torch.device("cpu"), np.random.default_rng(0),
                                       DEFAULT_CONVENTION, init_state=start)
    assert [h["epoch"] for h in history["history"]] == [-1, 0]
    assert history["best_val_mean_level_dice"] == max(h["val_mean_level_dice"] for h in history["history"])
    unchanged = all(torch.equal(net.state_dict()[k].cpu(), v) for k, v in start.items())
    assert unchanged == (history["best_epoch"] == -1)
