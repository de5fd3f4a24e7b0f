"""Vessel-specific calcium segmentation ConvNets on axial slices (seed 001: U-Net++ with vessel labels).

Input: an axial slice of the scoring grid (z, y, x order; 3 mm slabs every 1.5 mm) cropped in-plane to the heart
box, as two channels: the HU image (normalised as the regressor does, :func:`normalise_hu`) and the binary image
of voxels at or above the calcium threshold (130 HU). Output: per-pixel scores of five classes, background and the
coronary labels of :data:`cacflow.scoring.scan.VESSELS` (1 LM, 2 LAD, 3 CX, 4 RCA). The predicted label map is
gated at the threshold (a pixel below 130 HU is never calcium) and scored by the one scoring library, whose
convention drops 2-D components under 1 mm² (``min_area_mm2``).

Architectures (MONAI): ``unetpp`` is :class:`monai.networks.nets.BasicUNetPlusPlus` (nested dense skip paths),
``unet`` the plain :class:`monai.networks.nets.BasicUNet` of the same depth (four down-samplings) and widths, the
seed's comparison. Both take any slice size divisible by 16; :func:`pad_to` pads with air.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cacflow.models.checkpoint import load_checkpoint, model_id
from cacflow.models.regression import normalise_hu

#: Lowest HU of calcium (Agatston): the second input channel and the gate on predicted masks.
CALCIUM_HU = 130.0
#: Output classes: background, then the vessel codes 1..4.
N_CLASSES = 5
ARCHITECTURES: tuple[str, ...] = ("unetpp", "unet")
#: Slice sides must be multiples of this (four 2 x 2 down-samplings).
DIVISOR = 16


def build_vessel_net(arch: str, features: tuple[int, ...]) -> nn.Module:
    """A 2-D network with 2 input channels and :data:`N_CLASSES` outputs; ``features`` are MONAI's six widths."""
    from monai.networks.nets import BasicUNet, BasicUNetPlusPlus  # MONAI import costs ~1 s: only when needed

    if arch == "unetpp":
        return BasicUNetPlusPlus(spatial_dims=2, in_channels=2, out_channels=N_CLASSES, features=tuple(features),
                                 deep_supervision=False)
    if arch == "unet":
        return BasicUNet(spatial_dims=2, in_channels=2, out_channels=N_CLASSES, features=tuple(features))
    raise ValueError(f"unknown vessel segmentation architecture {arch!r}; use one of {ARCHITECTURES}")


def logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class scores (n, 5, h, w); BasicUNetPlusPlus returns a list of outputs, the last is the full one."""
    out = net(x)
    return out[-1] if isinstance(out, (list, tuple)) else out


def slices_to_input(hu: np.ndarray) -> torch.Tensor:
    """HU slices (n, h, w) -> network input (n, 2, h, w): normalised HU and the >= 130 HU binary image."""
    t = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))
    return torch.stack([normalise_hu(t), (t >= CALCIUM_HU).float()], dim=1)


def pad_to(hu: np.ndarray, divisor: int = DIVISOR) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad slices (n, h, w) at the bottom/right with air (-1000 HU) to sides divisible by ``divisor``;
    returns the padded array and the original (h, w)."""
    n, h, w = hu.shape
    H, W = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    if (H, W) == (h, w):
        return hu, (h, w)
    out = np.full((n, H, W), -1000, dtype=hu.dtype)
    out[:, :h, :w] = hu
    return out, (h, w)


def gate(labels: np.ndarray, hu: np.ndarray) -> np.ndarray:
    """Labels with every pixel below :data:`CALCIUM_HU` set to background (uint8)."""
    return np.where(hu >= CALCIUM_HU, labels, 0).astype(np.uint8)


@dataclass(frozen=True)
class SegmentationArch:
    """What a vessel segmentation checkpoint needs to rebuild its network."""

    arch: str
    features: tuple[int, ...]


