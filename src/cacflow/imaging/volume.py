"""The in-memory CT volume record passed between stages."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def voxel_to_lps(zyx: np.ndarray, spacing_zyx_mm: tuple[float, float, float], origin_lps_mm,
                 direction: np.ndarray) -> np.ndarray:
    """Patient coordinates (LPS, mm) of voxel indices (..., 3) in (z, y, x) order.

    ``direction`` has the unit vectors of the x (column), y (row) and z (slice) axes as its columns:
    voxel (z, y, x) lies at ``origin + direction @ [x*sx, y*sy, z*sz]``.
    """
    zyx = np.asarray(zyx, dtype=np.float64)
    dz, dy, dx = spacing_zyx_mm
    xyz_mm = np.stack([zyx[..., 2] * dx, zyx[..., 1] * dy, zyx[..., 0] * dz], axis=-1)
    return np.asarray(origin_lps_mm, dtype=np.float64) + xyz_mm @ np.asarray(direction, dtype=np.float64).T


def box_lps_corners(box_zyx: tuple[int, int, int, int, int, int], spacing_zyx_mm: tuple[float, float, float],
                    origin_lps_mm, direction: np.ndarray) -> tuple[tuple[float, float, float],
                                                                  tuple[float, float, float]]:
    """Min and max LPS corner (mm) over the centres of the corner voxels of a half-open (z0, z1, y0, y1, x0, x1) box."""
    z0, z1, y0, y1, x0, x1 = box_zyx
    corners = np.array([[z, y, x] for z in (z0, z1 - 1) for y in (y0, y1 - 1) for x in (x0, x1 - 1)])
    lps = voxel_to_lps(corners, spacing_zyx_mm, origin_lps_mm, direction)
    lo, hi = lps.min(axis=0), lps.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(lo[2])), (float(hi[0]), float(hi[1]), float(hi[2]))


def lps_box_to_voxels(box_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]],
                      shape_zyx: tuple[int, int, int], spacing_zyx_mm: tuple[float, float, float], origin_lps_mm,
                      direction: np.ndarray) -> tuple[int, int, int, int, int, int] | None:
    """The half-open voxel box (z0, z1, y0, y1, x0, x1) of the voxels whose centres lie in an LPS box (mm, given as
    (min xyz, max xyz)), clipped to the volume; None when no voxel centre lies inside.

    The LPS box's eight corners are mapped to voxel coordinates and their bounding range taken, so for an oblique
    grid the result holds the whole LPS box.
    """
    lo, hi = np.asarray(box_lps_mm[0], dtype=np.float64), np.asarray(box_lps_mm[1], dtype=np.float64)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    dz, dy, dx = spacing_zyx_mm
    xyz = (corners - np.asarray(origin_lps_mm, dtype=np.float64)) @ np.asarray(direction, dtype=np.float64)
    ijk = xyz / np.array([dx, dy, dz])  # (x, y, z) voxel coordinates
    box = []
    for axis, n in zip((2, 1, 0), shape_zyx):
        first = max(0, int(np.ceil(ijk[:, axis].min() - 1e-6)))
        last = min(n - 1, int(np.floor(ijk[:, axis].max() + 1e-6)))
        if first > last:
            return None
        box += [first, last + 1]
    return tuple(box)  # type: ignore[return-value]


@dataclass(frozen=True)
class Geometry:
    """Where a (z, y, x) voxel grid lies in the patient, without its voxels.

    Attributes:
        shape_zyx: array shape (slices, rows, columns).
        spacing_zyx: (slice increment, row spacing, column spacing) in mm.
        origin: LPS position (mm) of voxel (0, 0, 0).
        direction: 3x3 matrix whose columns are the LPS unit vectors of the x, y and z axes.
        z_positions_mm: position of each slice along the normal (mm), ascending.
    """

    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    z_positions_mm: np.ndarray

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices (x, y, z order: column, row, slice) to LPS mm."""
        a = np.eye(4)
        dz, dy, dx = self.spacing_zyx
        a[:3, :3] = np.asarray(self.direction) * np.array([dx, dy, dz])[None, :]
        a[:3, 3] = self.origin
        return a


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

    @property
    def geometry(self) -> Geometry:
        """The grid of this volume, without the voxels."""
        return Geometry(tuple(int(n) for n in self.hu.shape), tuple(self.spacing_zyx), tuple(self.origin),
                        np.asarray(self.direction), np.asarray(self.z_positions_mm))

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices (x, y, z order: column, row, slice) to LPS mm."""
        return self.geometry.affine_lps()
