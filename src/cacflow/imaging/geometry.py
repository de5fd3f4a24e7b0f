"""Slice geometry of an axial CT series in DICOM patient coordinates (LPS, mm).

A series is a stack of single-frame slices sharing ImageOrientationPatient ``(r, c)`` (row and column direction
cosines). The slice normal is ``n = r x c``; slices are ordered by ``ImagePositionPatient . n`` ascending — never by
InstanceNumber or file name. The volume axes are then ``(z, y, x)`` = (slice, row, column) and the direction matrix
has columns ``(r, c, n)``: voxel ``(k, i, j)`` lies at ``origin + j*dx*r + i*dy*c + (p_k - p_0)*n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SliceStack:
    """Ordering and spacing of a stack of slices.

    Attributes:
        order: indices into the input slice list, ascending along the normal.
        positions_mm: ``ipp . normal`` of the ordered slices (mm, ascending).
        row_cosine, col_cosine, normal: unit vectors (LPS).
        increment_mm: median distance between consecutive slice positions (mm).
    """

    order: np.ndarray
    positions_mm: np.ndarray
    row_cosine: np.ndarray
    col_cosine: np.ndarray
    normal: np.ndarray
    increment_mm: float

    @property
    def direction(self) -> np.ndarray:
        """3x3 direction matrix whose columns are the x (row cosine), y (column cosine) and z (normal) axes."""
        return np.stack([self.row_cosine, self.col_cosine, self.normal], axis=1)


def slice_normal(iop: np.ndarray | list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row cosine, column cosine and their normalised cross product from ImageOrientationPatient (6 values)."""
    v = np.asarray(iop, dtype=np.float64)
    r, c = v[:3], v[3:6]
    r = r / np.linalg.norm(r)
    c = c / np.linalg.norm(c)
    n = np.cross(r, c)
    return r, c, n / np.linalg.norm(n)


def order_slices(ipps: np.ndarray, iop: np.ndarray | list[float]) -> SliceStack:
    """Order slices by their position along the slice normal (ascending).

    Args:
        ipps: (n, 3) ImagePositionPatient of each slice (mm, LPS).
        iop: ImageOrientationPatient shared by the slices.
    """
    ipps = np.asarray(ipps, dtype=np.float64).reshape(-1, 3)
    r, c, n = slice_normal(iop)
    pos = ipps @ n
    order = np.argsort(pos, kind="stable")
    sorted_pos = pos[order]
    inc = float(np.median(np.diff(sorted_pos))) if len(sorted_pos) > 1 else 0.0
    return SliceStack(order=order, positions_mm=sorted_pos, row_cosine=r, col_cosine=c, normal=n, increment_mm=inc)


def axial_deviation_deg(normal: np.ndarray) -> float:
    """Angle (degrees) between the slice normal and the patient's head-feet axis (LPS z)."""
    return float(np.degrees(np.arccos(min(1.0, abs(float(normal[2]))))))


def stack_tilt_deg(ipps_sorted: np.ndarray, normal: np.ndarray) -> float:
    """Angle (degrees) between the first-to-last slice displacement and the normal: 0 for an untilted stack.

    A gantry-tilted acquisition reconstructed without shear correction moves the slice origin sideways from slice
    to slice, so the displacement is not parallel to the normal.
    """
    ipps_sorted = np.asarray(ipps_sorted, dtype=np.float64)
    if len(ipps_sorted) < 2:
        return 0.0
    d = ipps_sorted[-1] - ipps_sorted[0]
    norm = np.linalg.norm(d)
    if norm == 0:
        return 0.0
    return float(np.degrees(np.arccos(min(1.0, abs(float(d @ normal)) / norm))))


@dataclass(frozen=True)
class SpacingCheck:
    """Outcome of :func:`check_spacing`: ``reason`` is None when the spacing is regular."""

    reason: str | None
    message: str
    increment_mm: float


def check_spacing(positions_mm: np.ndarray, rel_tolerance: float = 0.1, duplicate_tol_mm: float = 0.01) -> SpacingCheck:
    """Check that ascending slice positions are evenly spaced.

    Reasons: ``duplicate_slices`` (two slices at the same position), ``missing_slices`` (a gap of about a whole
    number of increments, i.e. slices are missing), ``irregular_spacing`` (any other deviation beyond
    ``rel_tolerance`` of the median increment).
    """
    pos = np.asarray(positions_mm, dtype=np.float64)
    if len(pos) < 2:
        return SpacingCheck(None, "single slice", 0.0)
    d = np.diff(pos)
    if np.any(d < duplicate_tol_mm):
        k = int(np.sum(d < duplicate_tol_mm))
        return SpacingCheck("duplicate_slices", f"{k} slice(s) share a position with another slice",
                            float(np.median(d)))
    inc = float(np.median(d))
    dev = np.abs(d - inc) > rel_tolerance * inc
    if not np.any(dev):
        return SpacingCheck(None, f"regular spacing {inc:.3f} mm", inc)
    worst = float(d[np.argmax(np.abs(d - inc))])
    ratio = worst / inc
    if ratio > 1.5 and abs(ratio - round(ratio)) <= rel_tolerance * round(ratio):
        missing = int(round(ratio)) - 1
        return SpacingCheck(
            "missing_slices", f"gap of {worst:.2f} mm where the increment is {inc:.2f} mm ({missing} slice(s) missing)",
            inc)
    return SpacingCheck(
        "irregular_spacing",
        f"slice spacing varies from {d.min():.2f} to {d.max():.2f} mm (median {inc:.2f} mm)",
        inc,
    )


def axis_obliquity_deg(direction: np.ndarray) -> float:
    """The largest angle (degrees) between an image axis and the patient axis (L, P or S) nearest to it.

    ``direction`` has the unit vectors of the image axes as its columns (LPS). 0 for a grid whose axes lie along the
    patient axes in any order or sign (axial, sagittal, coronal, flipped); an in-plane rotation of 10 degrees or a
    slice plane tilted by 10 degrees gives 10.
    """
    d = np.asarray(direction, dtype=np.float64)
    cols = d / np.linalg.norm(d, axis=0, keepdims=True)
    return float(np.degrees(np.arccos(np.clip(np.abs(cols).max(axis=0), 0.0, 1.0))).max())


def lps_axis_order(direction: np.ndarray) -> tuple[int, int, int] | None:
    """For the patient axes (L, P, S) in turn, the image axis (0 = x, 1 = y, 2 = z) that lies nearest to it;
    None when two image axes are nearest to the same patient axis (a grid oblique by about 45 degrees).

    Reorienting the grid to (x -> L, y -> P, z -> S) permutes its sizes and spacings in this order.
    """
    d = np.abs(np.asarray(direction, dtype=np.float64))
    nearest = d.argmax(axis=0)  # patient axis of each image axis
    if len(set(nearest.tolist())) != 3:
        return None
    order = [0, 0, 0]
    for image_axis, patient_axis in enumerate(nearest.tolist()):
        order[patient_axis] = image_axis
    return order[0], order[1], order[2]
