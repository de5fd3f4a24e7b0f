"""Vessel segmentation training windows: hard negatives on dense non-coronary tissue, shares, the vessel prior."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cacflow.models.vessel_prior import VesselPrior
from cacflow.training import segmentation as ts


def _record() -> SimpleNamespace:
    """Six 40 x 40 slices: an LAD lesion (300 HU) in slice 1, a bone-like block (800 HU, unlabelled) in slice 4."""
    hu = np.full((6, 40, 40), 30, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    hu[1, 10:13, 10:13] = 300
    labels[1, 10:13, 10:13] = 2
    hu[4, 25:30, 25:30] = 800
    return SimpleNamespace(hu=hu, labels=labels, positive=np.array([1]), inner=(4, 36, 4, 36))


def test_dense_non_coronary_is_dense_and_unlabelled():
    rec = _record()
    assert not ts.dense_non_coronary(rec.hu[1], rec.labels[1]).any()
    assert ts.dense_non_coronary(rec.hu[4], rec.labels[4]).sum() == 25


def test_hard_negative_windows_hold_the_dense_tissue():
    rec = _record()
    rng = np.random.default_rng(1)
    hp = ts.VesselSegHyper(patch=16, positive_fraction=0.0, negative_fraction=1.0 - 1e-12, position=False)
    hits = 0
    for _ in range(60):
        hu, _, pos = ts.sample_patch(rec, rng, hp)
        assert pos is None
        hits += bool((hu >= 800).any())
    assert 4 <= hits <= 25  # slice 4 is one of six; when drawn, the window always holds the block
    hp = ts.VesselSegHyper(patch=16, positive_fraction=1.0, negative_fraction=0.0, position=False)
    assert all((ts.sample_patch(rec, rng, hp)[1] == 2).any() for _ in range(10))


def test_vessel_shares_that_do_not_add_up_are_refused():
    with pytest.raises(ValueError, match="training.vessel_segmentation: positive_fraction"):
        ts.train_vessel_net("unet", [], [], ts.VesselSegHyper(positive_fraction=0.9, negative_fraction=0.2),
                            torch.device("cpu"), np.random.default_rng(0), None)


def test_prior_is_fitted_on_the_gated_box_labels():
    rec = _record()
    rec.labels[1, 20, 20] = 4  # an RCA label on a 30 HU pixel: gated away
    prior = ts.fit_prior([rec], ts.VesselSegHyper(prior_bins=2, prior_sigma_bins=0.0))
    assert isinstance(prior, VesselPrior) and prior.bins == 2
    p = np.exp(prior.log_prob)
    assert p[1].max() > 0.9 and p[3].max() < 0.3  # LAD voxels counted, the sub-threshold RCA one not
    assert ts.fit_prior([rec], ts.VesselSegHyper(prior_bins=0)) is None
