"""The kernel-robust calcification level model (seed 000, "robust Agatston score").

Input: an axial slice of the scoring grid (z, y, x order) cropped to the heart box, as one channel of normalised HU
(:func:`cacflow.models.regression.normalise_hu`), from any reconstruction kernel. Output: per-pixel scores of the
five calcification levels 0..4 (:mod:`cacflow.scoring.robust_agatston`); the argmax is the level map, scored by
:func:`~cacflow.scoring.robust_agatston.robust_score` with no HU threshold of the scan itself.

Backbones (MONAI, 2-D, one input channel, five outputs): ``unet`` (:class:`monai.networks.nets.UNet`, residual
units), ``segresnet`` (:class:`monai.networks.nets.SegResNet`) and ``attention_unet``
(:class:`monai.networks.nets.AttentionUnet`), the seed's three. Slice sides are padded with air to multiples of 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cacflow.models.regression import normalise_hu
from cacflow.models.segmentation import SliceLabeller
from cacflow.scoring.robust_agatston import N_LEVELS

BACKBONES: tuple[str, ...] = ("unet", "segresnet", "attention_unet")
KIND = "calcium_levels"


def build_level_net(backbone: str, channels: tuple[int, ...]) -> nn.Module:
    """A 2-D network with 1 input channel and :data:`N_LEVELS` outputs; ``channels`` are the widths per level of
    the encoder (four down-samplings: five widths; SegResNet takes the first as its initial filters)."""
    from monai.networks.nets import AttentionUnet, SegResNet, UNet

    channels = tuple(int(c) for c in channels)
    if backbone == "unet":
        return UNet(spatial_dims=2, in_channels=1, out_channels=N_LEVELS, channels=channels,
                    strides=(2,) * (len(channels) - 1), num_res_units=1)
    if backbone == "segresnet":
        return SegResNet(spatial_dims=2, in_channels=1, out_channels=N_LEVELS, init_filters=channels[0],
                         blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))
    if backbone == "attention_unet":
        return AttentionUnet(spatial_dims=2, in_channels=1, out_channels=N_LEVELS, channels=channels,
                             strides=(2,) * (len(channels) - 1))
    raise ValueError(f"unknown calcification level backbone {backbone!r}; use one of {BACKBONES}")


def slices_to_input(hu: np.ndarray) -> torch.Tensor:
    """HU slices (n, h, w) -> network input (n, 1, h, w)."""
    return normalise_hu(torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32)))[:, None]


@dataclass(frozen=True)
class LevelArch:
    """What a level checkpoint needs to rebuild its network."""

    backbone: str
    channels: tuple[int, ...]


class LevelPredictor(SliceLabeller):
    """A calcification level checkpoint: level maps 0..4 of slices of any kernel."""

    kind = KIND

    @staticmethod
    def read_arch(arch: dict) -> LevelArch:
        return LevelArch(arch["backbone"], tuple(arch["channels"]))

    @staticmethod
    def build(arch: LevelArch) -> nn.Module:
        return build_level_net(arch.backbone, arch.channels)

    def encode(self, hu: np.ndarray) -> torch.Tensor:
        return slices_to_input(hu)
