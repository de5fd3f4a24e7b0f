"""Training the 3D patch U-Net calcium segmenter (seed 004).

Data: the labelled series cropped to their pipeline heart boxes (the crops of the other segmentation scorers). A
sample is a :data:`~cacflow.models.patch_unet3d.PATCH_ZYX` block (32 slices of 48 x 48 pixels); a share
``positive_fraction`` is centred (up to a third of the block off) on a reference calcium voxel, the rest fall
anywhere in the crop. Outside the crop the block is air. Target: reference calcium (any vessel label) at or above
130 HU. Loss: MONAI's :class:`~monai.losses.DiceFocalLoss` on the sigmoid output, Dice and focal weighted 0.5
each (seed 004). Model selection by the validation scans' calcium Dice of the thresholded (0.95), stitched
predictions, as the pipeline predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cacflow.models.patch_unet3d import PATCH_ZYX, THRESHOLD, PatchArch, PatchSegmenter, build_patch_net
from cacflow.models.regression import normalise_hu
from cacflow.models.segmentation import CALCIUM_HU
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.training.regressor import CropRecord
from cacflow.training.segmentation import fit_segmenter, slice_weights


@dataclass(frozen=True)
class PatchHyper:
    """Hyper-parameters of a 3D patch U-Net run (recorded in the model card)."""

    channels: tuple[int, ...] = (8, 16, 32, 64)
    batch_size: int = 8  # the shipped run's settings
    learning_rate: float = 2e-3
    max_epochs: int = 40
    patience: int = 10
    samples_per_epoch: int = 1024
    positive_fraction: float = 0.5
    lambda_dice: float = 0.5
    lambda_focal: float = 0.5
    focal_gamma: float = 2.0
    threshold: float = THRESHOLD
    val_series: int = 8
    seed: int = 0


def block(a: np.ndarray, corner: tuple[int, int, int], size: tuple[int, int, int], fill: float) -> np.ndarray:
    """A ``size`` block (z, y, x) of a 3-D array with its first voxel at ``corner`` (may lie outside), ``fill``
    outside the array."""
    out = np.full(size, fill, dtype=a.dtype)
    src, dst = [], []
    for c, s, n in zip(corner, size, a.shape):
        lo, hi = max(0, c), min(n, c + s)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - c, hi - c))
    out[tuple(dst)] = a[tuple(src)]
    return out


def block_corner(rec: CropRecord, rng: np.random.Generator, positive_fraction: float) -> tuple[int, int, int]:
    """First voxel (z, y, x) of a training block: centred near reference calcium or anywhere in the crop."""
    if rng.random() < positive_fraction and len(rec.positive):
        z = int(rng.choice(rec.positive))
        ys, xs = np.nonzero(rec.labels[z])
        k = int(rng.integers(len(ys)))
        centre = (z, int(ys[k]), int(xs[k]))
        return tuple(c - s // 2 + int(rng.integers(-(s // 3), s // 3 + 1)) for c, s in zip(centre, PATCH_ZYX))
    return tuple(int(rng.integers(min(0, n - s), max(1, n - s + 1))) for n, s in zip(rec.hu.shape, PATCH_ZYX))


def sample_block(rec: CropRecord, rng: np.random.Generator, hp: PatchHyper) -> tuple[np.ndarray, np.ndarray]:
    """One (HU block, binary target) pair of :data:`PATCH_ZYX` voxels."""
    corner = block_corner(rec, rng, hp.positive_fraction)
    hu = block(rec.hu, corner, PATCH_ZYX, -1000)
    lab = block(rec.labels, corner, PATCH_ZYX, 0)
    return hu, ((lab > 0) & (hu >= CALCIUM_HU)).astype(np.uint8)


def _batch(records: list[CropRecord], weights: np.ndarray, rng: np.random.Generator, hp: PatchHyper
           ) -> tuple[torch.Tensor, torch.Tensor]:
    hus, targets = zip(*(sample_block(records[int(rng.choice(len(records), p=weights))], rng, hp)
                         for _ in range(hp.batch_size)))
    x = normalise_hu(torch.from_numpy(np.stack(hus).astype(np.float32)))[:, None]
    return x, torch.from_numpy(np.stack(targets).astype(np.float32))[:, None]


def train_patch_net(train: list[CropRecord], val: list[CropRecord], hp: PatchHyper, device: torch.device,
                    rng: np.random.Generator, convention: AgatstonConvention) -> tuple[torch.nn.Module, dict]:
    """Train the 3D patch U-Net; the state of the epoch with the best validation calcium Dice is kept."""
    from monai.losses import DiceFocalLoss

    net = build_patch_net(tuple(hp.channels)).to(device)
    loss_fn = DiceFocalLoss(sigmoid=True, batch=True, gamma=hp.focal_gamma, lambda_dice=hp.lambda_dice,
                            lambda_focal=hp.lambda_focal)
    weights = slice_weights(train)
    card = {"kind": "patch_unet3d", "weights_sha256": "training"}
    return fit_segmenter(net, loss_fn, lambda: _batch(train, weights, rng, hp),
                         lambda n: PatchSegmenter(n, PatchArch(tuple(hp.channels)), card, device,
                                                  threshold=hp.threshold), val, hp, device, convention,
                         "3D patch U-Net")