class BoxLabeller(ABC):
    """A segmentation checkpoint loaded once and called for scan after scan: a label map inside each heart box.

    Subclasses name their ``kind`` (the model card's), how the payload's ``arch`` rebuilds the network
    (:meth:`read_arch`, :meth:`build`) and how a HU block becomes labels (:meth:`predict_block`). CUDA runs under
    bf16 autocast; the CPU in float32 (``channels_last`` for 2-D networks).
    """

    kind: str
    #: 2-D networks run ``channels_last`` on the CPU; 3-D ones do not support it.
    channels_last: bool = True

    def __init__(self, net: nn.Module, arch, card: dict, device: torch.device, batch_size: int = 16) -> None:
        self.net = net.to(device).eval()
        if device.type == "cpu" and self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.arch, self.card, self.device, self.batch_size = arch, card, device, batch_size
        self.id = model_id(card)

    @classmethod
    def load(cls, directory: Path, device: torch.device, batch_size: int | None = None) -> "BoxLabeller":
        """The checkpoint in ``directory`` (refused unless its card is of this class's kind)."""
        payload, card = load_checkpoint(directory, cls.kind)
        arch = cls.read_arch(payload["arch"])
        net = cls.build(arch)
        net.load_state_dict(payload["state"])
        size = {} if batch_size is None else {"batch_size": batch_size}
        return cls(net, arch, card, device, **size, **cls.options(payload))

    @staticmethod
    @abstractmethod
    def read_arch(arch: dict):
        """The architecture record of a payload's ``arch`` entry."""

    @staticmethod
    @abstractmethod
    def build(arch) -> nn.Module:
        """An untrained network of that architecture."""

    @staticmethod
    def options(payload: dict) -> dict:
        """Constructor options stored in the payload beside the weights; none by default."""
        return {}

    @abstractmethod
    def predict_block(self, hu: np.ndarray) -> np.ndarray:
        """Labels (uint8, same shape) of a HU block (z, y, x) cut from the scoring grid."""

    def _place(self, x: torch.Tensor) -> torch.Tensor:
        """A CPU batch on the model's device (``channels_last`` on the CPU for 4-D batches)."""
        x = x.to(self.device)
        if self.device.type == "cpu" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _precision(self):
        """bf16 autocast on CUDA; float32 on the CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()

    def predict_box(self, hu: np.ndarray, box_zyx: tuple[int, int, int, int, int, int]) -> np.ndarray:
        """Labels on the whole grid (z, y, x; uint8, 0 outside the heart box)."""
        return label_box(hu, box_zyx, self.predict_block)


class SliceLabeller(BoxLabeller):
    """A network that labels every pixel of each axial slice on its own.

    Subclasses say how HU slices become the network input (:meth:`encode`) and what happens to the argmax labels
    (:meth:`finish`).
    """

    @abstractmethod
    def encode(self, hu: np.ndarray) -> torch.Tensor:
        """HU slices (n, h, w) -> network input (n, c, h, w)."""

    def finish(self, labels: np.ndarray, hu: np.ndarray) -> np.ndarray:
        """Post-processing of the argmax labels (n, h, w) of HU slices ``hu``; none by default."""
        return labels

    @torch.inference_mode()
    def predict_slices(self, hu: np.ndarray) -> np.ndarray:
        """Labels (n, h, w) uint8 of HU slices (n, h, w) of any size (padded internally)."""
        padded, (h, w) = pad_to(hu)
        out = []
        for i in range(0, len(padded), self.batch_size):
            x = self._place(self.encode(padded[i:i + self.batch_size]))
            with self._precision():
                y = logits(self.net, x)
            out.append(y.float().argmax(dim=1).to(torch.uint8).cpu().numpy())
        labels = np.concatenate(out)[:, :h, :w] if out else np.zeros((0, h, w), np.uint8)
        return self.finish(labels, hu)

    def predict_block(self, hu: np.ndarray) -> np.ndarray:
        return self.predict_slices(hu)


def label_box(hu: np.ndarray, box_zyx: tuple[int, int, int, int, int, int], predict) -> np.ndarray:
    """Labels (uint8) on the whole grid of ``hu`` (z, y, x): ``predict(block)`` of the box's HU block inside the box
    (z0, z1, y0, y1, x0, x1; voxel indices, end exclusive), 0 outside it."""
    z0, z1, y0, y1, x0, x1 = box_zyx
    labels = np.zeros(hu.shape, dtype=np.uint8)
    if z1 > z0 and y1 > y0 and x1 > x0:
        labels[z0:z1, y0:y1, x0:x1] = predict(hu[z0:z1, y0:y1, x0:x1])
    return labels


KIND = "vessel_segmentation"


class VesselSegmenter(SliceLabeller):
    """A vessel segmentation checkpoint: gated vessel labels (0 background, 1-4 :data:`VESSELS` codes)."""

    kind = KIND

    @staticmethod
    def read_arch(arch: dict) -> SegmentationArch:
        return SegmentationArch(arch["arch"], tuple(arch["features"]))

    @staticmethod
    def build(arch: SegmentationArch) -> nn.Module:
        return build_vessel_net(arch.arch, arch.features)

    def encode(self, hu: np.ndarray) -> torch.Tensor:
        return slices_to_input(hu)

    def finish(self, labels: np.ndarray, hu: np.ndarray) -> np.ndarray:
        return gate(labels, hu)
