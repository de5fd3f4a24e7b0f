"""Where in the heart box each coronary vessel's calcium lies: a smoothed 3-D histogram, P(vessel | box position).

Why: the vessel networks read 96-pixel windows of near-round axial heart slices; even with the box-position input
channels they confuse LM, CX and RCA calcium (an early test confusion: most CX and LM voxels labelled RCA),
while a nearest-neighbour rule on the box position alone names the right vessel for about 90 % of them. The prior
turns that observation into a model fitted on the training labels, and :func:`assign_vessels` uses it to give each
predicted calcium lesion one vessel.

Positions: a voxel's place in the nominal heart box along z, y and x, from -1 at the box's first voxel edge to +1
at its last (:func:`cacflow.models.box_position.axis_position`, rows anterior to posterior, columns right to left of
the patient, LPS). The cube [-1, 1]^3 is cut into ``bins``^3 cells; the reference calcium voxels of the training
boxes are counted per vessel and cell, each vessel's counts are smoothed by a Gaussian of ``sigma_bins`` cells,
and the counts are normalised over the four vessels per cell after adding ``floor`` (so an empty cell is
uninformative, never impossible).

Vessel choice (:func:`assign_vessels`): calcium voxels of one 3-D 26-connected component (one lesion) are given the
vessel ``v`` that maximises ``Σ_voxels [log P_net(v | voxel) + weight · log P(v | position)]`` over the four vessels:
the network's log-probabilities of the vessel classes plus the weighted prior. A lesion therefore carries one vessel,
as a reader labels it. The network alone still decides which voxels are calcium.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from cacflow.models.box_position import axis_position

#: Vessel codes the prior covers (1 LM, 2 LAD, 3 CX, 4 RCA: :data:`cacflow.scoring.scan.VESSELS`).
N_VESSELS = 4
_CONNECTIVITY_3D = np.ones((3, 3, 3), dtype=bool)


def box_positions(index: tuple[np.ndarray, np.ndarray, np.ndarray], box_shape: tuple[int, int, int]) -> np.ndarray:
    """Box positions (m, 3) float32, z, y, x in -1..1, of voxels ``index`` (as from ``np.nonzero``) of a box of
    ``box_shape`` voxels (z, y, x)."""
    return np.stack([axis_position(i, n) for i, n in zip(index, box_shape)], axis=1)


@dataclass(frozen=True)
class VesselPrior:
    """Log P(vessel | position cell) of the four vessels, (4, bins, bins, bins) over z, y, x in [-1, 1]."""

    log_prob: np.ndarray
    weight: float = 1.0  # weight of the prior's log-probability against the network's in :func:`assign_vessels`

    @property
    def bins(self) -> int:
        return int(self.log_prob.shape[1])

    def cells(self, positions: np.ndarray) -> np.ndarray:
        """Cell indices (m, 3) of box positions (m, 3); positions outside [-1, 1] fall in the border cells."""
        return np.clip(((np.asarray(positions) + 1.0) / 2.0 * self.bins).astype(np.int64), 0, self.bins - 1)

    def log_prior(self, positions: np.ndarray) -> np.ndarray:
        """log P(vessel | position) (m, 4) of box positions (m, 3)."""
        c = self.cells(positions)
        return self.log_prob[:, c[:, 0], c[:, 1], c[:, 2]].T

    def to_payload(self) -> dict:
        """Checkpoint entries (tensors and numbers: loadable with ``weights_only``)."""
        return {"log_prob": torch.from_numpy(np.ascontiguousarray(self.log_prob, dtype=np.float32)),
                "weight": float(self.weight)}

    @classmethod
    def from_payload(cls, entry: dict) -> VesselPrior:
        return cls(entry["log_prob"].numpy().astype(np.float32), float(entry["weight"]))


def fit_vessel_prior(boxes: Iterable[np.ndarray], bins: int = 12, sigma_bins: float = 1.0, floor: float = 1e-3,
                     weight: float = 1.0) -> VesselPrior:
    """Fit the prior on reference vessel label maps (uint8, 0 background, 1..4 vessels) of nominal heart boxes
    (z, y, x; the box's voxels only, so the first and last voxel of each axis sit at its edges). Without any
    labelled voxel the prior is uniform: the network's vessel scores alone choose."""
    counts = np.zeros((N_VESSELS, bins, bins, bins), dtype=np.float64)
    empty = VesselPrior(np.zeros((N_VESSELS, bins, bins, bins), np.float32))
    for labels in boxes:
        index = np.nonzero(labels)
        if not len(index[0]):
            continue
        c = empty.cells(box_positions(index, labels.shape))
        np.add.at(counts, (labels[index].astype(np.int64) - 1, c[:, 0], c[:, 1], c[:, 2]), 1.0)
    smooth = np.stack([ndimage.gaussian_filter(c, sigma_bins, mode="nearest") for c in counts]) + floor
    return VesselPrior(np.log(smooth / smooth.sum(axis=0, keepdims=True)).astype(np.float32), weight)


def assign_vessels(calcium: np.ndarray, vessel_log_prob: np.ndarray, prior: VesselPrior) -> np.ndarray:
    """Vessel labels (uint8 (z, y, x), 0 off calcium) of a box's calcium voxels.

    ``calcium`` is the predicted calcium mask of a nominal heart box (bool (z, y, x)); ``vessel_log_prob`` (m, 4) the
    network's log-probabilities of the four vessels at its voxels in ``np.nonzero`` order. Each 26-connected
    component takes the vessel of the highest summed score (module docstring)."""
    out = np.zeros(calcium.shape, dtype=np.uint8)
    index = np.nonzero(calcium)
    if not len(index[0]):
        return out
    components, n = ndimage.label(calcium, _CONNECTIVITY_3D)
    ids = components[index]
    score = np.asarray(vessel_log_prob, dtype=np.float64) + prior.weight * prior.log_prior(
        box_positions(index, calcium.shape))
    total = np.zeros((n + 1, N_VESSELS))
    np.add.at(total, ids, score)
    out[index] = (total.argmax(axis=1) + 1)[ids]
    return out
