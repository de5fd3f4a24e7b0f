"""Appearance augmentation of localizer canvas slices: the synthetic phantom made less recognisable as itself.

The localizer answers "is the heart in this slice"; it never produces a score, so, unlike the scorers' training,
its inputs may have their intensities changed. The phantom that trains it differs from real chest CT in ways a
network can latch on to (seen on the real Philips scan, ``docs/training.md``): its heart is a uniform ellipsoid in a
fat shell inside a fat-filled mediastinum, where a real heart's ventricles touch the lungs; its lungs have
texture but no vessels, where real lungs hold branching ones; it has no table; its body is narrow, so a sagittal slice beside the chest
is empty, where a real one holds chest wall, lung and liver; it has no breasts, which in a coronal slice in front of
the chest look much like a heart. Each function here alters one of these on a 2-D canvas
slice (HU, 3 mm voxels, rows and columns in the canvas's canonical LPS orientation); the presence target does not
change. :func:`augment_slice` applies each with a given probability. Two more stand for what the phantom lacks
altogether, the upper abdomen, which real chest scans reach: :func:`abdomen_slice` makes an axial slice without a
heart, and :func:`abdomen_canvas` continues a whole canvas below the chest, with the domes of the liver and stomach
rising into the lung bases, so that coronal and sagittal slices see them too. :func:`mediastinum_canvas` adds
the mediastinum the phantom lacks (great vessels and fat joining the heart to the spine and to the thoracic inlet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cacflow.models.localizer import AIR_HU, CANVAS_MM, LUNG_RANGE_HU, PLANES

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


#: Upper abdomen: HU of the liver, of the other organs and the fat between them (mixed), and of the gas in the
#: stomach; how many voxels of the body's edge (skin, fat, muscle) stay as they were; HU above which bone stays.
LIVER_HU: tuple[float, float] = (40.0, 75.0)
VISCERA_HU: tuple[float, float] = (-100.0, 45.0)
GAS_HU: tuple[float, float] = (-1000.0, -850.0)
WALL_VOXELS: tuple[int, int] = (2, 5)
BONE_HU = 150.0

#: Breasts: HU (fat to glandular tissue) and radii (canvas voxels, z / y / x) of the two ellipsoids.
BREAST_HU: tuple[float, float] = (-110.0, 40.0)
BREAST_RADII: tuple[tuple[float, float], ...] = ((10.0, 22.0), (8.0, 20.0), (10.0, 22.0))


#: Lung nodules and masses: how many a slice gets, their default diameter range (mm) and HU.
MAX_NODULES = 3
NODULE_DIAMETER_MM: tuple[float, float] = (6.0, 42.0)
NODULE_HU: tuple[float, float] = (-60.0, 60.0)

#: Upper abdomen below a canvas's chest (:func:`abdomen_canvas`): how many canvas voxels (3 mm) it reaches below
#: the body's lowest slice, and the height of the liver's dome above that slice, as voxels. A real right
#: hemidiaphragm rises some 40-80 mm above the costophrenic angle; the left (stomach, spleen) lower.
ABDOMEN_DEPTH_VOXELS: tuple[int, int] = (8, 40)
LIVER_DOME_VOXELS: tuple[int, int] = (8, 26)
LEFT_DOME_SHARE: tuple[float, float] = (0.3, 0.8)
#: Mediastinum (:func:`mediastinum_canvas`): HU of its fat and of the great vessels (unenhanced blood, vessel
#: wall), and radii (canvas voxels, 3 mm) of the ascending and descending aorta, the pulmonary trunk, the superior
#: vena cava, the arch's branches and the trachea. Adult diameters: ascending aorta 25-35 mm, descending 20-28 mm,
#: pulmonary trunk 20-30 mm, superior vena cava 15-22 mm, trachea 15-22 mm.
MEDIASTINAL_FAT_HU: tuple[float, float] = (-120.0, -40.0)
GREAT_VESSEL_HU: tuple[float, float] = (25.0, 60.0)
AORTA_RADIUS_VOXELS: tuple[float, float] = (4.0, 5.8)
DESCENDING_RADIUS_VOXELS: tuple[float, float] = (3.3, 4.7)
TRUNK_RADIUS_VOXELS: tuple[float, float] = (3.3, 5.0)
CAVA_RADIUS_VOXELS: tuple[float, float] = (2.5, 3.7)
BRANCH_RADIUS_VOXELS: tuple[float, float] = (1.3, 2.3)
TRACHEA_RADIUS_VOXELS: tuple[float, float] = (2.5, 3.7)
#: A 3-D structuring element that connects voxels within an axial slice only (per-slice hole filling).
SLICEWISE = np.ones((1, 3, 3), bool)


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


def add_nodules(img: np.ndarray, rng: np.random.Generator,
                diameter_mm: tuple[float, float] = NODULE_DIAMETER_MM) -> np.ndarray:
    """One to :data:`MAX_NODULES` round soft-tissue blobs (diameter drawn from ``diameter_mm``, slightly
    elliptical) centred on lung pixels and drawn over lung only, as lung nodules and masses look in any plane.

    In the phantom the one round soft-tissue shape inside the lungs is the heart; on the real Philips CT the
    sagittal network calls the slices through a 15 mm nodule of the right lung heart (p 0.9, and 0.06 with the
    nodule covered by lung; ``docs/training.md``). Drawn on slices with and without the heart alike, the blobs
    teach that a round shape in the lung is not by itself a heart."""
    lung = (img > LUNG_RANGE_HU[0]) & (img < LUNG_RANGE_HU[1])
    rows, cols = np.nonzero(ndimage.binary_erosion(lung, iterations=2))
    if len(rows) == 0:
        return img
    out = img.copy()
    for _ in range(int(rng.integers(1, MAX_NODULES + 1))):
        k = int(rng.integers(0, len(rows)))
        radius = rng.uniform(*diameter_mm) / (2.0 * CANVAS_MM)  # canvas voxels
        blob = _ellipse(img.shape, (rows[k], cols[k]), (radius * rng.uniform(0.75, 1.25),
                                                        radius * rng.uniform(0.75, 1.25))) & lung
        out[blob] = rng.uniform(*NODULE_HU) + rng.normal(0.0, 10.0, int(blob.sum()))
    return out


def abdomen_slice(img: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """An axial slice of the upper abdomen made from an axial chest slice (HU, rows y posterior, columns x patient
    left): the body's outline, edge and bones kept, everything inside it (lungs, heart, mediastinum) replaced by a
    liver on the patient's right that reaches the body wall, organs and fat of mixed density on the left, a gas
    bubble in the stomach in front on the left and, in half of the slices, the lung bases as thin crescents at the
    back. The phantom's scans end just below its heart, so without these the axial network never sees a slice of
    liver under the diaphragm, and on real CT it calls one heart. The heart is absent: its presence target is 0.
    None when the slice holds too little body to build one from."""
    body = ndimage.binary_fill_holes(img > BODY_HU)
    if body.sum() < 400:
        return None
    interior = ndimage.binary_erosion(body, iterations=int(rng.integers(*WALL_VOXELS)))
    if interior.sum() < 200:
        return None
    rows, cols = np.nonzero(interior)
    (y0, y1), (x0, x1) = (rows.min(), rows.max()), (cols.min(), cols.max())
    height, width = y1 - y0 + 1, x1 - x0 + 1
    out = img.copy()
    out[interior] = rng.uniform(*VISCERA_HU) + rng.normal(0.0, 25.0, int(interior.sum()))
    liver = _ellipse(img.shape, (y0 + height * rng.uniform(0.4, 0.6), x0 + width * rng.uniform(0.15, 0.35)),
                     (height * rng.uniform(0.45, 0.7), width * rng.uniform(0.35, 0.6))) & interior
    out[liver] = rng.uniform(*LIVER_HU) + rng.normal(0.0, 8.0, int(liver.sum()))
    stomach = _ellipse(img.shape, (y0 + height * rng.uniform(0.15, 0.4), x0 + width * rng.uniform(0.6, 0.8)),
                       (height * rng.uniform(0.08, 0.2), width * rng.uniform(0.08, 0.2))) & interior & ~liver
    out[stomach] = rng.uniform(*GAS_HU)
    if rng.random() < 0.5:  # lung bases: what is left of the lungs at the back, behind the liver and stomach
        lung = (img < LUNG_RANGE_HU[1]) & interior
        lung = ndimage.binary_erosion(lung, iterations=int(rng.integers(2, 8)))
        lung &= np.arange(img.shape[0])[:, None] > y0 + height * rng.uniform(0.4, 0.7)
        out[lung] = img[lung]
    bone = img > BONE_HU
    out[bone] = img[bone]
    return out.astype(np.float32)


def abdomen_canvas(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A copy of a chest canvas (HU, 3 mm voxels, z from feet to head, y front to back, x patient right to left)
    with an upper abdomen below it: the slices under the body's lowest one filled, down to a random depth, with
    an abdomen slice (:func:`abdomen_slice`, built once from a slice near the body's bottom, so the organs run
    straight down), and the domes of the liver (patient right) and of the stomach and spleen (left, lower) rising
    into the lung bases, where they replace lung voxels only. The heart and every other non-lung voxel of the chest
    stay, so the canvas's presence targets do not change. The phantom's scans end just below the heart, so without
    this no coronal or sagittal training slice shows the liver under the lung, as real chest CT slices beside and
    below the heart do. (On the real Philips CT the sagittal network's stray run over the right lung turned out to
    come from a nodule, not from the liver: :func:`add_nodules`.) None when the canvas has no room or too little
    body below its chest.
    """
    lo, hi = body_box(canvas)
    z0 = lo[0]
    if z0 < 2 or hi[0] - z0 < 4:
        return None
    slab = abdomen_slice(canvas[z0 + 2].astype(np.float32), rng)
    if slab is None:
        return None
    out = canvas.astype(np.float32)  # a copy
    z_bottom = max(0, z0 - int(rng.integers(*ABDOMEN_DEPTH_VOXELS)))
    out[z_bottom:z0] = slab[None] + rng.normal(0.0, 8.0, (z0 - z_bottom, *slab.shape)).astype(np.float32)
    out[z_bottom:z0][np.broadcast_to(slab <= OUTSIDE_HU, out[z_bottom:z0].shape)] = AIR_HU  # air stays clean
    height, width = hi[1] - lo[1], hi[2] - lo[2]
    dome = int(rng.integers(*LIVER_DOME_VOXELS))
    zs = np.arange(z0, min(z0 + dome, hi[0]))
    block = out[zs]  # the chest's lowest slices, up to the dome's top (a copy, written back below)
    lung = (block < LUNG_RANGE_HU[1]) & ndimage.binary_fill_holes(block > BODY_HU, structure=SLICEWISE)
    domes = ((lo[2] + width * rng.uniform(0.15, 0.35), dome, rng.uniform(*LIVER_HU), 8.0),
             (hi[2] - width * rng.uniform(0.15, 0.35), dome * rng.uniform(*LEFT_DOME_SHARE),
              rng.uniform(*VISCERA_HU), 25.0))
    y_centre = lo[1] + height * rng.uniform(0.4, 0.6)
    for x_centre, rise, hu, noise in domes:
        t = (zs - z0) / max(rise, 1.0)  # 0 at the chest's lowest slice, 1 at the dome's top
        shape = np.sqrt(np.clip(1.0 - t * t, 0.0, None))[:, None, None]  # radius share: a round dome
        rows = (np.arange(canvas.shape[1]) - y_centre)[None, :, None] / (height * rng.uniform(0.35, 0.5))
        cols = (np.arange(canvas.shape[2]) - x_centre)[None, None, :] / (width * rng.uniform(0.2, 0.3))
        cut = (rows**2 + cols**2 < shape**2) & lung
        block[cut] = hu + rng.normal(0.0, noise, int(cut.sum()))
        lung &= ~cut
    out[zs] = block
    return out


