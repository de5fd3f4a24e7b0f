"""Direct regression of the Agatston and volume scores per axial slice (seed 003, de Vos et al.).

Axial slices of the scoring grid (3 mm slabs every 1.5 mm) are cropped in-plane to the heart box and zero-padded
to 256 x 256 pixels; a ConvNet of six 3 x 3 convolution layers, each followed by batch normalisation, ELU and
2 x 2 max pooling, then two fully connected layers, regresses the slice's Agatston score and its volume score
(mm³, a second output node). The voxel size (z increment, row and column spacing, mm) is appended to the first
fully connected layer so that areas and volumes can be computed. The scan's score is the sum over its slices.

The network regresses log-transformed targets, ``ln(y + 1)`` (the paper's third experiment): raw targets lost
every comparison on validation (``docs/decisions/regressor-options-not-adopted.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cacflow.models.checkpoint import CheckpointError
from cacflow.models.layers import conv_pool_stack

#: Network input size (pixels); crops larger than this are centre-cropped (recorded in the QC fields).
INPUT_SIZE = 256
#: Outputs, in order.
TARGETS: tuple[str, ...] = ("agatston", "volume_mm3")
#: The target transform, recorded in every regressor checkpoint ("transform") and card ("target_transform").
TARGET_TRANSFORM = "log"


def normalise_hu(hu: torch.Tensor) -> torch.Tensor:
    """HU -> network input: clip to [-1000, 2000] HU and map to [0, 3] (air 0, water 1, 1000 HU 2).

    Zero padding therefore means air; calcium keeps its contrast up to 2000 HU.
    """
    return (hu.clamp(-1000.0, 2000.0) + 1000.0) / 1000.0


#: HU mapped to 0 and 1 by the calcium-window input channel of the level model (clipped outside).
CALCIUM_WINDOW_HU: tuple[float, float] = (100.0, 500.0)


def calcium_window_channel(hu: torch.Tensor) -> torch.Tensor:
    """HU -> the calcium-window channel (the level model's second input, :mod:`cacflow.models.calcium_levels`):
    (HU - 100) / 400 clipped to 0..1 (:data:`CALCIUM_WINDOW_HU`).

    The Agatston density bounds 130 / 200 / 300 / 400 HU fall at 0.075 / 0.25 / 0.5 / 0.75, and everything from
    500 HU up looks alike, as the density weight (4 from 400 HU) does. Air (zero padding) and soft tissue are 0.
    """
    lo, hi = CALCIUM_WINDOW_HU
    return ((hu - lo) / (hi - lo)).clamp(0.0, 1.0)


def check_target_transform(transform: str, where: str) -> None:
    """Refuse a regressor checkpoint whose targets are not :data:`TARGET_TRANSFORM` (``where`` names it).

    Raises:
        CheckpointError: naming ``where`` and the fix.
    """
    if transform != TARGET_TRANSFORM:
        raise CheckpointError(f"{where}: a regressor trained on {transform!r} targets; cacflow reads "
                              f"{TARGET_TRANSFORM!r} targets only (retrain: snakemake train_regressor, init_from: '')")


def encode_targets(y: np.ndarray) -> np.ndarray:
    """Per-slice targets (n, 2) [Agatston, volume mm³] -> what the network regresses: ``ln(1 + y)``."""
    return np.log1p(np.clip(np.asarray(y, dtype=np.float32), 0.0, None))


def decode_outputs(out: np.ndarray) -> np.ndarray:
    """Network outputs (n, 2) -> per-slice [Agatston, volume mm³]: ``exp(out) - 1``, clipped at 0."""
    return np.clip(np.expm1(np.asarray(out, dtype=np.float64)), 0.0, None)


class RegressionNet(nn.Module):
    """Six conv (3 x 3) - BN - ELU - maxpool (2 x 2) blocks on a 256 x 256 slice, then FC - FC - 2 outputs.

    ``forward(x, voxel)``: x (n, 1, 256, 256) normalised HU from :func:`slices_to_input`; voxel (n, 3) voxel size
    in mm (z, y, x).
    """

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 32, 64, 64), hidden: tuple[int, int] = (128, 64)
                 ) -> None:
        super().__init__()
        if len(widths) != 6:
            raise ValueError("the regression ConvNet has six convolution layers")
        self.features = conv_pool_stack(widths, in_channels=1)
        c_in = widths[-1]
        side = INPUT_SIZE // 2**6
        self.fc1 = nn.Linear(c_in * side * side + 3, hidden[0])
        self.bn1 = nn.BatchNorm1d(hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.bn2 = nn.BatchNorm1d(hidden[1])
        self.out = nn.Linear(hidden[1], len(TARGETS))
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor, voxel: torch.Tensor) -> torch.Tensor:
        f = torch.flatten(self.features(x), 1)
        h = self.act(self.bn1(self.fc1(torch.cat([f, voxel.to(f.dtype)], dim=1))))
        h = self.act(self.bn2(self.fc2(h)))
        return self.out(h)


@dataclass(frozen=True)
class Crop:
    """Where the network's slices come from: half-open (z0, z1, y0, y1, x0, x1) on the scoring grid.

    ``truncated`` is True when the box was wider than :data:`INPUT_SIZE` pixels and was centre-cropped.
    """

    box_zyx: tuple[int, int, int, int, int, int]
    truncated: bool


def fit_box(box_zyx: tuple[int, ...], shape_zyx: tuple[int, int, int]) -> Crop:
    """Clip a box to the grid and centre-crop its in-plane extent to :data:`INPUT_SIZE` pixels."""
    z0, z1, y0, y1, x0, x1 = (int(v) for v in box_zyx)
    z0, z1 = max(0, z0), min(shape_zyx[0], z1)
    out, truncated = [z0, z1], False
    for a0, a1, n in ((y0, y1, shape_zyx[1]), (x0, x1, shape_zyx[2])):
        a0, a1 = max(0, a0), min(n, a1)
        if a1 - a0 > INPUT_SIZE:
            c = (a0 + a1) // 2
            a0, a1, truncated = c - INPUT_SIZE // 2, c + INPUT_SIZE // 2, True
        out += [a0, a1]
    return Crop(tuple(out), truncated)  # type: ignore[arg-type]


def slices_to_input(hu: np.ndarray) -> torch.Tensor:
    """HU slices (n, h, w), h, w <= 256 -> (n, 1, 256, 256) network input (:func:`normalise_hu`), the crop centred,
    zero (air) padded."""
    n, h, w = hu.shape
    if h > INPUT_SIZE or w > INPUT_SIZE:
        raise ValueError(f"slices {h} x {w} exceed the {INPUT_SIZE}-pixel input; crop them with fit_box first")
    x = torch.zeros((n, 1, INPUT_SIZE, INPUT_SIZE))
    top, left = (INPUT_SIZE - h) // 2, (INPUT_SIZE - w) // 2
    x[:, 0, top:top + h, left:left + w] = normalise_hu(torch.from_numpy(np.ascontiguousarray(hu)).float())
    return x
