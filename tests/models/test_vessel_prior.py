"""The vessel prior: fitted counts, cells and the lesion-wise vessel choice, on hand-made boxes."""

from __future__ import annotations

import numpy as np
import torch

from cacflow.models.vessel_prior import (
    VesselPrior,
    assign_vessels,
    box_positions,
    fit_vessel_prior,
)


def _box() -> np.ndarray:
    """A 4 x 4 x 4 box: LAD (2) calcium in the front-left octant cells, RCA (4) in the back-right ones."""
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, 0] = 2
    labels[0, 1, 1] = 2
    labels[3, 3, 3] = 4
    return labels


def test_box_positions_span_the_box_by_hand():
    pos = box_positions((np.array([0, 3]), np.array([0, 1]), np.array([1, 0])), (4, 2, 2))
    np.testing.assert_allclose(pos, [[-0.75, -0.5, 0.5], [0.75, 0.5, -0.5]])


def test_fitted_prior_by_hand_without_smoothing():
    # two cells per axis, no smoothing: the (0,0,0) cell holds two LAD voxels, the (1,1,1) cell one RCA voxel
    prior = fit_vessel_prior([_box()], bins=2, sigma_bins=0.0, floor=0.5)
    p = np.exp(prior.log_prob)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[:, 0, 0, 0], [0.5 / 4.0, 2.5 / 4.0, 0.5 / 4.0, 0.5 / 4.0], rtol=1e-6)
    np.testing.assert_allclose(p[:, 1, 1, 1], [0.5 / 3.0, 0.5 / 3.0, 0.5 / 3.0, 1.5 / 3.0], rtol=1e-6)
    np.testing.assert_allclose(p[:, 0, 1, 0], 0.25, rtol=1e-6)  # an empty cell is uninformative
    np.testing.assert_array_equal(prior.cells(np.array([[-1.0, 0.0, 0.999], [-7.0, 7.0, -0.01]])),
                                  [[0, 1, 1], [0, 1, 0]])


def test_prior_without_labelled_calcium_is_uniform():
    prior = fit_vessel_prior([np.zeros((3, 3, 3), np.uint8)], bins=3)
    np.testing.assert_allclose(np.exp(prior.log_prob), 0.25, rtol=1e-6)


def test_payload_round_trip():
    prior = fit_vessel_prior([_box()], bins=3, weight=0.5)
    entry = prior.to_payload()
    assert isinstance(entry["log_prob"], torch.Tensor)
    back = VesselPrior.from_payload(entry)
    np.testing.assert_array_equal(back.log_prob, prior.log_prob)
    assert back.weight == 0.5 and back.bins == 3


def test_each_lesion_takes_one_vessel_from_network_and_prior():
    # a prior that says "LAD" at the front (low z) and "RCA" at the back, strongly
    log_prob = np.full((4, 2, 2, 2), np.log(0.01), np.float32)
    log_prob[1, 0] = np.log(0.97)  # LAD where z < 0
    log_prob[3, 1] = np.log(0.97)  # RCA where z > 0
    prior = VesselPrior(log_prob, weight=1.0)
    calcium = np.zeros((4, 6, 6), bool)
    calcium[0, 1:3, 1:3] = True  # lesion A, front
    calcium[3, 3:5, 3:5] = True  # lesion B, back
    n = int(calcium.sum())
    # the network calls every voxel CX, mildly (log 0.4 against log 0.2 for the others)
    net = np.tile(np.log([0.2, 0.2, 0.4, 0.2]), (n, 1))
    labels = assign_vessels(calcium, net, prior)
    assert set(np.unique(labels[0])) == {0, 2} and set(np.unique(labels[3])) == {0, 4}
    assert ((labels > 0) == calcium).all()
    # without the prior the network's vessel stands, one per lesion
    labels = assign_vessels(calcium, net, VesselPrior(log_prob, weight=0.0))
    assert set(np.unique(labels)) == {0, 3}
    # a confident network overrules the prior
    sure = np.tile(np.log([1e-4, 1e-4, 1 - 3e-4, 1e-4]), (n, 1))
    assert set(np.unique(assign_vessels(calcium, sure, prior))) == {0, 3}


def test_a_lesion_is_one_component_in_3d():
    prior = VesselPrior(np.zeros((4, 1, 1, 1), np.float32))  # uninformative
    calcium = np.zeros((3, 4, 4), bool)
    calcium[0, 0, 0] = calcium[1, 1, 1] = True  # diagonal neighbours: one lesion
    calcium[2, 3, 3] = True  # its own lesion
    net = np.log(np.array([[0.1, 0.6, 0.2, 0.1], [0.1, 0.3, 0.2, 0.4], [0.1, 0.1, 0.7, 0.1]]))
    labels = assign_vessels(calcium, net, prior)
    # lesion 1: LAD 0.6 * 0.3 = 0.18 beats RCA 0.1 * 0.4, CX 0.2 * 0.2 and LM 0.1 * 0.1: LAD for both voxels
    assert labels[0, 0, 0] == labels[1, 1, 1] == 2 and labels[2, 3, 3] == 3
    assert assign_vessels(np.zeros((2, 2, 2), bool), np.zeros((0, 4)), prior).sum() == 0