def _paint_tube(out: np.ndarray, keep: np.ndarray, points: np.ndarray, radius: float, hu: float,
                noise: float, rng: np.random.Generator) -> None:
    """Paint, in place, the voxels within ``radius`` (canvas voxels) of the polyline ``points`` ((n, 3), z, y, x)
    at ``hu`` with Gaussian noise, except where ``keep`` is set."""
    lo = np.maximum(np.floor(points.min(0) - radius - 1).astype(int), 0)
    hi = np.minimum(np.ceil(points.max(0) + radius + 2).astype(int), out.shape)
    if np.any(hi <= lo):
        return
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).astype(np.float32)
    near = np.full(grid.shape[:3], np.inf, np.float32)
    cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    for t in np.linspace(0.0, cumulative[-1], max(2, int(np.ceil(cumulative[-1] * 2.0)) + 1)):
        # the polyline sampled every half voxel: the tube is the union of the balls along it
        centre = np.array([np.interp(t, cumulative, points[:, k]) for k in range(3)], np.float32)
        near = np.minimum(near, ((grid - centre) ** 2).sum(-1))
    inside = (near <= radius * radius) & ~keep[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    block = out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    block[inside] = hu + rng.normal(0.0, noise, int(inside.sum()))


def mediastinum_canvas(canvas: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A copy of a chest canvas (HU, 3 mm voxels, z superior, y posterior, x patient left) with a mediastinum: fat
    between the heart and the spine and above the heart up to the thoracic inlet, around the great vessels as
    soft-tissue tubes (ascending aorta from the heart's upper third, arch, descending aorta in front of the spine
    on the left down the whole chest, pulmonary trunk, superior vena cava on the right, the arch's branches) and
    the trachea as an air tube. Bone, the body's edge and the heart (soft tissue inside its box) stay as they
    are.

    The phantom's heart is a sphere with lung behind and above it, so a midline sagittal slice shows a round heart
    surrounded by lung. In a real chest the heart, the great vessels and the descending aorta form one soft-tissue
    mass against the spine, and the sagittal networks trained on the phantom split the real CT's heart run there
    (``docs/training.md``, Known limits). The heart's presence targets do not change; axial slices above the heart
    now hold great vessels and no heart (target 0). ``targets``: the canvas's (3, 128) presence targets. None
    when the canvas has no heart."""
    present = [np.nonzero(targets[a] > 0.5)[0] for a in range(3)]
    if any(len(p) == 0 for p in present):
        return None
    (hz0, hz1), (hy0, hy1), (hx0, hx1) = [(float(p[0]), float(p[-1])) for p in present]
    lo, hi = body_box(canvas)
    out = canvas.astype(np.float32)  # a copy
    bone = out > BONE_HU
    body = ndimage.binary_fill_holes(out > BODY_HU, structure=SLICEWISE)  # lungs included
    edge = ~ndimage.binary_erosion(body, iterations=3)  # outside air and the body's rim stay
    keep = bone | edge
    heart_y, heart_x = (hy0 + hy1) / 2.0, (hx0 + hx1) / 2.0
    mid_x = (lo[2] + hi[2]) / 2.0
    # the spine: the first bone behind the heart's centre in the midline column, over the heart's height
    column = bone[int(hz0):int(hz1) + 1, int(heart_y):, int(mid_x)]
    rows = np.nonzero(column.any(axis=0))[0]
    spine_y = heart_y + float(rows[0]) if len(rows) else min(hy1 + 8.0, hi[1] - 4.0)
    top = float(hi[0] - 2)
    arch_z = float(min(hz1 + rng.uniform(5.0, 12.0), top - 4.0))
    # fat: a column of elliptical cross-section from the sternum to the spine around the midline, above the heart
    # up to the inlet, and behind the heart down to the diaphragm; not into the heart
    half_width = (hi[2] - lo[2]) * rng.uniform(0.09, 0.15)
    zz, yy, xx = np.ogrid[:out.shape[0], :out.shape[1], :out.shape[2]]
    sternum_y = lo[1] + rng.uniform(4.0, 8.0)
    centre_y, half_depth = (sternum_y + spine_y) / 2.0, (spine_y - sternum_y) / 2.0
    across = ((xx - mid_x - rng.uniform(-1.0, 2.0)) / half_width) ** 2 + ((yy - centre_y) / half_depth) ** 2 < 1.0
    fat = (zz >= lo[0]) & (zz <= top) & across & ((yy >= hy1 - 2.0) | (zz > hz1 - 2.0))
    # the heart (soft tissue inside its box) stays: only fat and lung of the box may become mediastinum
    heart = (zz >= hz0) & (zz <= hz1) & (yy >= hy0) & (yy <= hy1) & (xx >= hx0) & (xx <= hx1) & (out > -20.0)
    keep = keep | heart
    fat &= ~keep
    out[fat] = rng.uniform(*MEDIASTINAL_FAT_HU) + rng.normal(0.0, 15.0, int(fat.sum()))
    blood = rng.uniform(*GREAT_VESSEL_HU)

    def tube(points: list[tuple[float, float, float]], radius: tuple[float, float], hu: float = blood,
             noise: float = 8.0) -> float:
        r = float(rng.uniform(*radius))
        _paint_tube(out, keep, np.asarray(points, np.float32), r, hu, noise, rng)
        return r

    r_desc = float(rng.uniform(*DESCENDING_RADIUS_VOXELS))
    desc = (spine_y - r_desc - rng.uniform(0.0, 1.5), mid_x + r_desc * rng.uniform(0.6, 1.6))
    asc = (heart_y - (hy1 - hy0) * rng.uniform(0.0, 0.2), mid_x - rng.uniform(0.0, 3.0))
    r_asc = tube([(hz1 - (hz1 - hz0) * rng.uniform(0.25, 0.4), *asc), (arch_z, *asc)], AORTA_RADIUS_VOXELS)
    arch_top = arch_z + rng.uniform(1.0, 3.0)
    arch = [(arch_z, *asc), (arch_top, (asc[0] + desc[0]) / 2.0, (asc[1] + desc[1]) / 2.0), (arch_z, *desc)]
    _paint_tube(out, keep, np.asarray(arch, np.float32), (r_asc + r_desc) / 2.0, blood, 8.0, rng)
    _paint_tube(out, keep, np.asarray([(arch_z, *desc), (float(lo[0]), *desc)], np.float32), r_desc, blood, 8.0,
                rng)
    trunk_start = (hz1 - (hz1 - hz0) * rng.uniform(0.1, 0.25), hy0 + (hy1 - hy0) * rng.uniform(0.2, 0.35),
                   heart_x + rng.uniform(0.0, 4.0))
    tube([trunk_start, (min(hz1 + rng.uniform(2.0, 5.0), arch_z - 1.0), asc[0] + rng.uniform(2.0, 5.0),
                        trunk_start[2] + rng.uniform(0.0, 2.0))], TRUNK_RADIUS_VOXELS)
    cava_x = asc[1] - r_asc - rng.uniform(2.5, 4.5)
    tube([(hz1 - (hz1 - hz0) * rng.uniform(0.1, 0.25), asc[0] + rng.uniform(0.0, 2.0), cava_x),
          (top, asc[0] + rng.uniform(0.0, 3.0), cava_x)], CAVA_RADIUS_VOXELS)
    for share in sorted(rng.uniform(0.15, 0.85, 3)):  # brachiocephalic, left carotid, left subclavian
        y = asc[0] + (desc[0] - asc[0]) * share
        x = asc[1] + (desc[1] - asc[1]) * share
        tube([(arch_top, y, x), (top, y - rng.uniform(0.0, 3.0), x + rng.uniform(-4.0, 4.0))], BRANCH_RADIUS_VOXELS)
    trachea_y = spine_y - rng.uniform(3.0, 6.0)
    tube([(arch_z - rng.uniform(0.0, 3.0), trachea_y, mid_x), (top, trachea_y - rng.uniform(0.0, 3.0), mid_x)],
         TRACHEA_RADIUS_VOXELS, hu=AIR_HU + 40.0, noise=15.0)
    return out


def augment_slice(img: np.ndarray, plane: str, rng: np.random.Generator, probability: float,
                  where: SliceContext | None = None, nodules: float = 0.0,
                  nodule_diameter_mm: tuple[float, float] = NODULE_DIAMETER_MM) -> np.ndarray:
    """Each change (breasts when ``where`` is given, zoom, lung vessels, table, then the tissue remap of all)
    applied with ``probability``; lung nodules (:func:`add_nodules`, ``nodule_diameter_mm`` across), before the
    zoom, with ``nodules``."""
    if nodules > 0.0 and rng.random() < nodules:
        img = add_nodules(img, rng, nodule_diameter_mm)
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
