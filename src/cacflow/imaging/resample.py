"""Resampling of CT volumes along the slice axis onto scoring grids.

The classic calcium-scoring convention reconstructs 3 mm slabs; for chest CT with thin or overlapping slices the
volume is brought onto a grid of ``thickness_mm`` slabs every ``increment_mm`` (default 3 mm every 1.5 mm).
Each output slice is the mean of the input over a box of ``thickness_mm`` centred on the output position
(``reduce="mean"``), or the maximum of the input slices that overlap that box (``reduce="max"``, for label maps).
In-plane sampling is unchanged.

Anchoring: the grid is anchored in patient coordinates, not in the stored slice order. The first slab starts at
the inferior (feet) edge of the scanned range and slabs follow towards the head, for every patient position: a
head-first (HFS) and a feet-first (FFS) series of the same anatomy and range get the same slabs, and so do two
reconstructions of one acquisition that cover the same range. Positions along the slice normal ascend towards the
head when the normal's LPS z component is positive (HFS axial) and towards the feet when it is negative (FFS axial);
``superior_sign`` tells which.

Model of the input: input slice ``i`` at position ``z_i`` is taken to represent the interval
``[z_i - d/2, z_i + d/2]`` where ``d`` is the slice increment (the median spacing of the positions). These
intervals tile the scanned range without overlap, so the box mean is a weighted mean of input slices with
weights equal to the overlap lengths (a partition of unity: a constant volume stays constant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cacflow.imaging.hu import hu_to_int16
from cacflow.imaging.volume import Volume

#: Bump when resampling output changes, so that finished scans are redone.
RESAMPLER_VERSION = 2  # 2: grid anchored at the inferior edge for every patient position


@dataclass(frozen=True)
class ZGrid:
    """A slab grid along z: slabs of ``thickness_mm`` whose centres are ``increment_mm`` apart (mm)."""

    thickness_mm: float = 3.0
    increment_mm: float = 1.5

    def __post_init__(self) -> None:
        if not (self.thickness_mm > 0 and self.increment_mm > 0):
            raise ValueError(f"ZGrid needs positive thickness and increment, got {self}")


def superior_sign(direction: np.ndarray) -> int:
    """+1 when positions along the slice normal ascend towards the head (the normal's LPS z component is >= 0, as
    in a head-first axial series), -1 when they ascend towards the feet (feet-first axial series).

    ``direction`` is the (3, 3) matrix whose columns are the row cosine, the column cosine and the slice normal (LPS).
    """
    return 1 if float(np.asarray(direction, dtype=np.float64)[2, 2]) >= 0.0 else -1


def output_positions(z_positions_mm: np.ndarray, grid: ZGrid, normal_sign: int = 1) -> np.ndarray:
    """Centres (mm along the slice normal, ascending) of the output slabs that fit inside the scanned range.

    The scanned range is ``[z_0 - d/2, z_{n-1} + d/2]`` with ``d`` the input increment. The first slab starts at the
    range's inferior (feet) edge: the lower edge when ``normal_sign`` is +1 (positions ascend towards the head), the
    upper edge when it is -1 (see :func:`superior_sign`). Slabs follow every ``grid.increment_mm`` towards the head
    while they end inside the range. A range shorter than one slab yields a single slab centred on the range.
    """
    if normal_sign not in (1, -1):
        raise ValueError(f"normal_sign must be +1 or -1, got {normal_sign!r}")
    z = np.asarray(z_positions_mm, dtype=np.float64)
    d = input_increment(z)
    lo, hi = z[0] - d / 2.0, z[-1] + d / 2.0
    span = hi - lo
    if span <= grid.thickness_mm:
        return np.array([(lo + hi) / 2.0])
    n_out = int(np.floor((span - grid.thickness_mm) / grid.increment_mm + 1e-9)) + 1
    steps = grid.thickness_mm / 2.0 + grid.increment_mm * np.arange(n_out)
    return lo + steps if normal_sign == 1 else (hi - steps)[::-1]


def input_increment(z_positions_mm: np.ndarray) -> float:
    """Median spacing (mm) of ascending slice positions; 1.0 for a single slice."""
    z = np.asarray(z_positions_mm, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise ValueError("z positions must be a non-empty 1-D array")
    if z.size == 1:
        return 1.0
    dz = np.diff(z)
    if np.any(dz <= 0):
        raise ValueError("z positions must be strictly ascending (sort slices along the normal first)")
    return float(np.median(dz))


def box_weights(z_positions_mm: np.ndarray, grid: ZGrid, normal_sign: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Overlap weights ``W`` (n_out, n_in) of each input slice interval with each output box, rows summing to 1.

    Returns ``(W, z_out)``. ``W[k, i]`` is the length (mm) of the overlap of input interval ``i`` with output box
    ``k``, divided by the total covered length of box ``k``.
    """
    z = np.asarray(z_positions_mm, dtype=np.float64)
    d = input_increment(z)
    z_out = output_positions(z, grid, normal_sign)
    half = grid.thickness_mm / 2.0
    in_lo, in_hi = z - d / 2.0, z + d / 2.0
    out_lo, out_hi = z_out - half, z_out + half
    overlap = np.minimum(out_hi[:, None], in_hi[None, :]) - np.maximum(out_lo[:, None], in_lo[None, :])
    overlap = np.clip(overlap, 0.0, None)
    total = overlap.sum(axis=1, keepdims=True)
    return overlap / total, z_out


