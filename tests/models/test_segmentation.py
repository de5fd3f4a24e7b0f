"""Vessel segmentation networks: shapes for both architectures, padding, gating, and a segmenter that labels only
inside the heart box and never below 130 HU (checked with a network whose output is fixed by its last bias)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cacflow.models.checkpoint import save_checkpoint
from cacflow.models.lesion_filter import LesionFilter
from cacflow.models.segmentation import (
    N_CLASSES,
    SegmentationArch,
    VesselSegmenter,
    build_vessel_net,
    gate,
    logits,
    pad_to,
    select_calcium,
    slices_to_input,
)
from cacflow.models.vessel_prior import VesselPrior
from cacflow.training.segmentation import VesselSegHyper, patch_corner, sample_patch

FEATURES = (4, 4, 8, 8, 16, 4)


@pytest.mark.parametrize("arch", ["unetpp", "unet"])
def test_networks_give_five_class_maps_of_the_input_size(arch):
    net = build_vessel_net(arch, FEATURES).eval()
    x = slices_to_input(np.full((2, 48, 64), -50, dtype=np.int16))
    assert x.shape == (2, 2, 48, 64)
    with torch.no_grad():
        assert logits(net, x).shape == (2, N_CLASSES, 48, 64)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unetpp"):
        build_vessel_net("vnet", FEATURES)


def test_input_channels_pad_and_gate():
    hu = np.array([[[129, 130], [1000, -1000]]], dtype=np.int16)
    x = slices_to_input(hu)
    np.testing.assert_array_equal(x[0, 1].numpy(), [[0, 1], [1, 0]])
    padded, size = pad_to(np.zeros((1, 17, 32), np.int16))
    assert padded.shape == (1, 32, 32) and size == (17, 32) and padded[0, 20, 0] == -1000
    np.testing.assert_array_equal(gate(np.full((1, 2, 2), 3, np.uint8), hu), [[[0, 3], [3, 0]]])


def _constant_net(label: int) -> torch.nn.Module:
    net = build_vessel_net("unet", FEATURES)
    final = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        final.weight.zero_()
        final.bias.zero_()
        final.bias[label] = 5.0
    return net


def test_segmenter_labels_inside_the_box_at_or_above_130_hu(tmp_path):
    net = _constant_net(2)
    save_checkpoint(tmp_path, {"arch": {"arch": "unet", "features": list(FEATURES)},
                               "state": {k: v for k, v in net.state_dict().items()}},
                    {"kind": "vessel_segmentation"})
    seg = VesselSegmenter.load(tmp_path, torch.device("cpu"), batch_size=3)
    assert seg.arch == SegmentationArch("unet", FEATURES) and seg.id.startswith("vessel_segmentation-")
    hu = np.full((6, 40, 50), 40, dtype=np.int16)
    hu[:, 10:30, 10:30] = 300
    labels = seg.predict_box(hu, (1, 5, 5, 25, 0, 21))
    expected = np.zeros(hu.shape, np.uint8)
    expected[1:5, 10:25, 10:21] = 2
    np.testing.assert_array_equal(labels, expected)


def test_a_vessel_prior_in_the_checkpoint_names_each_lesion_s_vessel(tmp_path):
    net = _constant_net(2)  # the network says LAD everywhere (p about 0.96)
    log_prob = np.full((4, 2, 2, 2), np.log(0.01), np.float32)
    log_prob[3] = np.log(0.97)  # the prior says RCA everywhere
    save_checkpoint(tmp_path, {"arch": {"arch": "unet", "features": list(FEATURES)},
                               "vessel_prior": VesselPrior(log_prob, weight=10.0).to_payload(),
                               "state": {k: v for k, v in net.state_dict().items()}},
                    {"kind": "vessel_segmentation"})
    seg = VesselSegmenter.load(tmp_path, torch.device("cpu"), batch_size=3)
    assert seg.prior is not None and seg.prior.weight == 10.0
    hu = np.full((6, 40, 50), 40, dtype=np.int16)
    hu[:, 10:30, 10:30] = 300
    labels = seg.predict_box(hu, (1, 5, 5, 25, 0, 21))
    expected = np.zeros(hu.shape, np.uint8)
    expected[1:5, 10:25, 10:21] = 4  # the same calcium, its vessel from the prior
    np.testing.assert_array_equal(labels, expected)
    seg.prior = VesselPrior(log_prob, weight=0.0)  # the network's own vessel
    assert set(np.unique(seg.predict_box(hu, (1, 5, 5, 25, 0, 21)))) == {0, 2}


def test_training_windows_and_box_prediction_give_a_voxel_the_same_position():
    rng = np.random.default_rng(3)
    hu = rng.integers(-100, 400, size=(7, 60, 70)).astype(np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    labels[4, 30:33, 40:42] = 3
    rec = SimpleNamespace(hu=hu, labels=labels, positive=np.array([4]), inner=(6, 52, 9, 63))
    hp = VesselSegHyper(patch=32, position=True, positive_fraction=0.5)
    seg = VesselSegmenter(build_vessel_net("unet", FEATURES, position=True),
                          SegmentationArch("unet", FEATURES, True),
                          {"kind": "vessel_segmentation", "weights_sha256": "test"},
                          torch.device("cpu"))
    y0, y1, x0, x1 = rec.inner
    block = hu[:, y0:y1, x0:x1]
    padded, box_hw = pad_to(block)
    inference = seg.encode(padded, np.arange(len(padded)), len(padded), box_hw)
    assert inference.shape == (7, 5, 48, 64)
    checked = 0
    for _ in range(20):
        state = rng.bit_generator.state
        win_hu, _, pos = sample_patch(rec, rng, hp)
        rng.bit_generator.state = state  # the same draw again, for the window's corner
        z, cy, cx = patch_corner(rec.labels, rec.positive, rng, hp.patch, hp.positive_fraction)
        rng.bit_generator.state = state
        sample_patch(rec, rng, hp)
        for r, c in ((0, 0), (15, 20), (31, 31)):
            by, bx = cy + r - y0, cx + c - x0  # the voxel's place in the box block
            if 0 <= by < box_hw[0] and 0 <= bx < box_hw[1]:
                np.testing.assert_allclose(pos[:, r, c].numpy(), inference[z, 2:, by, bx].numpy(), rtol=1e-6)
                assert win_hu[r, c] == block[z, by, bx]
                checked += 1
    assert checked >= 20


def test_position_checkpoint_loads_as_a_five_channel_segmenter(tmp_path):
    net = build_vessel_net("unet", FEATURES, position=True)
    save_checkpoint(tmp_path, {"arch": {"arch": "unet", "features": list(FEATURES), "position": True},
                               "state": net.state_dict()}, {"kind": "vessel_segmentation"})
    seg = VesselSegmenter.load(tmp_path, torch.device("cpu"))
    assert seg.arch.position
    labels = seg.predict_box(np.full((3, 40, 40), 200, np.int16), (0, 3, 2, 38, 2, 38))
    assert labels.shape == (3, 40, 40) and not labels[:, :2].any()


def test_lesion_filter_removes_lesions_before_they_get_a_vessel(tmp_path):
    # a checkpoint with a lesion filter whose training lesions say: calcium at the front of the box is coronary,
    # at the back it is not; the network's outputs are given, so the filter and the labelling are checked alone
    net = build_vessel_net("unet", FEATURES)
    lesion_filter = LesionFilter(np.array([[0, -0.9, 0, 0.8], [0, -0.8, 0, 0.8], [0, 0.9, 0, 0.8],
                                           [0, 0.8, 0, 0.8]], np.float32),
                                 np.array([False, False, True, True]), 2, 0.5)
    save_checkpoint(tmp_path, {"arch": {"arch": "unet", "features": list(FEATURES)}, "state": net.state_dict(),
                               "lesion_filter": lesion_filter.to_payload()}, {"kind": "vessel_segmentation"})
    seg = VesselSegmenter.load(tmp_path, torch.device("cpu"))
    assert seg.lesion_filter is not None and seg.prior is None
    calcium = np.zeros((2, 10, 10), bool)
    calcium[0, 0, 4:6] = True  # front row: two voxels, argmax LAD
    calcium[1, 9, 4] = True  # back row: one voxel, argmax RCA
    log_probs = np.log(np.array([[0.2, 0.0, 0.7, 0.05, 0.05], [0.2, 0.0, 0.7, 0.05, 0.05],
                                 [0.2, 0.05, 0.05, 0.0, 0.7]]) + 1e-9)
    labels = seg.label_calcium(calcium, log_probs)
    assert (labels[0, 0, 4:6] == 2).all() and labels.sum() == 4  # the back lesion was removed
    kept_all = seg.label_calcium(calcium, log_probs, threshold=math.inf)
    assert kept_all[1, 9, 4] == 4 and (kept_all[0, 0, 4:6] == 2).all()


def test_calcium_is_the_argmax_or_a_calcium_probability_at_least_c():
    # four voxels at or above 130 HU, P(background) 0.9, 0.55, 0.45 and 0.2; the third's argmax is still
    # background (CX 0.30 < 0.45), the fourth's is RCA
    gated = np.zeros((1, 2, 3), bool)
    gated[0, 0, 0] = gated[0, 0, 2] = gated[0, 1, 1] = gated[0, 1, 2] = True
    probs = np.array([[0.90, 0.02, 0.04, 0.02, 0.02],
                      [0.55, 0.05, 0.20, 0.15, 0.05],
                      [0.45, 0.00, 0.25, 0.30, 0.00],
                      [0.20, 0.05, 0.05, 0.10, 0.60]])
    log_probs = np.log(probs + 1e-12)
    calcium, lp = select_calcium(gated, log_probs, None)  # the argmax alone: only the last voxel
    assert calcium.sum() == 1 and calcium[0, 1, 2] and np.allclose(lp, log_probs[3:])
    calcium, lp = select_calcium(gated, log_probs, 0.5)  # 1 - P(bg) >= 0.5: the third voxel joins
    assert np.argwhere(calcium).tolist() == [[0, 1, 1], [0, 1, 2]] and np.allclose(lp, log_probs[2:])
    calcium, lp = select_calcium(gated, log_probs, 0.44)  # 1 - 0.55 = 0.45 >= 0.44: the second voxel too
    assert np.argwhere(calcium).tolist() == [[0, 0, 2], [0, 1, 1], [0, 1, 2]] and np.allclose(lp, log_probs[1:])
    assert select_calcium(gated, log_probs, 0.05)[0].sum() == 4


def test_a_checkpoint_calcium_probability_widens_the_network_calcium(tmp_path):
    net = build_vessel_net("unet", FEATURES)
    save_checkpoint(tmp_path, {"arch": {"arch": "unet", "features": list(FEATURES)}, "state": net.state_dict(),
                               "calcium_probability": 0.3}, {"kind": "vessel_segmentation"})
    seg = VesselSegmenter.load(tmp_path, torch.device("cpu"))
    assert seg.calcium_probability == pytest.approx(0.3)
    hu = np.full((3, 32, 32), -50.0, np.float32)
    hu[1, 10:14, 10:14] = 400.0
    gated, log_probs = seg.gated_outputs(hu)
    assert gated.sum() == 16 and log_probs.shape == (16, N_CLASSES)
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1.0, atol=1e-5)
    calcium, lp = seg.calcium_outputs(hu)
    expected, _ = select_calcium(gated, log_probs, 0.3)
    assert (calcium == expected).all() and len(lp) == calcium.sum()
    seg.calcium_probability = 0.0  # every gated voxel is calcium at c = 0
    assert seg.calcium_outputs(hu)[0].sum() == 16
