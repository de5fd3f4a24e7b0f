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
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cacflow.models.checkpoint import load_checkpoint, model_id
from cacflow.models.regression import normalise_hu
from cacflow.models.segmentation import logits, pad_to
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


class LevelPredictor:
    """A calcification level checkpoint loaded once; predicts level maps inside heart boxes of many scans."""

    kind = KIND

    def __init__(self, net: nn.Module, arch: LevelArch, card: dict, device: torch.device, batch_size: int = 16
                 ) -> None:
        self.net = net.to(device).eval()
        if device.type == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.arch, self.card, self.device, self.batch_size = arch, card, device, batch_size
        self.id = model_id(card)

    @classmethod
    def load(cls, directory: Path, device: torch.device, batch_size: int = 16) -> "LevelPredictor":
        payload, card = load_checkpoint(directory, KIND)
        arch = LevelArch(payload["arch"]["backbone"], tuple(payload["arch"]["channels"]))
        net = build_level_net(arch.backbone, arch.channels)
        net.load_state_dict(payload["state"])
        return cls(net, arch, card, device, batch_size)

    @torch.inference_mode()
    def predict_slices(self, hu: np.ndarray) -> np.ndarray:
        """Level maps (n, h, w) uint8 of HU slices (n, h, w) of any size."""
        padded, (h, w) = pad_to(hu)
        out = []
        for i in range(0, len(padded), self.batch_size):
            x = slices_to_input(padded[i:i + self.batch_size]).to(self.device)
            if self.device.type == "cpu":
                y = logits(self.net, x.contiguous(memory_format=torch.channels_last))
            else:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    y = logits(self.net, x)
            out.append(y.float().argmax(dim=1).to(torch.uint8).cpu().numpy())
        return np.concatenate(out)[:, :h, :w] if out else np.zeros((0, h, w), np.uint8)

    def predict_box(self, hu: np.ndarray, box_zyx: tuple[int, int, int, int, int, int]) -> np.ndarray:
        """Level map on the whole grid (z, y, x; uint8, 0 outside the heart box)."""
        z0, z1, y0, y1, x0, x1 = box_zyx
        levels = np.zeros(hu.shape, dtype=np.uint8)
        if z1 > z0 and y1 > y0 and x1 > x0:
            levels[z0:z1, y0:y1, x0:x1] = self.predict_slices(hu[z0:z1, y0:y1, x0:x1])
        return levels
