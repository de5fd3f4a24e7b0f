"""A voxel's place in the nominal heart box: the position input channels of the box-aware networks and the
coordinates of the vessel prior (z, y, x order; rows run anterior to posterior, columns right to left of the
patient, LPS; -1 at the box's first voxel edge, +1 at its last)."""

from __future__ import annotations

import numpy as np
import torch


def axis_position(index: np.ndarray, length: int) -> np.ndarray:
    """Place of voxel ``index`` along a box axis of ``length`` voxels: ``2 (index + 0.5) / length - 1``, so the box
    spans -1..1 from its first voxel's outer edge to its last's (float32; beyond ±1 outside the box)."""
    return (2.0 * (np.asarray(index, dtype=np.float32) + 0.5) / max(1, length) - 1.0).astype(np.float32)


def position_channels(z: np.ndarray, depth: int, top_left: tuple[int, int], size_hw: tuple[int, int],
                      box_hw: tuple[int, int]) -> torch.Tensor:
    """Box-position channels (n, 3, h, w) of ``n`` slices: slice indices ``z`` of a box ``depth`` slices deep, and
    an ``size_hw`` window whose top-left pixel is ``top_left`` (row, column) in the coordinates of a box of
    ``box_hw`` pixels (z, y, x order; rows run anterior to posterior, columns right to left of the patient, LPS)."""
    h, w = size_hw
    pz = axis_position(z, depth)
    py = axis_position(np.arange(top_left[0], top_left[0] + h), box_hw[0])
    px = axis_position(np.arange(top_left[1], top_left[1] + w), box_hw[1])
    n = len(pz)
    out = np.empty((n, 3, h, w), dtype=np.float32)
    out[:, 0] = pz[:, None, None]
    out[:, 1] = py[None, :, None]
    out[:, 2] = px[None, None, :]
    return torch.from_numpy(out)
