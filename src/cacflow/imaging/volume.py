"""The in-memory CT volume record passed between stages."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Volume:
    """A HU volume with its geometry.

    Attributes:
        hu: int16 HU array (z, y, x); z ascending along the slice normal, y = image row, x = image column.
        spacing_zyx: (slice increment, row spacing, column spacing) in mm.
        origin: LPS position (mm) of voxel (0, 0, 0), i.e. ImagePositionPatient of the first slice.
        direction: 3x3 matrix whose columns are the LPS unit vectors of the x, y and z axes.
        z_positions_mm: position of each slice along the normal (mm), ascending.
        metadata: acquisition attributes (kVp, kernel, manufacturer, thickness, ...), JSON-serialisable.
    """

    hu: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    z_positions_mm: np.ndarray
    metadata: dict = field(default_factory=dict)

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices (x, y, z order: column, row, slice) to LPS mm."""
        a = np.eye(4)
        dz, dy, dx = self.spacing_zyx
        a[:3, :3] = self.direction * np.array([dx, dy, dz])[None, :]
        a[:3, 3] = self.origin
        return a