def resample_z(
    volume: np.ndarray, z_positions_mm: np.ndarray, grid: ZGrid, reduce: str = "mean", normal_sign: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a (z, y, x) volume along z onto ``grid``.

    Args:
        volume: array (z, y, x), e.g. HU.
        z_positions_mm: ascending slice positions along the normal (mm), one per slice.
        grid: the target slab grid.
        reduce: ``"mean"`` (box mean, float32 output) or ``"max"`` (maximum over overlapping input slices,
            input dtype kept; for label maps).
        normal_sign: +1 when the positions ascend towards the head, -1 towards the feet (:func:`superior_sign`);
            the grid starts at the inferior edge either way.

    Returns:
        ``(resampled, z_out)`` with ``resampled`` of shape (n_out, y, x) and ``z_out`` the output slab centres (mm).
    """
    vol = np.asarray(volume)
    if vol.ndim != 3 or vol.shape[0] != len(z_positions_mm):
        raise ValueError(f"volume shape {vol.shape} does not match {len(z_positions_mm)} z positions")
    weights, z_out = box_weights(z_positions_mm, grid, normal_sign)
    if reduce == "mean":
        volf = vol.astype(np.float32, copy=False)  # one conversion; then in-place multiply-adds per output slab
        out = np.empty((len(z_out),) + vol.shape[1:], dtype=np.float32)
        for k, row in enumerate(weights):
            idx = np.flatnonzero(row > 1e-12)
            np.multiply(volf[idx[0]], np.float32(row[idx[0]]), out=out[k])
            for i in idx[1:]:
                out[k] += np.float32(row[i]) * volf[i]
        return out, z_out
    if reduce == "max":
        out = np.empty((len(z_out),) + vol.shape[1:], dtype=vol.dtype)
        for k, row in enumerate(weights):
            idx = np.flatnonzero(row > 1e-12)
            out[k] = vol[idx].max(axis=0)
        return out, z_out
    raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")


def resample_volume(volume: Volume, grid: ZGrid, name: str) -> Volume:
    """A volume on a slab grid: HU box mean rounded to int16, geometry moved to the first slab centre.

    This is how every scoring-grid volume is made (the pipeline's resample stage and the synthetic generator's
    reference both call it), so scores computed on it are reproducible to the bit.
    """
    hu, z_out = resample_z(volume.hu, volume.z_positions_mm, grid, reduce="mean",
                           normal_sign=superior_sign(volume.direction))
    normal = np.asarray(volume.direction)[:, 2]
    origin = np.asarray(volume.origin, dtype=np.float64) + normal * (z_out[0] - volume.z_positions_mm[0])
    return Volume(
        hu=hu_to_int16(hu),
        spacing_zyx=(grid.increment_mm, volume.spacing_zyx[1], volume.spacing_zyx[2]),
        origin=tuple(float(v) for v in origin),
        direction=volume.direction,
        z_positions_mm=z_out,
        metadata={**volume.metadata, "grid": {"name": name, "thickness_mm": grid.thickness_mm,
                                              "increment_mm": grid.increment_mm}},
    )


class SliceGeometry(Protocol):
    """What :func:`resample_labels` needs of a native grid (a :class:`Volume` or a store's geometry record)."""

    z_positions_mm: np.ndarray  # ascending positions along the slice normal (mm)
    direction: np.ndarray  # (3, 3) columns: row cosine, column cosine, slice normal (LPS)


def resample_labels(labels: np.ndarray, native: SliceGeometry, grid: ZGrid) -> np.ndarray:
    """A label map (z, y, x) on ``native``'s slice grid, put on a slab grid: each slab takes the maximum label of
    the input slices it overlaps; the slabs are those :func:`resample_volume` makes of the same native volume."""
    return resample_z(labels, native.z_positions_mm, grid, reduce="max",
                      normal_sign=superior_sign(native.direction))[0]
