"""The 3D patch U-Net calcium segmenter (seed 004): overlapping 48 x 48 x 32 patches inside the heart box.

Input: the scoring grid (z, y, x order; 3 mm slabs every 1.5 mm) inside the heart box, one channel of normalised HU
(:func:`cacflow.models.regression.normalise_hu`). The network (MONAI :class:`~monai.networks.nets.UNet`, 3-D,
residual units) sees patches of :data:`PATCH_ZYX` voxels (32 slices of 48 x 48 pixels, the seed's cubes) and gives
a coronary calcium probability per voxel. Whole boxes are predicted by MONAI's sliding-window inference: patches
overlap by :data:`OVERLAP` of their size and are stitched with Gaussian weights. The stitched probability is
thresholded at :data:`THRESHOLD` (the seed's 0.95) and gated at 130 HU; the binary map is scored as one coronary
mask (no vessels) by the scoring library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cacflow.models.checkpoint import load_checkpoint, model_id
from cacflow.models.regression import normalise_hu
from cacflow.models.segmentation import CALCIUM_HU, label_box

KIND = "patch_unet3d"
#: Patch size (z, y, x) in voxels: the seed's 48 x 48 x 32 cubes, 32 along z.
PATCH_ZYX = (32, 48, 48)
#: Share of a patch that overlaps its neighbour in sliding-window inference.
OVERLAP = 0.5
#: Probability above which a voxel is calcium (seed 004).
THRESHOLD = 0.95


def build_patch_net(channels: tuple[int, ...]) -> nn.Module:
    """A 3-D U-Net, 1 input channel, 1 output (calcium logit); ``channels`` per level (2 x down-samplings between)."""
    from monai.networks.nets import UNet

    channels = tuple(int(c) for c in channels)
    return UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=channels,
                strides=(2,) * (len(channels) - 1), num_res_units=1)


def volume_to_input(hu: np.ndarray) -> torch.Tensor:
    """HU volume (z, y, x) -> network input (1, 1, z, y, x)."""
    return normalise_hu(torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32)))[None, None]


@dataclass(frozen=True)
class PatchArch:
    """What a 3D patch U-Net checkpoint needs to rebuild its network."""

    channels: tuple[int, ...]


class PatchSegmenter:
    """A 3D patch U-Net checkpoint, loaded once and called for scan after scan: binary coronary calcium maps."""

    kind = KIND

    def __init__(self, net: nn.Module, arch: PatchArch, card: dict, device: torch.device, batch_size: int = 8,
                 threshold: float = THRESHOLD, overlap: float = OVERLAP) -> None:
        self.net = net.to(device).eval()
        self.arch, self.card, self.device, self.batch_size = arch, card, device, batch_size
        self.threshold, self.overlap = threshold, overlap
        self.id = model_id(card)

    @classmethod
    def load(cls, directory: Path, device: torch.device, batch_size: int = 8) -> "PatchSegmenter":
        payload, card = load_checkpoint(directory, KIND)
        arch = PatchArch(tuple(payload["arch"]["channels"]))
        net = build_patch_net(arch.channels)
        net.load_state_dict(payload["state"])
        return cls(net, arch, card, device, batch_size, float(payload.get("threshold", THRESHOLD)))

    @torch.inference_mode()
    def probabilities(self, hu: np.ndarray) -> np.ndarray:
        """Stitched calcium probability (z, y, x) float32 of a HU block of any size (padded with air to a patch)."""
        from monai.inferers import sliding_window_inference

        shape = hu.shape
        need = [max(s, p) for s, p in zip(shape, PATCH_ZYX)]
        if list(shape) != need:
            padded = np.full(need, -1000, dtype=hu.dtype)
            padded[:shape[0], :shape[1], :shape[2]] = hu
            hu = padded
        x = volume_to_input(hu).to(self.device)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else torch.no_grad()
        with ctx:
            y = sliding_window_inference(x, PATCH_ZYX, self.batch_size, self.net, overlap=self.overlap,
                                         mode="gaussian")
        prob = torch.sigmoid(y.float())[0, 0].cpu().numpy()
        return prob[:shape[0], :shape[1], :shape[2]]

    def predict_block(self, hu: np.ndarray) -> np.ndarray:
        """Binary calcium labels (z, y, x) uint8 of a HU block: probability > threshold and HU >= 130."""
        if hu.size == 0:
            return np.zeros(hu.shape, np.uint8)
        return ((self.probabilities(hu) > self.threshold) & (hu >= CALCIUM_HU)).astype(np.uint8)

    def predict_box(self, hu: np.ndarray, box_zyx: tuple[int, int, int, int, int, int]) -> np.ndarray:
        """Labels on the whole grid (z, y, x; uint8, 1 coronary calcium, 0 elsewhere and outside the heart box)."""
        return label_box(hu, box_zyx, self.predict_block)
