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

import numpy as np
import torch
from torch import nn

from cacflow.models.regression import normalise_hu
from cacflow.models.segmentation import CALCIUM_HU, BoxLabeller

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


class PatchSegmenter(BoxLabeller):
    """A 3D patch U-Net checkpoint, loaded once and called for scan after scan: binary coronary calcium maps."""

    kind = KIND
    channels_last = False

    def __init__(self, net: nn.Module, arch: PatchArch, card: dict, device: torch.device, batch_size: int = 8,
                 threshold: float = THRESHOLD, overlap: float = OVERLAP) -> None:
        super().__init__(net, arch, card, device, batch_size)
        self.threshold, self.overlap = threshold, overlap

    @staticmethod
    def read_arch(arch: dict) -> PatchArch:
        return PatchArch(tuple(arch["channels"]))

    @staticmethod
    def build(arch: PatchArch) -> nn.Module:
        return build_patch_net(arch.channels)

    @staticmethod
    def options(payload: dict) -> dict:
        return {"threshold": float(payload.get("threshold", THRESHOLD))}

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
        with self._precision():
            y = sliding_window_inference(x, PATCH_ZYX, self.batch_size, self.net, overlap=self.overlap,
                                         mode="gaussian")
        prob = torch.sigmoid(y.float())[0, 0].cpu().numpy()
        return prob[:shape[0], :shape[1], :shape[2]]

    def predict_block(self, hu: np.ndarray) -> np.ndarray:
        """Binary calcium labels (z, y, x) uint8 of a HU block: probability > threshold and HU >= 130."""
        if hu.size == 0:
            return np.zeros(hu.shape, np.uint8)
        return ((self.probabilities(hu) > self.threshold) & (hu >= CALCIUM_HU)).astype(np.uint8)
