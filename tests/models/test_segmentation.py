"""Vessel segmentation networks: shapes for both architectures, padding, gating, and a segmenter that labels only
inside the heart box and never below 130 HU (checked with a network whose output is fixed by its last bias)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cacflow.models.checkpoint import save_checkpoint
from cacflow.models.segmentation import (
    N_CLASSES,
    SegmentationArch,
    VesselSegmenter,
    build_vessel_net,
    gate,
    logits,
    pad_to,
    slices_to_input,
)

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
