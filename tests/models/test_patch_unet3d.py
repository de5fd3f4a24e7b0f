"""The 3D patch U-Net: patch extraction by hand, stitched sliding-window probabilities, the 0.95 threshold at its
boundary, the 130 HU gate and the heart box (checked with a network whose output is fixed by its last bias)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cacflow.models.checkpoint import save_checkpoint
from cacflow.models.patch_unet3d import (
    PATCH_ZYX,
    THRESHOLD,
    PatchArch,
    PatchSegmenter,
    build_patch_net,
    volume_to_input,
)
from cacflow.training.patch_unet3d import block

CHANNELS = (4, 8, 8)


def test_patch_is_the_seeds_48_by_48_by_32_and_threshold_095():
    assert PATCH_ZYX == (32, 48, 48) and THRESHOLD == 0.95


def test_block_fills_outside_the_volume():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    out = block(a, (-1, 1, 2), (2, 2, 3), -7)
    np.testing.assert_array_equal(out[0], -7)
    np.testing.assert_array_equal(out[1], [[a[0, 1, 2], a[0, 1, 3], -7], [a[0, 2, 2], a[0, 2, 3], -7]])
    assert (block(a, (5, 0, 0), (2, 2, 2), 0) == 0).all()


def test_network_maps_a_patch_to_one_logit_per_voxel():
    net = build_patch_net(CHANNELS).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, *PATCH_ZYX)).shape == (1, 1, *PATCH_ZYX)


class _Constant(torch.nn.Module):
    """Stands in for the network: the same logit at every voxel of every patch."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.logit)


def _constant(logit: float) -> PatchSegmenter:
    return PatchSegmenter(_Constant(logit), PatchArch(CHANNELS), {"kind": "patch_unet3d", "weights_sha256": "c"},
                          torch.device("cpu"), batch_size=2)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_loaded_checkpoint_predicts_a_one_patch_volume_as_the_network_does(tmp_path):
    torch.manual_seed(0)
    net = build_patch_net(CHANNELS).eval()
    save_checkpoint(tmp_path, {"arch": {"channels": list(CHANNELS)}, "threshold": THRESHOLD,
                               "state": net.state_dict()}, {"kind": "patch_unet3d"})
    seg = PatchSegmenter.load(tmp_path, torch.device("cpu"))
    assert seg.arch == PatchArch(CHANNELS) and seg.id.startswith("patch_unet3d-") and seg.threshold == THRESHOLD
    hu = np.random.default_rng(0).normal(0, 300, PATCH_ZYX).astype(np.int16)
    with torch.no_grad():
        direct = torch.sigmoid(net(volume_to_input(hu)))[0, 0].numpy()
    np.testing.assert_allclose(seg.probabilities(hu), direct, rtol=1e-4, atol=1e-6)


def test_stitched_probabilities_of_a_volume_larger_than_a_patch():
    seg = _constant(1.0)
    prob = seg.probabilities(np.zeros((40, 70, 50), np.int16))  # several overlapping patches along each axis
    assert prob.shape == (40, 70, 50)
    np.testing.assert_allclose(prob, 1 / (1 + math.exp(-1.0)), rtol=1e-5)
    assert seg.probabilities(np.zeros((5, 9, 11), np.int16)).shape == (5, 9, 11)  # smaller than a patch


@pytest.mark.parametrize("p, labelled", [(0.955, True), (0.945, False)])
def test_threshold_095_gate_and_box(p, labelled):
    seg = _constant(_logit(p))
    hu = np.full((34, 60, 52), 300, dtype=np.int16)
    hu[:, :, :10] = 129  # below the calcium threshold: never labelled
    labels = seg.predict_box(hu, (2, 30, 5, 55, 0, 40))
    expected = np.zeros(hu.shape, np.uint8)
    if labelled:
        expected[2:30, 5:55, 10:40] = 1
    np.testing.assert_array_equal(labels, expected)
