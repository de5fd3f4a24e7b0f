"""Heart localizer metrics against the true heart mask: box IoU and heart coverage (both on the scan's grid)."""

from __future__ import annotations

import numpy as np

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
