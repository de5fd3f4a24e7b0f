"""Vessel-specific calcium segmentation ConvNets on axial slices (seed 001: U-Net++ with vessel labels).

Input: an axial slice of the scoring grid (z, y, x order; 3 mm slabs every 1.5 mm) cropped in-plane to the heart
box, as two channels: the HU image (normalised as the regressor does, :func:`normalise_hu`) and the binary image
of voxels at or above the calcium threshold (130 HU). Output: per-pixel scores of five classes, background and the
coronary labels of :data:`cacflow.scoring.scan.VESSELS` (1 LM, 2 LAD, 3 CX, 4 RCA). The predicted label map is
gated at the threshold (a pixel below 130 HU is never calcium) and scored by the one scoring library, whose
convention drops 2-D components under 1 mm² (``min_area_mm2``).

Box position (``SegmentationArch.position``): three more input channels give each pixel its place in the heart box,
along z, y and x, from -1 at the box's first voxel edge to +1 at its last
(:func:`~cacflow.models.box_position.position_channels`). The seed's network reads whole 512 x 512 slices and so sees
where in the chest a calcification lies; ours reads the heart box (and is trained on windows of it), where an axial
slice of the near-round heart does not by itself say whether a lesion on its border sits in the left or right
atrioventricular groove, nor whether a slice lies at the level of the left main. The box position restores that
anatomical context: the five-channel variant is a documented departure from the seed's two channels, and checkpoints
without it still load as two-channel nets.

Architectures (MONAI): ``unetpp`` is :class:`monai.networks.nets.BasicUNetPlusPlus` (nested dense skip paths),
``unet`` the plain :class:`monai.networks.nets.BasicUNet` of the same depth (four down-samplings) and widths, the
seed's comparison. Both take any slice size divisible by 16; :func:`pad_to` pads with air.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cacflow.models.box_position import position_channels
from cacflow.models.checkpoint import load_checkpoint, model_id
from cacflow.models.lesion_filter import LesionFilter
from cacflow.models.regression import normalise_hu
from cacflow.models.vessel_prior import VesselPrior, assign_vessels

#: Lowest HU of calcium (Agatston): the second input channel and the gate on predicted masks.
CALCIUM_HU = 130.0
#: Output classes: background, then the vessel codes 1..4.
N_CLASSES = 5
ARCHITECTURES: tuple[str, ...] = ("unetpp", "unet")
#: Normalisation layers of the vessel networks.
NORMS: tuple[str, ...] = ("instance", "batch")
#: Slice sides must be multiples of this (four 2 x 2 down-samplings).
DIVISOR = 16


def build_vessel_net(arch: str, features: tuple[int, ...], position: bool = False, norm: str = "instance"
                     ) -> nn.Module:
    """A 2-D network with 2 input channels (5 with the box ``position``) and :data:`N_CLASSES` outputs;
    ``features`` are MONAI's six widths; ``norm`` "instance" (MONAI's default) or "batch".

    Instance normalisation subtracts each feature map's mean over the slice, so it erases exactly what the
    box-position channels carry (a window's offset in the box); position models use batch normalisation."""
    from monai.networks.nets import BasicUNet, BasicUNetPlusPlus  # MONAI import costs ~1 s: only when needed

    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r} for a vessel segmentation network; use one of {NORMS}")
    channels = 2 + (3 if position else 0)
    layer_norm = (norm, {"affine": True})
    if arch == "unetpp":
        return BasicUNetPlusPlus(spatial_dims=2, in_channels=channels, out_channels=N_CLASSES,
                                 features=tuple(features), deep_supervision=False, norm=layer_norm)
    if arch == "unet":
        return BasicUNet(spatial_dims=2, in_channels=channels, out_channels=N_CLASSES, features=tuple(features),
                         norm=layer_norm)
    raise ValueError(f"unknown vessel segmentation architecture {arch!r}; use one of {ARCHITECTURES}")


def logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class scores (n, 5, h, w); BasicUNetPlusPlus returns a list of outputs, the last is the full one."""
    out = net(x)
    return out[-1] if isinstance(out, (list, tuple)) else out


def slices_to_input(hu: np.ndarray, position: torch.Tensor | None = None) -> torch.Tensor:
    """HU slices (n, h, w) -> network input (n, 2, h, w): normalised HU and the >= 130 HU binary image, followed by
    the box-position channels (n, 3, h, w) of :func:`~cacflow.models.box_position.position_channels` when given
    (n, 5, h, w)."""
    t = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))
    x = torch.stack([normalise_hu(t), (t >= CALCIUM_HU).float()], dim=1)
    return x if position is None else torch.cat([x, position], dim=1)


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
    position: bool = False  # three box-position channels after the two image channels
    norm: str = "instance"  # older checkpoints have no entry: MONAI's instance normalisation


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
    def load(cls, directory: Path, device: torch.device, batch_size: int | None = None) -> BoxLabeller:
        """The checkpoint in ``directory`` (refused unless its card is of this class's kind)."""
        payload, card = load_checkpoint(directory, cls.kind)
        return cls.load_payload(payload, card, device, batch_size)

    @classmethod
    def load_payload(cls, payload: dict, card: dict, device: torch.device, batch_size: int | None = None
                     ) -> BoxLabeller:
        """The scorer of a checkpoint payload (architecture, weights, options) and its card."""
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

    def predict_in_box(self, hu: np.ndarray, box_zyx: tuple[int, int, int, int, int, int]
                       ) -> tuple[np.ndarray, tuple[int, int, int, int, int, int]]:
        """The labels of :meth:`predict_box` inside the heart box only, and that box clipped to the grid
        (:func:`label_block`): what the infer stage stores, without building the whole grid."""
        return label_block(hu, box_zyx, self.predict_block)


class SliceLabeller(BoxLabeller):
    """A network that labels every pixel of each axial slice on its own.

    Subclasses say how HU slices become the network input (:meth:`encode`) and what happens to the argmax labels
    (:meth:`finish`).
    """

    @abstractmethod
    def encode(self, hu: np.ndarray, z: np.ndarray, depth: int, box_hw: tuple[int, int]) -> torch.Tensor:
        """HU slices (n, h, w), padded, -> network input (n, c, h, w); ``z`` are their indices in the block of
        ``depth`` slices predicted, ``box_hw`` the block's in-plane size before padding (for models that use the
        slices' place in the box)."""

    def finish(self, labels: np.ndarray, hu: np.ndarray) -> np.ndarray:
        """Post-processing of the argmax labels (n, h, w) of HU slices ``hu``; none by default."""
        return labels

    @torch.inference_mode()
    def slice_scores(self, hu: np.ndarray) -> Iterator[tuple[int, torch.Tensor]]:
        """(first slice index, float32 class scores (k, C, h, w) on the model's device) of consecutive batches of HU
        slices (n, h, w) of any size (padded internally, cropped back). Callers reduce the scores (argmax, the
        gated voxels) on the device and move only the result to the CPU: on a GPU node, the full class scores'
        copy and a CPU argmax over them cost more than the network."""
        padded, (h, w) = pad_to(hu)
        for i in range(0, len(padded), self.batch_size):
            chunk = padded[i:i + self.batch_size]
            x = self._place(self.encode(chunk, np.arange(i, i + len(chunk)), len(padded), (h, w)))
            with self._precision():
                y = logits(self.net, x)
            yield i, y.float()[:, :, :h, :w]

    def predict_slices(self, hu: np.ndarray) -> np.ndarray:
        """Labels (n, h, w) uint8 of HU slices (n, h, w) of any size."""
        out = [y.argmax(dim=1).to(torch.uint8).cpu().numpy() for _, y in self.slice_scores(hu)]
        labels = np.concatenate(out) if out else np.zeros(hu.shape, np.uint8)
        return self.finish(labels, hu)

    def predict_block(self, hu: np.ndarray) -> np.ndarray:
        return self.predict_slices(hu)


def select_calcium(gated: np.ndarray, log_probs: np.ndarray, calcium_probability: float | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The calcium among gated voxels: those whose argmax class is not background or, when
    ``calcium_probability`` c is given, whose calcium probability 1 - P(background) is at least c.

    A network trained with the focal loss (seed 001: α 0.5, γ 3) gives soft probabilities: voxels of true plaques
    often end with P(background) just above one half, which the argmax alone drops; c below one half keeps them
    (the lesion filter then removes the low-probability specks this admits).

    Args:
        gated: bool mask (z, y, x) of the voxels at or above 130 HU.
        log_probs: (m, 5) class log-probabilities at ``gated``'s voxels, ``np.nonzero`` order.
        calcium_probability: c in (0, 1), or None for the argmax alone.

    Returns:
        (calcium mask (z, y, x), log-probabilities (k, 5) at its voxels, ``np.nonzero`` order).
    """
    chosen = log_probs.argmax(axis=1) > 0
    if calcium_probability is not None:
        chosen |= (1.0 - np.exp(log_probs[:, 0])) >= calcium_probability
    calcium = np.zeros(gated.shape, dtype=bool)
    calcium.flat[np.flatnonzero(gated)[chosen]] = True
    return calcium, log_probs[chosen]


def label_block(hu: np.ndarray, box_zyx: tuple[int, int, int, int, int, int], predict
                ) -> tuple[np.ndarray, tuple[int, int, int, int, int, int]]:
    """``predict(block)`` (uint8 labels) of the HU block of ``hu`` (z, y, x) inside the box (z0, z1, y0, y1, x0, x1;
    voxel indices, end exclusive; zeros for an empty box), and the box clipped to the grid, which that block fills."""
    z0, z1, y0, y1, x0, x1 = box_zyx
    block = hu[z0:z1, y0:y1, x0:x1]
    box = (z0, z0 + block.shape[0], y0, y0 + block.shape[1], x0, x0 + block.shape[2])
    labels = predict(block) if block.size else np.zeros(block.shape, dtype=np.uint8)
    return np.asarray(labels, dtype=np.uint8), box


def label_box(hu: np.ndarray, box_zyx: tuple[int, int, int, int, int, int], predict) -> np.ndarray:
    """Labels (uint8) on the whole grid of ``hu`` (z, y, x): :func:`label_block` inside the box, 0 outside it."""
    block, (z0, z1, y0, y1, x0, x1) = label_block(hu, box_zyx, predict)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[z0:z1, y0:y1, x0:x1] = block
    return labels


KIND = "vessel_segmentation"


class VesselSegmenter(SliceLabeller):
    """A vessel segmentation checkpoint: gated vessel labels (0 background, 1-4 :data:`VESSELS` codes).

    The network decides which voxels are calcium (gated at 130 HU): its argmax is not background or, when the
    checkpoint has a ``calcium_probability`` c (chosen on the validation scans), its calcium probability
    1 - P(background) is at least c (:func:`select_calcium`). A ``lesion_filter``
    (:mod:`cacflow.models.lesion_filter`, fitted on the network's own training lesions) then removes the lesions it
    judges non-coronary. With a vessel ``prior`` (fitted on the training labels) each remaining 3-D lesion takes
    one vessel from the network's vessel scores and the prior (:func:`cacflow.models.vessel_prior.assign_vessels`);
    without one, each voxel keeps its argmax vessel. Checkpoints without either behave as before."""

    kind = KIND

    def __init__(self, net: nn.Module, arch, card: dict, device: torch.device, batch_size: int = 16,
                 prior: VesselPrior | None = None, lesion_filter: LesionFilter | None = None,
                 calcium_probability: float | None = None) -> None:
        super().__init__(net, arch, card, device, batch_size)
        self.prior, self.lesion_filter = prior, lesion_filter
        self.calcium_probability = calcium_probability

    @staticmethod
    def options(payload: dict) -> dict:
        out = {}
        if "vessel_prior" in payload:
            out["prior"] = VesselPrior.from_payload(payload["vessel_prior"])
        if "lesion_filter" in payload:
            out["lesion_filter"] = LesionFilter.from_payload(payload["lesion_filter"])
        if payload.get("calcium_probability") is not None:
            out["calcium_probability"] = float(payload["calcium_probability"])
        return out

    @staticmethod
    def read_arch(arch: dict) -> SegmentationArch:
        return SegmentationArch(arch["arch"], tuple(arch["features"]), bool(arch.get("position", False)),
                                arch.get("norm", "instance"))

    @staticmethod
    def build(arch: SegmentationArch) -> nn.Module:
        return build_vessel_net(arch.arch, arch.features, arch.position, arch.norm)

    def encode(self, hu: np.ndarray, z: np.ndarray, depth: int, box_hw: tuple[int, int]) -> torch.Tensor:
        position = position_channels(z, depth, (0, 0), hu.shape[1:], box_hw) if self.arch.position else None
        return slices_to_input(hu, position)

    def finish(self, labels: np.ndarray, hu: np.ndarray) -> np.ndarray:
        return gate(labels, hu)

    def gated_outputs(self, hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's view of every voxel of a heart-box block (z, y, x) at or above :data:`CALCIUM_HU`: that
        mask (bool) and the log-probabilities (m, 5) of the five classes at its voxels, ``np.nonzero`` order."""
        gated = hu >= CALCIUM_HU
        log_probs = []
        for i, y in self.slice_scores(hu):
            mask = torch.from_numpy(gated[i:i + len(y)]).to(y.device)
            picked = y.permute(0, 2, 3, 1)[mask]  # (m, C), nonzero order
            log_probs.append(torch.log_softmax(picked, dim=1).cpu().numpy())
        return gated, (np.concatenate(log_probs) if log_probs else np.zeros((0, N_CLASSES), np.float32))

    def calcium_outputs(self, hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's calcium of a heart-box block (z, y, x) (:func:`select_calcium` of :meth:`gated_outputs`
        at the checkpoint's calcium probability): the mask (bool) and the log-probabilities (m, 5) at its voxels,
        ``np.nonzero`` order."""
        return select_calcium(*self.gated_outputs(hu), self.calcium_probability)

    def label_calcium(self, calcium: np.ndarray, log_probs: np.ndarray, threshold: float | None = None
                      ) -> np.ndarray:
        """Vessel labels (uint8 (z, y, x)) of the network's calcium (:meth:`calcium_outputs`).

        The lesion filter, when the checkpoint has one, first removes the lesions it rejects (at ``threshold``
        instead of its own when given; ``math.inf`` keeps every lesion); each remaining lesion takes its vessel from
        the prior when there is one, otherwise each voxel keeps its argmax vessel."""
        if self.lesion_filter is not None:
            kept = self.lesion_filter.kept_calcium(calcium, 1.0 - np.exp(log_probs[:, 0]), threshold)
            log_probs = log_probs[kept[np.nonzero(calcium)]]
            calcium = kept
        if self.prior is not None:
            return assign_vessels(calcium, log_probs[:, 1:], self.prior)
        labels = np.zeros(calcium.shape, dtype=np.uint8)
        labels[calcium] = log_probs[:, 1:].argmax(axis=1) + 1
        return labels

    def predict_block(self, hu: np.ndarray) -> np.ndarray:
        """Gated labels of a heart-box block (z, y, x): the network's calcium, the lesion filter, the vessels."""
        return self.label_calcium(*self.calcium_outputs(hu))
