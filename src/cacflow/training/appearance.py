"""Appearance augmentation of localizer canvas slices: the synthetic phantom made less recognisable as itself.

The localizer answers "is the heart in this slice"; it never produces a score, so, unlike the scorers' training,
its inputs may have their intensities changed. The phantom that trains it differs from real chest CT in ways a
network can latch on to (seen on the real Philips scan, ``docs/training.md``): its heart is a uniform ellipsoid in a
fat shell inside a fat-filled mediastinum, where a real heart's ventricles touch the lungs; its lungs have
texture but no vessels, where real lungs hold branching ones; it has no table; its body is narrow, so a sagittal
slice beside the chest is empty, where a real one holds chest wall, lung and liver; it has no breasts, which in a
coronal slice in front of the chest look much like a heart. Each function here alters one of these on a 2-D canvas
slice (HU, 3 mm voxels, rows and columns in the canvas's canonical LPS orientation); the presence target does not
change. :func:`augment_slice` applies each with a given probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cacflow.models.localizer import AIR_HU, LUNG_RANGE_HU, PLANES

#: HU knots of the tissue remap (air, lung, lung-to-fat, fat, soft tissue, dense tissue, bone) and how far each may
#: move (HU). Air stays air; the map stays monotone, so tissue order (lung < fat < muscle < bone) is kept.
REMAP_KNOTS_HU: tuple[float, ...] = (-1000.0, -850.0, -400.0, -100.0, 40.0, 300.0, 1000.0)
REMAP_SPREAD_HU: tuple[float, ...] = (0.0, 80.0, 120.0, 0.0, 25.0, 100.0, 150.0)
#: Fat moves into [low, high] HU: up to soft-tissue density, so the fat around the phantom's heart can vanish.
FAT_RANGE_HU: tuple[float, float] = (-160.0, 30.0)
#: Vessel-like segments drawn from lung pixels (:data:`LUNG_RANGE_HU`): their number and HU.
MAX_VESSELS = 80
VESSEL_HU: tuple[float, float] = (-250.0, 60.0)
#: Table: HU and how far below the body (canvas voxels) its top may lie.
TABLE_HU: tuple[float, float] = (-300.0, 400.0)
TABLE_GAP_VOXELS: tuple[int, int] = (1, 12)
BODY_HU = -500.0
#: In-plane zoom range (scale factors about the slice centre): larger and smaller patients than the phantom's.
ZOOM_RANGE: tuple[float, float] = (0.85, 1.5)
#: Below this a pixel is air outside the body (lung stays above it), where shapes on the body may be drawn.
OUTSIDE_HU = -950.0
#: Breasts: HU (fat to glandular tissue) and radii (canvas voxels, z / y / x) of the two ellipsoids.
BREAST_HU: tuple[float, float] = (-110.0, 40.0)
BREAST_RADII: tuple[tuple[float, float], ...] = ((10.0, 22.0), (8.0, 20.0), (10.0, 22.0))


@dataclass(frozen=True)
class SliceContext:
    """Where a slice lies in its canvas: its index along the plane's axis, the body's bounding box (canvas voxels,
    z, y, x; lo inclusive, hi exclusive) and the heart's centre along z."""

    index: int
    body_lo: tuple[int, int, int]
    body_hi: tuple[int, int, int]
    heart_z: float


