"""Heart localizer metrics against the true heart mask: box IoU and heart coverage (both on the scan's grid)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cacflow.models.localizer import LUNG_RANGE_HU

Box = tuple[int, int, int, int, int, int]  # half-open (z0, z1, y0, y1, x0, x1) voxel ranges


def mask_box(mask: np.ndarray) -> Box | None:
    """The tightest half-open box around a boolean mask (z, y, x), or None when it is empty."""
    if not mask.any():
        return None
    out: list[int] = []
    for axis in range(3):
        hit = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        out += [int(hit[0]), int(hit[-1]) + 1]
    return tuple(out)  # type: ignore[return-value]


def box_volume(box: Box) -> int:
    """Voxels in a half-open box (0 when empty)."""
    return int(np.prod([max(0, box[2 * a + 1] - box[2 * a]) for a in range(3)]))


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two half-open voxel boxes (0..1)."""
    inter = tuple(v for ax in range(3) for v in (max(a[2 * ax], b[2 * ax]), min(a[2 * ax + 1], b[2 * ax + 1])))
    i = box_volume(inter)  # type: ignore[arg-type]
    u = box_volume(a) + box_volume(b) - i
    return i / u if u > 0 else 0.0


def heart_coverage(box: Box, heart: np.ndarray) -> float:
    """Fraction of the true heart's voxels inside the box (0..1); NaN for an empty heart mask."""
    total = int(heart.sum())
    if total == 0:
        return float("nan")
    z0, z1, y0, y1, x0, x1 = box
    return int(heart[z0:z1, y0:y1, x0:x1].sum()) / total


def localizer_metrics(box: Box | None, heart: np.ndarray) -> dict[str, float]:
    """IoU with the true heart's bounding box and coverage of the true heart; zeros when no box was found."""
    truth = mask_box(heart)
    if box is None or truth is None:
        return {"box_iou": 0.0 if truth is not None else float("nan"),
                "heart_coverage": 0.0 if truth is not None else float("nan")}
    return {"box_iou": box_iou(box, truth), "heart_coverage": heart_coverage(box, heart)}


#: The nodule probe's blob: HU (soft tissue) and how much lung (canvas pixels) a slice must hold to be probed.
PROBE_BLOB_HU = 40.0
PROBE_MIN_LUNG_PIXELS = 200


def nodule_probe_slices(canvas: np.ndarray, targets: np.ndarray, axis: int, radius_voxels: float,
                        every: int = 3) -> np.ndarray:
    """Heart-free slices of one plane of a localizer canvas, each with a round lung nodule drawn in, to probe
    whether the localizer takes a round soft-tissue shape in the lung for the heart (it should not).

    Args:
        canvas: the localizer's canvas (HU, 3 mm voxels, z y x, canonical LPS orientation).
        targets: its (3, n) heart-presence targets (0/1 per slice of each plane).
        axis: the plane's canvas axis (0 axial, 1 coronal, 2 sagittal).
        radius_voxels: the blob's radius in canvas voxels (0: no blob, the slices as they are).
        every: every ``every``-th heart-free slice is probed.

    Returns:
        (n, rows, cols) HU slices: those without the heart (target < 0.5) holding at least
        :data:`PROBE_MIN_LUNG_PIXELS` of lung, each with a disc of :data:`PROBE_BLOB_HU` of the given radius centred
        on the lung pixel farthest from any other tissue (the first, where several are) and drawn over lung only.
    """
    out = []
    for j in np.nonzero(targets[axis] < 0.5)[0][::every]:
        img = np.take(canvas, int(j), axis=axis).astype(np.float32)
        lung = (img > LUNG_RANGE_HU[0]) & (img < LUNG_RANGE_HU[1])
        if lung.sum() < PROBE_MIN_LUNG_PIXELS:
            continue
        if radius_voxels > 0:
            r, c = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(lung))), lung.shape)
            rows = (np.arange(img.shape[0]) - r)[:, None]
            cols = (np.arange(img.shape[1]) - c)[None, :]
            img[(rows**2 + cols**2 < radius_voxels**2) & lung] = PROBE_BLOB_HU
        out.append(img)
    shape = tuple(n for a, n in enumerate(canvas.shape) if a != axis)
    return np.stack(out) if out else np.zeros((0, *shape), np.float32)
