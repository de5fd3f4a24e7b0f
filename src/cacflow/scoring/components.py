"""Connected components of counted calcium voxels, shared by the Agatston score and the 3-D lesion table.

Calcium is sparse, so everything here works on the labelled voxels or their bounding box only:
:func:`bounding_slices` (the box of a mask), :func:`sparse_label_stats` (per-label counts, HU sums and peaks,
slice range, centroids) and :func:`connect_3d` (2-D lesions joined into 26-connected 3-D lesions that never cross
a region label). :mod:`cacflow.scoring.agatston` uses them to score (``weight_source="lesion_peak"`` weighs each
2-D lesion by its 3-D lesion's peak) and :mod:`cacflow.scoring.lesions` to describe each 3-D lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_CONN_26 = np.ones((3, 3, 3), dtype=bool)


def bounding_slices(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Index slices of the bounding box of a boolean array's True voxels (None when there are none)."""
    out = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


@dataclass
class LabelStats:
    """Per-label statistics (index ``label - 1``) computed over labelled voxels only.

    Attributes:
        counts: voxels; sums, peaks: of HU; z_first, z_last: slice range; zyx_sums: sum of (z, y, x) indices;
        first_flat: flat index of each label's first voxel (C order).
    """

    counts: np.ndarray
    sums: np.ndarray
    peaks: np.ndarray
    z_first: np.ndarray
    z_last: np.ndarray
    zyx_sums: np.ndarray
    first_flat: np.ndarray


def sparse_label_stats(labels: np.ndarray, hu: np.ndarray, n: int) -> LabelStats:
    """Statistics of labels 1..n touching only the labelled voxels (calcium is sparse: a whole-volume
    ``ndimage.maximum`` sorts every voxel and costs seconds on a 512 x 512 x 200 scan)."""
    flat = np.flatnonzero(labels)
    lab = labels.ravel()[flat].astype(np.int64) - 1
    vals = hu.ravel()[flat].astype(np.float64)
    counts = np.bincount(lab, minlength=n)
    sums = np.bincount(lab, weights=vals, minlength=n)
    peaks = np.full(n, -np.inf)
    np.maximum.at(peaks, lab, vals)
    z, y, x = np.unravel_index(flat, labels.shape)
    z_first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(z_first, lab, z)
    z_last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(z_last, lab, z)
    zyx_sums = np.stack([np.bincount(lab, weights=c.astype(np.float64), minlength=n) for c in (z, y, x)], axis=1)
    first_flat = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_flat, lab, flat)
    return LabelStats(counts, sums, peaks, z_first.astype(np.int64), z_last, zyx_sums, first_flat)


def connect_3d(slice_labels: np.ndarray, label_values: np.ndarray) -> np.ndarray:
    """int32 (z, y, x) 3-D lesion labels (1..n) of counted voxels, never joining different region labels.

    Args:
        slice_labels: 2-D lesion labels (0 = not counted), as in
            :attr:`cacflow.scoring.agatston.AgatstonResult.lesion_labels`.
        label_values: region label of each 2-D lesion (index ``label - 1``).
    """
    out = np.zeros(slice_labels.shape, dtype=np.int32)
    box = bounding_slices(slice_labels > 0)
    if box is None:
        return out
    lut = np.concatenate([[0], np.asarray(label_values, dtype=np.int64)])
    region = lut[slice_labels[box]]
    inner = out[box]
    n = 0
    for value in np.unique(region[region > 0]):
        sub, m = ndimage.label(region == value, structure=_CONN_26)
        inner[sub > 0] = sub[sub > 0] + n
        n += m
    return out