def body_box(canvas: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The bounding box (z, y, x; lo inclusive, hi exclusive) of a canvas's voxels above :data:`BODY_HU`."""
    body = canvas > BODY_HU
    lo, hi = [], []
    for axis in range(3):
        idx = np.nonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        lo.append(int(idx[0]) if len(idx) else 0)
        hi.append(int(idx[-1]) + 1 if len(idx) else canvas.shape[axis])
    return tuple(lo), tuple(hi)  # type: ignore[return-value]


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """The pixels of a 2-D grid of ``shape`` inside the axis-aligned ellipse of ``centre`` and ``radii`` (pixels)."""
    rows = (np.arange(shape[0]) - centre[0])[:, None] / radii[0]
    cols = (np.arange(shape[1]) - centre[1])[None, :] / radii[1]
    return rows**2 + cols**2 < 1.0


def _paint_ellipsoid(img: np.ndarray, plane: str, index: int, centre: np.ndarray, radii: np.ndarray,
                     hu: float) -> np.ndarray:
    """The cut of a canvas ellipsoid (centre, radii in voxels, z, y, x) by slice ``index`` of ``plane``, painted at
    ``hu`` over the air outside the body only (below :data:`OUTSIDE_HU`; body and lungs are left as they are)."""
    a = PLANES.index(plane)
    d = (index - centre[a]) / radii[a]
    if abs(d) >= 1.0:
        return img
    b = [k for k in range(3) if k != a]
    shrink = np.sqrt(1.0 - d * d)
    inside = _ellipse(img.shape, (centre[b[0]], centre[b[1]]), (radii[b[0]] * shrink, radii[b[1]] * shrink))
    inside &= img < OUTSIDE_HU
    out = img.copy()
    out[inside] = hu
    return out


def add_breasts(img: np.ndarray, plane: str, where: SliceContext, rng: np.random.Generator) -> np.ndarray:
    """Two soft-tissue ellipsoids on the front (low y) of the chest, left and right of the midline, at heart level,
    drawn over air only; a slice of any plane gets its cut of the same 3-D shapes."""
    front, (x0, x1) = where.body_lo[1], (where.body_lo[2], where.body_hi[2])
    cx, half = (x0 + x1) / 2.0, (x1 - x0) / 2.0
    hu = rng.uniform(*BREAST_HU)
    out = img
    for side in (-1.0, 1.0):
        centre = np.array([where.heart_z + rng.uniform(-8.0, 8.0), front + rng.uniform(2.0, 8.0),
                           cx + side * half * rng.uniform(0.3, 0.6)])
        radii = np.array([rng.uniform(*r) for r in BREAST_RADII])
        out = _paint_ellipsoid(out, plane, where.index, centre, radii, hu)
    return out


def zoom_slice(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The slice scaled about its centre by a factor drawn from :data:`ZOOM_RANGE` (air fills what comes in).

    Slices are drawn from the unscaled volume, so over many draws this is a 3-D zoom: a slice beside the phantom's
    chest, once scaled up, stands for one through a larger patient's chest wall."""
    scale = rng.uniform(*ZOOM_RANGE)
    centre = (np.asarray(img.shape, dtype=np.float64) - 1.0) / 2.0
    return ndimage.affine_transform(img, np.full(2, 1.0 / scale), offset=centre - centre / scale, order=1,
                                    cval=AIR_HU).astype(np.float32)


def remap_tissue(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random monotone piecewise-linear HU map: lung, fat, soft and dense tissue each move within their spread,
    fat up to soft-tissue density (:data:`FAT_RANGE_HU`); air (-1000 HU) is fixed."""
    knots = np.asarray(REMAP_KNOTS_HU)
    values = knots + rng.uniform(-1.0, 1.0, len(knots)) * np.asarray(REMAP_SPREAD_HU)
    values[3] = rng.uniform(*FAT_RANGE_HU)
    values = np.maximum.accumulate(values)
    return np.interp(img, knots, values).astype(np.float32)


def add_lung_vessels(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Short straight segments (1-6 voxels, any direction) of vessel density drawn from random lung pixels (at
    least two voxels from air, so not on the partial-volume rim of the body)."""
    out = img.copy()
    interior = ndimage.minimum_filter(img, size=5, mode="nearest") > AIR_HU + 10.0  # not at the body's edge
    rows, cols = np.nonzero((img > LUNG_RANGE_HU[0]) & (img < LUNG_RANGE_HU[1]) & interior)
    if len(rows) == 0:
        return out
    n = int(rng.integers(0, MAX_VESSELS + 1))
    picks = rng.integers(0, len(rows), n)
    for r, c in zip(rows[picks], cols[picks]):
        length = int(rng.integers(1, 7))
        angle = rng.uniform(0.0, np.pi)
        t = np.arange(length)
        rr = np.clip(np.round(r + t * np.sin(angle)).astype(int), 0, img.shape[0] - 1)
        cc = np.clip(np.round(c + t * np.cos(angle)).astype(int), 0, img.shape[1] - 1)
        out[rr, cc] = np.maximum(out[rr, cc], rng.uniform(*VESSEL_HU))
    return out


def add_table(img: np.ndarray, plane: str, rng: np.random.Generator) -> np.ndarray:
    """A patient table: a band of 1-3 voxels just posterior to the body, across the body's width.

    Axial slices (rows y, columns x) get it as rows, sagittal slices (rows z, columns y) as columns; a coronal slice
    (one y) would be all table or none, and is returned unchanged.
    """
    if plane == "coronal":
        return img
    out = img.copy()
    body = img > BODY_HU
    axis_y = 0 if plane == "axial" else 1  # the posterior (y) axis of the slice
    along = np.nonzero(body.any(axis=1 - axis_y))[0]  # y indices holding body
    across = np.nonzero(body.any(axis=axis_y))[0]  # rows (sagittal: z) or columns (axial: x) holding body
    if len(along) == 0:
        return out
    top = int(along.max()) + int(rng.integers(*TABLE_GAP_VOXELS))
    rows = np.arange(top, min(top + int(rng.integers(1, 4)), img.shape[axis_y]))
    if len(rows) == 0:
        return out
    lo, hi = int(across.min()), int(across.max()) + 1
    if plane == "axial":
        pad = int(rng.integers(0, 20))
        out[rows[0]:rows[-1] + 1, max(lo - pad, 0):hi + pad] = rng.uniform(*TABLE_HU)
    else:
        out[lo:hi, rows[0]:rows[-1] + 1] = rng.uniform(*TABLE_HU)
    return out



def augment_slice(img: np.ndarray, plane: str, rng: np.random.Generator, probability: float,
                  where: SliceContext | None = None) -> np.ndarray:
    """Each change (breasts when ``where`` is given, zoom, lung vessels, table, then the tissue remap of all)
    applied with ``probability``."""
    if probability <= 0.0:
        return img
    if where is not None and rng.random() < probability:
        img = add_breasts(img, plane, where, rng)
    if rng.random() < probability:
        img = zoom_slice(img, rng)
    if rng.random() < probability:
        img = add_lung_vessels(img, rng)
    if rng.random() < probability:
        img = add_table(img, plane, rng)
    if rng.random() < probability:
        img = remap_tissue(img, rng)
    return img
