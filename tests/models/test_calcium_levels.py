"""Level networks: the normalisation a checkpoint asks for is the one built (a level is a band of absolute HU,
which per-slice normalisation hides), and old checkpoints without the entry keep their backbone's default."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cacflow.models.calcium_levels import LevelArch, LevelPredictor, build_level_net, slices_to_input
from cacflow.models.checkpoint import save_checkpoint
from cacflow.models.lesion_filter import LesionFilter

CHANNELS = (8, 16, 16, 32, 32)  # SegResNet's default group norm needs multiples of 8


def _norms(net: torch.nn.Module) -> set[type]:
    return {type(m) for m in net.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d))}


def test_batch_normalisation_replaces_the_per_slice_one():
    assert _norms(build_level_net("segresnet", CHANNELS, "batch")) == {torch.nn.BatchNorm2d}
    assert torch.nn.BatchNorm2d not in _norms(build_level_net("segresnet", CHANNELS))


def test_unknown_normalisation_or_backbone_is_refused():
    with pytest.raises(ValueError, match="normalisation"):
        build_level_net("segresnet", CHANNELS, "group")
    with pytest.raises(ValueError, match="backbone 'unet'"):  # the seed's other backbones were not adopted
        build_level_net("unet", CHANNELS, "batch")


def test_checkpoint_without_norm_entry_loads_its_backbone_default(tmp_path):
    net = build_level_net("segresnet", CHANNELS)
    save_checkpoint(tmp_path, {"arch": {"backbone": "segresnet", "channels": list(CHANNELS)},
                               "state": net.state_dict()}, {"kind": "calcium_levels"})
    model = LevelPredictor.load(tmp_path, torch.device("cpu"))
    assert model.arch == LevelArch("segresnet", CHANNELS, None)
    assert model.predict_box(np.full((2, 40, 40), 300, np.int16), (0, 2, 4, 36, 4, 36)).shape == (2, 40, 40)


def test_calcium_window_channel_by_hand():
    x = slices_to_input(np.array([[[0, 130, 300, 900]]], dtype=np.int16), calcium_window=True)
    assert x.shape == (1, 2, 1, 4)
    np.testing.assert_allclose(x[0, 0, 0].numpy(), [1.0, 1.13, 1.3, 1.9], rtol=1e-6)
    np.testing.assert_allclose(x[0, 1, 0].numpy(), [0.0, 0.075, 0.5, 1.0], rtol=1e-6)
    assert slices_to_input(np.zeros((2, 3, 3), np.int16)).shape == (2, 1, 3, 3)


def test_calcium_window_checkpoint_reads_two_channels(tmp_path):
    arch = LevelArch("segresnet", CHANNELS, "batch", True)
    net = LevelPredictor.build(arch)
    # the shipped checkpoint's arch also records full_resolution: false (a removed option's one remaining value)
    save_checkpoint(tmp_path, {"arch": {"backbone": "segresnet", "channels": list(CHANNELS), "norm": "batch",
                                        "calcium_window": True, "full_resolution": False}, "state": net.state_dict()},
                    {"kind": "calcium_levels"})
    model = LevelPredictor.load(tmp_path, torch.device("cpu"))
    assert model.arch == arch
    assert model.predict_box(np.full((2, 40, 40), 300, np.int16), (0, 2, 4, 36, 4, 36)).shape == (2, 40, 40)
    with pytest.raises(ValueError, match="full-resolution"):
        LevelPredictor.read_arch({"backbone": "unet", "channels": list(CHANNELS), "full_resolution": True})


def test_lesion_filter_sets_rejected_lesions_to_level_zero(tmp_path):
    # training lesions: coronary at the front rows of the box, spurious at the back; the level outputs are given
    net = build_level_net("segresnet", CHANNELS)
    lesion_filter = LesionFilter(np.array([[0, -0.9, 0, 0.9], [0, -0.8, 0, 0.9], [0, 0.9, 0, 0.9],
                                           [0, 0.8, 0, 0.9]], np.float32), np.array([False, False, True, True]),
                                 2, 0.5)
    save_checkpoint(tmp_path, {"arch": {"backbone": "segresnet", "channels": list(CHANNELS)},
                               "state": net.state_dict(), "lesion_filter": lesion_filter.to_payload()},
                    {"kind": "calcium_levels"})
    model = LevelPredictor.load(tmp_path, torch.device("cpu"))
    assert model.lesion_filter is not None
    levels = np.zeros((2, 10, 10), np.uint8)
    levels[0, 0, 4:6] = [2, 4]  # a front lesion
    levels[1, 9, 4] = 3  # a back lesion
    probability = np.array([0.9, 0.9, 0.9])
    filtered = model.filter_levels(levels, probability)
    np.testing.assert_array_equal(filtered[0, 0, 4:6], [2, 4])
    assert filtered[1, 9, 4] == 0 and filtered.sum() == 6
    np.testing.assert_array_equal(model.filter_levels(levels, probability, math.inf), levels)
    # the argmax levels and the calcium probability come from the network's outputs, one per level >= 1 voxel
    out, p = model.level_outputs(np.full((2, 20, 20), 300, np.int16))
    assert out.shape == (2, 20, 20) and len(p) == int((out > 0).sum()) and ((p >= 0) & (p <= 1)).all()
