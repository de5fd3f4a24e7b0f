"""The kernel-robust calcification level model (seed 000, "robust Agatston score").

Input: an axial slice of the scoring grid (z, y, x order) cropped to the heart box, as one channel of normalised HU
(:func:`cacflow.models.regression.normalise_hu`), from any reconstruction kernel. Output: per-pixel scores of the
five calcification levels 0..4 (:mod:`cacflow.scoring.robust_agatston`); the argmax is the level map, scored by
:func:`~cacflow.scoring.robust_agatston.robust_score` with no HU threshold of the scan itself.

Backbone (MONAI, 2-D, five outputs): ``segresnet`` (:class:`monai.networks.nets.SegResNet`), which convolves at
full resolution in its first and last blocks. Slice sides are padded with air to multiples of 16.

Calcium window (``LevelArch.calcium_window``): a second input channel maps 100..500 HU linearly to 0..1
(:func:`cacflow.models.regression.calcium_window_channel`), so the density bounds 130 / 200 / 300 / 400 HU fall
at 0.075 / 0.25 / 0.5 / 0.75 instead of within 0.3 of the first channel's 0..3 range. Checkpoints without the
entry read one channel.

Normalisation: a level is a band of absolute HU, and a normalisation over each slice's own statistics (SegResNet's
default group norm) hands the layers after it only relative intensities; ``norm="batch"`` (the training default)
keeps the absolute scale. Checkpoints without a ``norm`` entry use the backbone's default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cacflow.models.lesion_filter import LesionFilter
from cacflow.models.regression import calcium_window_channel, normalise_hu
from cacflow.models.segmentation import SliceLabeller
from cacflow.scoring.robust_agatston import N_LEVELS

BACKBONES: tuple[str, ...] = ("segresnet",)
KIND = "calcium_levels"


def build_level_net(backbone: str, channels: tuple[int, ...], norm: str | None = None, in_channels: int = 1
                    ) -> nn.Module:
    """A 2-D network with ``in_channels`` input channels (1, or 2 with the calcium window) and :data:`N_LEVELS`
    outputs; ``channels[0]`` is SegResNet's initial filters (the run records five widths, one per encoder level);
    ``norm`` "batch" or "instance", None for the backbone's own (group normalisation)."""
    from monai.networks.nets import SegResNet

    if backbone not in BACKBONES:
        raise ValueError(f"unknown calcification level backbone {backbone!r}; use one of {BACKBONES}")
    if norm not in (None, "batch", "instance"):
        raise ValueError(f"normalisation {norm!r} is not available for the {backbone} level backbone; use 'batch' "
                         "or none (the backbone's default)")
    extra = {} if norm is None else {"norm": (norm, {"affine": True})}
    return SegResNet(spatial_dims=2, in_channels=in_channels, out_channels=N_LEVELS, init_filters=int(channels[0]),
                     blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), **extra)


def slices_to_input(hu: np.ndarray, calcium_window: bool = False) -> torch.Tensor:
    """HU slices (n, h, w) -> network input (n, 1, h, w): normalised HU; with ``calcium_window`` (n, 2, h, w), the
    second channel (HU - 100) / 400 clipped to 0..1 (:func:`cacflow.models.regression.calcium_window_channel`)."""
    t = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))
    channels = [normalise_hu(t)]
    if calcium_window:
        channels.append(calcium_window_channel(t))
    return torch.stack(channels, dim=1)


@dataclass(frozen=True)
class LevelArch:
    """What a level checkpoint needs to rebuild its network."""

    backbone: str
    channels: tuple[int, ...]
    norm: str | None = None  # None: the backbone's default normalisation
    calcium_window: bool = False  # a second input channel, 100..500 HU -> 0..1


class LevelPredictor(SliceLabeller):
    """A calcification level checkpoint: level maps 0..4 of slices of any kernel.

    A ``lesion_filter`` (:mod:`cacflow.models.lesion_filter`, fitted on the network's own training lesions; older
    checkpoints have none) sets to level 0 the lesions (3-D components of level >= 1) it judges non-coronary."""

    kind = KIND

    def __init__(self, net: nn.Module, arch, card: dict, device: torch.device, batch_size: int = 16,
                 lesion_filter: LesionFilter | None = None) -> None:
        super().__init__(net, arch, card, device, batch_size)
        self.lesion_filter = lesion_filter

    @staticmethod
    def options(payload: dict) -> dict:
        return {"lesion_filter": LesionFilter.from_payload(payload["lesion_filter"])} if "lesion_filter" in payload \
            else {}

    @staticmethod
    def read_arch(arch: dict) -> LevelArch:
        if arch.get("full_resolution"):  # checkpoints of a removed option (docs/decisions/unadopted-options.md)
            raise ValueError("a full-resolution level network (unet backbone) is no longer supported")
        return LevelArch(arch["backbone"], tuple(arch["channels"]), arch.get("norm"),
                         bool(arch.get("calcium_window", False)))

    @staticmethod
    def build(arch: LevelArch) -> nn.Module:
        return build_level_net(arch.backbone, arch.channels, arch.norm, 2 if arch.calcium_window else 1)

    def encode(self, hu: np.ndarray, z: np.ndarray, depth: int, box_hw: tuple[int, int]) -> torch.Tensor:
        return slices_to_input(hu, self.arch.calcium_window)

    def level_outputs(self, hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Argmax levels (uint8, same shape) of a HU block (z, y, x) and the network's calcium probability
        (1 - P(level 0)) at its voxels of level >= 1 (``np.nonzero`` order)."""
        levels = np.zeros(hu.shape, dtype=np.uint8)
        probability = [np.zeros(0, np.float32)]
        for i, y in self.slice_scores(hu):  # reduced on the model's device; only levels and probabilities move
            block = y.argmax(dim=1)
            levels[i:i + len(y)] = block.to(torch.uint8).cpu().numpy()
            probability.append((1.0 - torch.softmax(y, dim=1)[:, 0][block > 0]).cpu().numpy())
        return levels, np.concatenate(probability)

    def filter_levels(self, levels: np.ndarray, calcium_probability: np.ndarray, threshold: float | None = None
                      ) -> np.ndarray:
        """``levels`` with the lesions the lesion filter rejects set to 0 (at ``threshold`` instead of its own when
        given; ``math.inf`` keeps every lesion); unchanged without a filter."""
        if self.lesion_filter is None:
            return levels
        kept = self.lesion_filter.kept_calcium(levels > 0, calcium_probability, threshold)
        return np.where(kept, levels, 0).astype(np.uint8)

    def predict_block(self, hu: np.ndarray) -> np.ndarray:
        """Levels of a heart-box block (z, y, x) after the lesion filter."""
        return self.filter_levels(*self.level_outputs(hu))
