"""Where the heart is in a non-contrast chest CT: an anatomical heuristic (no learned weights).

The classic threshold calcium score (HU >= 130) is only meaningful inside the heart: sternum, ribs, spine and
calcified costal cartilage are also >= 130 HU. :func:`find_heart_region` returns a bounding box around the heart and
a mask of voxels where calcium may be counted, reasoning only with anatomy:

1. Working grid: the volume is block-averaged to voxels of about 3 mm (fast, and it denoises low-dose images) and
   viewed in a canonical frame (superior, posterior, patient-left) worked out from the direction matrix, so head-
   or feet-first scans and any row / column order are handled.
2. Body: tissue (> -500 HU) inside the reconstruction circle, largest component, holes filled. Lungs: air (< -400 HU)
   inside the body (or anywhere in a small reconstruction circle that the patient fills, which cuts the lungs), in
   large, thick 3-D components whose mean HU is that of parenchyma (not of bowel gas or of the gap between patient
   and table). No lungs: the heart is not in the field of view.
3. Thoracic cavity: per axial slice, the convex hull of lungs, large bones and the anterior ribs / costal cartilage,
   shrunk by the chest wall's thickness. Mediastinum: its non-air, non-lung, non-bone part in front of the spine.
4. Heart slices: the widest mediastinum between the two lungs above the liver dome and below the carina; upwards
   the heart ends where the mediastinum narrows to the great vessels (or at the carina), downwards at the waist where
   the area, shrinking towards the apex, grows again because the liver has begun.
5. Heart: the soft tissue (myocardium and blood, > -30 HU) of the mediastinum in those slices, one component.
   Box: its extent, grown by the epicardial fat where the coronaries run (12 mm; 6 mm head-feet). Mask: the heart,
   the mediastinal fat within 12 mm of it and small dense things in that fat (plaques), not other sizeable soft-tissue
   structures (chest wall, costal cartilage) nor large bones; on the full grid every >= 130 HU component touching a
   bone (the partial-volume rim of sternum, ribs, spine) is removed as well.

Conventions: arrays are (z, y, x) = (slice, row, column); HU; millimetres; patient coordinates are DICOM LPS
(x towards the patient's left, y posterior, z superior). The direction matrix has the LPS unit vectors of the x, y
and z array axes as its columns: voxel (z, y, x) lies at ``origin + direction @ [x*sx, y*sy, z*sz]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from cacflow.imaging.volume import box_lps_corners

#: Bump when the heuristic's output changes, so that finished scans are redone.
HEURISTIC_VERSION = 1

#: Stable reason codes of :class:`HeartNotFound` (all in :data:`cacflow.discovery.reasons.REASONS`).
NOT_IN_FIELD_OF_VIEW = "heart_not_in_field_of_view"
IMPLAUSIBLE = "heart_region_implausible"
NOT_AXIAL = "not_axial"  # normally excluded before scoring; here only as a guard

# Working grid and tissue thresholds (HU are block means on the working grid unless said otherwise)
WORK_VOXEL_MM = 3.0  # in-plane and slice size (mm) of the working grid
AIR_HU = -400.0  # below: air or lung
BODY_HU = -500.0  # above: patient tissue
BONE_HU = 200.0  # above, in a component of at least BONE_MIN_COMPONENT_ML: bone
BONE_MIN_COMPONENT_ML = 1.5  # calcified plaques are far smaller
CALCIUM_HU = 130.0  # the classic threshold (full grid): bone edges above it must not leak into the mask
HEART_TISSUE_HU = -30.0  # above: myocardium, blood, vessels; below: fat
RIB_HU = 100.0  # anterior ribs and costal cartilage that carry the thoracic cavity forward

# Lungs
OUTSIDE_AIR_MAX_MEAN_HU = -940.0  # blocks above this on the reconstruction circle's rim are patient, not outside air
FILLED_RIM_FRACTION = 0.5  # the patient fills the circle when this share of its rim is patient
LUNG_MIN_MEAN_HU = -965.0  # air components with a lower mean are gas (stomach, bowel), not parenchyma
LUNG_MIN_COMPONENT_ML = 20.0
LUNG_MIN_DEPTH_MM = 24.0  # a lung holds a disk of this radius somewhere; table gaps and bowel gas do not
CUT_LUNG_MIN_DEPTH_MM = 12.0  # the same for lungs cut by the reconstruction circle (small field of view)
LUNGS_MIN_ML = 150.0  # less lung than this: no chest in the field of view

# Thoracic cavity and mediastinum
SKIN_MM = 10.0  # dense things closer than this to the skin (ECG electrodes, wires) do not shape the cavity
CROP_ANTERIOR_MM = 60.0  # the working crop reaches this far in front of the lungs (heart against the chest wall)
CROP_MARGIN_MM = 15.0  # and this far beyond them elsewhere
CHEST_WALL_MM = 8.0  # the hull of lungs and bones is eroded by this to drop ribs, cartilage and intercostals
OPENING_MM = 6.0  # opening radius that cuts vessels in the lungs and thin chest-wall layers off the mediastinum
MEDIASTINUM_MIN_AREA_CM2 = 12.0  # narrower mediastinum between the lungs in every slice: no heart

# Heart slices
DOME_TISSUE_FRACTION = 0.35  # lateral right hemithorax: share of non-lung tissue in the lung's hull at the liver dome
ABOVE_DOME_PEAK_MM = 8.0  # the widest heart slice is sought this far above the dome and higher
TOP_AREA_FRACTION = 0.5  # above the heart the mediastinum narrows below this share of its widest slice
WAIST_RISE = 1.25  # going down, the mediastinal area rising by this factor over its minimum means liver
VALLEY_DEPTH = 0.8  # a scan starting in the liver: the area first falls below this share of the first slice's
BELOW_WAIST_MM = 3.0  # the heart slices start this far below the waist
TRACHEA_AREA_CM2 = (0.8, 8.0)  # cross-section of the trachea on the working grid
TRACHEA_MAX_MEAN_HU = -700.0  # air with a partial-volume wall
TRACHEA_MIDLINE_MM = 25.0  # at most this far left or right of the spine
TRACHEA_AHEAD_MM = (15.0, 80.0)  # this far in front of the vertebral bodies (oesophageal air lies closer)
TRACHEA_MIN_LENGTH_MM = 15.0
ABOVE_CARINA_MM = 4.0  # the heart slices end this far above the carina (the aortic arch lies higher)

# Heart, box and mask
SUBPULMONARY_MM = 12.0  # below the widest slice, tissue this close under lung is liver or spleen, not heart
BOTTOM_SKIP_MM = 12.0  # the lowest part of the heart (touching liver and spleen) does not set the in-plane box
EPICARDIAL_MM = 12.0  # the coronaries run in the fat within this distance of heart muscle and blood; box margin
BOX_MARGIN_Z_MM = 6.0  # head-feet box margin
OTHER_STRUCTURE_ML = 3.0  # separate soft-tissue structures this large near the heart are not heart
MASK_DILATION_MM = 6.0  # final dilation of the mask, so plaques cut by block edges stay inside
PLAUSIBLE_INPLANE_MM = (60.0, 210.0)  # heart region front-back and left-right (before the epicardial margin)
PLAUSIBLE_MIN_Z_MM = 40.0  # head-feet, unless the scan itself is shorter


@dataclass(frozen=True)
class HeartRegion:
    """A heart bounding box and a mask of voxels where calcium may be counted.

    Attributes:
        box_zyx: ``(z0, z1, y0, y1, x0, x1)`` half-open voxel index ranges on the input grid.
        mask: bool array (z, y, x), the input's shape: True where calcium may be counted (inside the box only).
        box_lps_mm: ``(min corner, max corner)`` of the box in patient LPS mm (voxel centres of the first and last
            voxel of each range, transformed and sorted per LPS axis).
        method: ``"heuristic"``, or ``"user"`` for a region the user supplied instead.
        qc: plain floats (lung_volume_ml, region_volume_ml, box extents in mm, confidence 0-1, ...).
    """

    box_zyx: tuple[int, int, int, int, int, int]
    mask: np.ndarray = field(repr=False)
    box_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]]
    method: str
    qc: dict[str, float]


class HeartNotFound(Exception):
    """No plausible heart region. ``reason`` is a stable code, ``message`` says why in words (no identifiers).

    Reasons: ``heart_not_in_field_of_view`` (no lungs or no mediastinum between them: abdomen, head, a scan that
    ends above the carina, ...), ``heart_region_implausible`` (a region was found but its size or position is not
    that of a heart), ``not_axial`` (slices not axial: the anatomy cannot be read; normally excluded earlier).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across worker processes
        return (type(self), (self.reason, self.message))


# ------------------------------------------------------------------------------------------------------------------
# Working grid: block-averaged, reoriented to canonical axes (superior, posterior, left).


@dataclass(frozen=True)
class _Frame:
    """Mapping between the input grid and the canonical working grid.

    ``factors``: block size per input axis (z, y, x). ``perm[c]``: the input axis that becomes canonical axis ``c``
    (0 superior, 1 posterior, 2 left); ``flip[c]``: whether it is reversed so that the index increases towards
    superior / posterior / left. ``spacing``: working voxel size (mm) along the canonical axes.
    """

    factors: tuple[int, int, int]
    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def pixel_cm2(self) -> float:
        return self.spacing[1] * self.spacing[2] / 100.0


def _working_frame(shape: tuple[int, ...], spacing_zyx_mm: tuple[float, float, float], direction: np.ndarray) -> _Frame:
    """Block factors (to about :data:`WORK_VOXEL_MM`) and the axis permutation / flips to canonical axes."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    axis_vectors = (d[:, 2], d[:, 1], d[:, 0])  # LPS direction of input axes z, y, x
    lps_to_canonical = {2: 0, 1: 1, 0: 2}  # LPS component S -> canonical 0, P -> 1, L -> 2
    perm: list[int] = [-1, -1, -1]
    flip: list[bool] = [False, False, False]
    for axis, v in enumerate(axis_vectors):
        k = int(np.argmax(np.abs(v)))
        c = lps_to_canonical[k]
        if perm[c] != -1:
            raise HeartNotFound(NOT_AXIAL, "the direction matrix does not map the array axes onto distinct "
                                           "patient axes")
        perm[c] = axis
        flip[c] = bool(v[k] < 0)
    if perm[0] != 0 or abs(float(d[2, 2])) < np.cos(np.radians(30.0)):
        raise HeartNotFound(NOT_AXIAL, "slices are not axial (slice normal more than 30 degrees from the "
                                       "head-feet axis): the anatomy cannot be read")
    factors = tuple(max(1, min(int(n), int(round(WORK_VOXEL_MM / float(s))))) for n, s in zip(shape, spacing_zyx_mm))
    work = [float(s) * f for s, f in zip(spacing_zyx_mm, factors)]
    return _Frame(factors=factors, perm=tuple(perm), flip=tuple(flip),  # type: ignore[arg-type]
                  spacing=tuple(work[a] for a in perm))  # type: ignore[arg-type]


def _block_mean(hu: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Mean HU over blocks of ``factors`` voxels (float32); trailing voxels that do not fill a block are dropped."""
    fz, fy, fx = factors
    nz, ny, nx = (n // f for n, f in zip(hu.shape, factors))
    v = hu[: nz * fz, : ny * fy, : nx * fx]
    rows = v[:, 0::fy].astype(np.float32)
    for i in range(1, fy):
        rows += v[:, i::fy]
    cols = rows[:, :, 0::fx].copy()
    for i in range(1, fx):
        cols += rows[:, :, i::fx]
    out = cols[0::fz].copy()
    for i in range(1, fz):
        out += cols[i::fz]
    out /= float(fz * fy * fx)
    return out


def _to_canonical(a: np.ndarray, frame: _Frame) -> np.ndarray:
    """View of a working-grid array (input axis order) in the canonical frame (superior, posterior, left)."""
    a = np.transpose(a, frame.perm)
    for c in range(3):
        if frame.flip[c]:
            a = np.flip(a, axis=c)
    return a


def _from_canonical(a: np.ndarray, frame: _Frame) -> np.ndarray:
    """Inverse of :func:`_to_canonical`."""
    for c in range(3):
        if frame.flip[c]:
            a = np.flip(a, axis=c)
    return np.transpose(a, np.argsort(frame.perm))


# ------------------------------------------------------------------------------------------------------------------
# Anatomy on the canonical working grid (axes: superior, posterior, left).

_PLANE4 = np.zeros((3, 3, 3), dtype=bool)
_PLANE4[1] = ndi.generate_binary_structure(2, 1)  # in-slice 4-connectivity, no link between slices


def _outside_field_of_view(v: np.ndarray) -> np.ndarray:
    """(P, L) bool: padding outside the reconstruction circle, i.e. blocks that hold the same value <= -1000 HU in
    every slice (real air is noisy)."""
    if v.shape[0] < 3:
        return np.zeros(v.shape[1:], dtype=bool)
    first = v[0]
    return (first <= -1000.0) & np.all(v == first[None], axis=0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a 3-D mask (all False when empty)."""
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill 2-D holes in every axial slice (one call: padding slices keep the slices apart)."""
    padded = np.pad(mask, ((1, 1), (0, 0), (0, 0)))
    return ndi.binary_fill_holes(padded, structure=_PLANE4)[1:-1]


def _body_mask(v: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Patient body: tissue (> -500 HU), opened to cut thin table parts, largest 3-D component, 2-D holes filled."""
    tissue = (v > BODY_HU) & fov[None]
    tissue = ndi.binary_opening(tissue, structure=_PLANE4)
    return _fill_holes_per_slice(_largest_component(tissue))


def _patient_fills_circle(v: np.ndarray, fov: np.ndarray) -> bool:
    """Whether the patient fills the reconstruction circle (a field of view smaller than the chest, as in
    heart-targeted reconstructions): most blocks along the circle's rim are tissue or lung, not outside air."""
    if fov.all():
        return False  # no circle: a tight rectangular crop cannot be told from a patient touching the border
    rim = ndi.binary_dilation(~fov)
    rim[0, :] = rim[-1, :] = rim[:, 0] = rim[:, -1] = True
    rim &= fov
    return bool(rim.any()) and float(np.mean(v[:, rim] > OUTSIDE_AIR_MAX_MEAN_HU)) >= FILLED_RIM_FRACTION


def _lung_mask(v: np.ndarray, fov: np.ndarray, body: np.ndarray, voxel_ml: float,
               spacing_pl: tuple[float, float]) -> np.ndarray:
    """Lungs: air (< -400 HU) inside the body, in large 3-D components whose mean HU is that of lung parenchyma (not
    pure gas: stomach, bowel) and that are thick somewhere (not the gap between patient and table, not bowel gas).

    When the patient fills the reconstruction circle, the circle cuts the lungs (they are not holes of the body and
    may be thin crescents): then all air inside the circle counts and the thickness needed is lower."""
    air = (v < AIR_HU) & fov[None]
    cut = _patient_fills_circle(v, fov)
    internal = air if cut else air & body
    lab3, n3 = ndi.label(internal)
    if n3 == 0:
        return np.zeros_like(internal)
    idx = np.arange(1, n3 + 1)
    vol_ml = np.bincount(lab3.ravel(), minlength=n3 + 1)[1:] * voxel_ml
    means3 = np.asarray(ndi.mean(v, lab3, idx))
    need = CUT_LUNG_MIN_DEPTH_MM if cut else LUNG_MIN_DEPTH_MM
    keep = np.zeros(n3 + 1, dtype=bool)
    boxes = ndi.find_objects(lab3)
    for i in idx[(vol_ml >= LUNG_MIN_COMPONENT_ML) & (means3 >= LUNG_MIN_MEAN_HU)]:
        keep[i] = _thickest_mm(lab3[boxes[i - 1]] == i, spacing_pl) >= need
    return keep[lab3]


def _thickest_mm(mask: np.ndarray, spacing_pl: tuple[float, float]) -> float:
    """Radius (mm) of the largest disk that fits inside ``mask`` in some axial slice (lungs are thick; gaps between
    patient and table and bowel gas are not). Computed on every second pixel when pixels are under 4 mm (an
    underestimate by at most one coarse pixel: lungs are far thicker than the threshold)."""
    step = 2 if max(spacing_pl) < 4.0 else 1
    sub = np.pad(mask[:, ::step, ::step], ((0, 0), (1, 1), (1, 1)))
    depth = ndi.distance_transform_edt(sub, sampling=(1e6, step * spacing_pl[0], step * spacing_pl[1]))
    return float(depth.max())


def _big_bone(v: np.ndarray, fov: np.ndarray, voxel_ml: float) -> np.ndarray:
    """Large dense components (sternum, ribs, spine): block mean >= 200 HU and >= 1.5 ml. Calcified plaques are
    small and are not included."""
    dense = (v >= BONE_HU) & fov[None]
    lab, n = ndi.label(dense, structure=ndi.generate_binary_structure(3, 2))
    if n == 0:
        return dense
    vol_ml = np.bincount(lab.ravel(), minlength=n + 1) * voxel_ml
    keep = vol_ml >= BONE_MIN_COMPONENT_ML
    keep[0] = False
    return keep[lab]


def _span(mask: np.ndarray, axis: int) -> np.ndarray:
    """True between the first and the last True along ``axis`` (inclusive), per line."""
    fwd = np.maximum.accumulate(mask, axis=axis)
    rev = np.flip(np.maximum.accumulate(np.flip(mask, axis=axis), axis=axis), axis=axis)
    return fwd & rev


def _fill_nan(values: np.ndarray) -> np.ndarray:
    """Replace NaN by linear interpolation / nearest value; all-NaN stays NaN."""
    ok = np.isfinite(values)
    if not ok.any() or ok.all():
        return values
    idx = np.arange(values.size)
    return np.interp(idx, idx[ok], values[ok])


def _disk(radius_mm: float, spacing_pl: tuple[float, float]) -> np.ndarray:
    """In-slice disk structuring element (3-D, one plane) of ``radius_mm`` for pixel size ``spacing_pl`` (mm)."""
    rp = max(0, int(np.floor(radius_mm / spacing_pl[0] + 1e-6)))
    rl = max(0, int(np.floor(radius_mm / spacing_pl[1] + 1e-6)))
    p, q = np.mgrid[-rp:rp + 1, -rl:rl + 1]
    d2 = (p * spacing_pl[0]) ** 2 + (q * spacing_pl[1]) ** 2
    return (d2 <= radius_mm**2 + 1e-6)[None]


def _convex_hull_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill the 2-D convex hull of ``mask`` in every axial slice (pixel squares, so one pixel is its own hull)."""
    out = np.zeros_like(mask)
    n_p, n_l = mask.shape[1:]
    for s in range(mask.shape[0]):
        sl = mask[s]
        rows = np.flatnonzero(sl.any(axis=1))
        if rows.size == 0:
            continue
        lo = sl.argmax(axis=1)[rows]
        hi = n_l - 1 - sl[:, ::-1].argmax(axis=1)[rows]
        ends = np.concatenate([np.stack([rows, lo], 1), np.stack([rows, hi], 1)]).astype(np.float64)
        corners = np.concatenate([ends + [dp, dl] for dp in (-0.5, 0.5) for dl in (-0.5, 0.5)])
        try:
            eq = ConvexHull(corners).equations
        except QhullError:  # degenerate (all points on a line): keep the pixels themselves
            out[s] = sl
            continue
        p0, p1, l0, l1 = int(rows[0]), int(rows[-1]) + 1, int(lo.min()), int(hi.max()) + 1
        pp = np.arange(p0, p1, dtype=np.float64)[None, :, None]
        ll = np.arange(l0, l1, dtype=np.float64)[None, None, :]
        inside = eq[:, 0, None, None] * pp + eq[:, 1, None, None] * ll + eq[:, 2, None, None] <= 1e-9
        out[s, p0:p1, l0:l1] = inside.all(axis=0)
    return out


@dataclass
class _Thorax:
    """Masks on the canonical working grid (axes superior, posterior, left), cropped in-plane around the lungs."""

    v: np.ndarray
    fov: np.ndarray
    body: np.ndarray
    air: np.ndarray  # air inside the body (lungs, airways, gas)
    lung: np.ndarray
    bone: np.ndarray
    soft: np.ndarray  # mediastinal soft tissue and fat: inside the cavity, not lung / bone, in front of the spine
    core: np.ndarray  # the part of ``soft`` with lung on both sides (per row)
    spine_front: np.ndarray  # per slice: posterior index of the front of the vertebral body
    midline: float  # left-right index of the spine (or of the mediastinum)
    offset: tuple[int, int]  # (posterior, left) index of the crop's first voxel on the working grid


def _spine(bone: np.ndarray, lung: np.ndarray) -> tuple[np.ndarray, float]:
    """Front of the vertebral body per slice (posterior index; large bone between the lungs, in the posterior half
    of the lungs' extent) and the left-right index of the midline."""
    ns, n_p, n_l = bone.shape
    between = _span(lung, axis=2)
    lung_rows = lung.any(axis=2)
    p_centre = np.array([np.mean(np.flatnonzero(r)) if r.any() else np.nan for r in lung_rows])
    p_centre = _fill_nan(p_centre)
    if np.isnan(p_centre).all():
        return np.full(ns, float(n_p)), n_l / 2.0
    spine = bone & between & (np.arange(n_p)[None, :, None] > p_centre[:, None, None])
    front = np.full(ns, np.nan)
    for s in range(ns):
        rows = np.flatnonzero(spine[s].any(axis=1))
        if rows.size:
            front[s] = float(rows[0])
    front = _fill_nan(front)
    if np.isnan(front).all():
        front = np.full(ns, float(n_p))
    cols = np.nonzero(spine)[2]
    midline = float(np.median(cols)) if cols.size else float("nan")
    return front, midline


def _anterior_wall_points(v: np.ndarray, body: np.ndarray, lung: np.ndarray,
                          spacing_pl: tuple[float, float]) -> np.ndarray:
    """Dense blocks (>= :data:`RIB_HU`) of the anterior chest wall: anterior ribs, costal cartilage, sternum pieces.

    Where the heart touches the front of the chest there is no lung in front of it; these points carry the
    thoracic cavity forward to the rib cage. Kept: inside the body by more than :data:`SKIN_MM` (not ECG
    electrodes), in front of the lungs' centre and within their left-right extent (not arm bones or scapulae)."""
    dense = (v >= RIB_HU) & ndi.binary_erosion(body, structure=_disk(SKIN_MM, spacing_pl))
    lab, n = ndi.label(dense, structure=np.ones((3, 3, 3), dtype=bool))
    big = np.bincount(lab.ravel(), minlength=n + 1) >= 3  # isolated noisy blocks are not cartilage
    big[0] = False
    dense = big[lab]
    n_p, n_l = v.shape[1:]
    out = np.zeros_like(dense)
    for s in np.flatnonzero(lung.any(axis=(1, 2)) & dense.any(axis=(1, 2))):
        rows = np.flatnonzero(lung[s].any(axis=1))
        cols = np.flatnonzero(lung[s].any(axis=0))
        p_mid = int((rows[0] + rows[-1]) // 2)
        out[s, :p_mid, cols[0]:cols[-1] + 1] = dense[s, :p_mid, cols[0]:cols[-1] + 1]
    return out


def _thorax(v: np.ndarray, frame: _Frame) -> _Thorax:
    """Body, lungs, bones, spine and mediastinum on the canonical working grid ``v`` (block-mean HU)."""
    fov = ~_outside_field_of_view(v)
    body = _body_mask(v, fov)
    lung = _lung_mask(v, fov, body, frame.voxel_ml, (frame.spacing[1], frame.spacing[2]))
    lung_ml = float(lung.sum()) * frame.voxel_ml
    if lung_ml < LUNGS_MIN_ML:
        raise HeartNotFound(NOT_IN_FIELD_OF_VIEW, f"no lungs in the field of view ({lung_ml:.0f} ml of lung-like "
                                                  f"air, need {LUNGS_MIN_ML:.0f} ml)")
    # everything else happens around the lungs: crop (in-plane) to them, with room for the front of the chest
    rows = np.flatnonzero(lung.any(axis=(0, 2)))
    cols = np.flatnonzero(lung.any(axis=(0, 1)))
    ant = int(np.ceil(CROP_ANTERIOR_MM / frame.spacing[1]))
    side = int(np.ceil(CROP_MARGIN_MM / frame.spacing[2]))
    p0, p1 = max(0, int(rows[0]) - ant), min(v.shape[1], int(rows[-1]) + 1 + side)
    l0, l1 = max(0, int(cols[0]) - side), min(v.shape[2], int(cols[-1]) + 1 + side)
    offset = (p0, l0)
    v = np.ascontiguousarray(v[:, p0:p1, l0:l1])
    fov, body, lung = fov[p0:p1, l0:l1], body[:, p0:p1, l0:l1], lung[:, p0:p1, l0:l1]
    bone = _big_bone(v, fov, frame.voxel_ml)
    spine_front, midline = _spine(bone, lung)
    pl = (frame.spacing[1], frame.spacing[2])
    frame_points = lung | bone | _anterior_wall_points(v, body, lung, pl)
    cavity = ndi.binary_erosion(_convex_hull_per_slice(frame_points), structure=_disk(CHEST_WALL_MM, pl))
    anterior = np.arange(v.shape[1])[None, :, None] < spine_front[:, None, None]
    soft = cavity & (v > AIR_HU) & fov[None] & ~lung & ~bone & anterior
    soft = ndi.binary_opening(soft, structure=_disk(OPENING_MM, pl))
    core = soft & _span(lung, axis=2)
    if np.isnan(midline):
        cols = np.nonzero(core)[2]
        midline = float(np.median(cols)) if cols.size else v.shape[2] / 2.0
    air = (v < AIR_HU) & body
    return _Thorax(v, fov, body, air, lung, bone, soft, core, spine_front, midline, offset)


@dataclass(frozen=True)
class _Slices:
    """Heart slice range on the working grid (canonical index, half-open) and how each end was found."""

    start: int
    stop: int
    peak: int
    waist: int  # lowest heart slice: where the mediastinal area, narrowing downwards, widens again (liver)
    dome: int | None  # slice of the top of the liver dome, None when the scan starts above it
    top_found: bool  # False when the mediastinum never narrows (scan ends inside the heart)
    bottom_found: bool  # False when the heart reaches the first slice
    carina: int | None  # slice of the tracheal bifurcation (the heart ends below it), None when not seen


def _liver_dome(t: _Thorax, from_slice: int) -> int | None:
    """Highest slice at or below ``from_slice`` where the lateral right hemithorax is mostly not lung (the liver
    dome under the right lung), or None when the scan starts above the dome."""
    lung = t.lung
    cols = np.nonzero(lung)[2]
    lmin = float(cols.min())
    lateral_right = np.arange(lung.shape[2]) < t.midline - 0.5 * (t.midline - lmin)
    right = lung & lateral_right[None, None, :]
    hull = _convex_hull_per_slice(right[: from_slice + 1])
    tissue = hull & ~right[: from_slice + 1] & (t.v[: from_slice + 1] > AIR_HU)
    frac = tissue.sum(axis=(1, 2)) / np.maximum(hull.sum(axis=(1, 2)), 1)
    for s in range(from_slice, -1, -1):
        if frac[s] >= DOME_TISSUE_FRACTION or hull[s].sum() == 0:
            return s
    return None


def _carina(t: _Thorax, frame: _Frame) -> int | None:
    """Slice of the tracheal bifurcation, or None. The trachea is a small air tube (:data:`TRACHEA_AREA_CM2`) near
    the midline in front of the spine; the carina is the lowest slice of the uppermost run of slices that show it.
    Raises ``heart_not_in_field_of_view`` when that run reaches the lowest slice (scan above the heart). Sought
    in all air inside the body: above the carina the trachea is not connected to the lungs within the scan."""
    sp_p, sp_l = frame.spacing[1], frame.spacing[2]
    lo_a, hi_a = TRACHEA_AREA_CM2
    found = np.zeros(t.v.shape[0], dtype=bool)
    for s in np.flatnonzero(t.air.any(axis=(1, 2))):
        lab, n = ndi.label(t.air[s])
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        area = np.bincount(lab.ravel(), minlength=n + 1)[1:] * frame.pixel_cm2
        small = idx[(area >= lo_a) & (area <= hi_a)]
        if small.size == 0:
            continue
        means = np.asarray(ndi.mean(t.v[s], lab, small))
        centres = np.asarray(ndi.center_of_mass(t.air[s], lab, small)).reshape(-1, 2)
        ahead = (t.spine_front[s] - centres[:, 0]) * sp_p
        off_mid = np.abs(centres[:, 1] - t.midline) * sp_l
        found[s] = bool(np.any((means <= TRACHEA_MAX_MEAN_HU) & (off_mid <= TRACHEA_MIDLINE_MM)
                               & (ahead >= TRACHEA_AHEAD_MM[0]) & (ahead <= TRACHEA_AHEAD_MM[1])))
    hits = np.flatnonzero(found)
    if hits.size == 0:
        return None
    gap = 2  # tolerate one missed slice inside the run
    run_start = hits[-1]
    for h in hits[::-1][1:]:
        if run_start - h > gap:
            break
        run_start = h
    if (hits[-1] - run_start + 1) * frame.spacing[0] < TRACHEA_MIN_LENGTH_MM:
        return None
    if run_start <= np.flatnonzero(t.air.any(axis=(1, 2)))[0]:
        raise HeartNotFound(NOT_IN_FIELD_OF_VIEW, "the trachea runs down to the lowest slice: the scan "
                                                  "ends above the carina and the heart")
    return int(run_start)


def _initial_valley(area: np.ndarray) -> int | None:
    """Slice of the waist when the scan starts below the heart: going up from the first slice the mediastinal area
    falls (liver between the lung bases) to a minimum and then rises (heart). None when it does not first fall."""
    low_i, low = 0, float(area[0])
    for s in range(1, len(area)):
        if area[s] < low:
            low_i, low = s, float(area[s])
        elif area[s] > WAIST_RISE * low:
            break
    else:
        return None
    if low_i == 0 or low > VALLEY_DEPTH * float(area[0]):
        return None
    return low_i


def _heart_slices(t: _Thorax, frame: _Frame) -> _Slices:
    """Slices of the heart: between the waist that separates it from the liver (or the scan start) and the slice
    where the mediastinum narrows to the great vessels (or the scan end)."""
    dz = frame.spacing[0]
    area = ndi.median_filter(t.core.sum(axis=(1, 2)) * frame.pixel_cm2, size=3, mode="nearest")
    lung_area = t.lung.sum(axis=(1, 2)) * frame.pixel_cm2
    if area.max(initial=0.0) < MEDIASTINUM_MIN_AREA_CM2:
        raise HeartNotFound(NOT_IN_FIELD_OF_VIEW, "no mediastinum between two lungs (largest soft-tissue area "
                                                  f"between the lungs {area.max(initial=0.0):.0f} cm2)")
    dome = _liver_dome(t, int(np.argmax(lung_area)))
    carina = _carina(t, frame)
    lo = 0 if dome is None else dome + int(np.ceil(ABOVE_DOME_PEAK_MM / dz))
    valley = _initial_valley(area)
    if valley is not None:
        lo = max(lo, valley)
    hi = len(area) if carina is None else carina + 1  # the heart lies below the carina
    if lo >= hi or area[lo:hi].max() < MEDIASTINUM_MIN_AREA_CM2:
        where = "above the diaphragm" if carina is None else "between the diaphragm and the carina"
        raise HeartNotFound(NOT_IN_FIELD_OF_VIEW, f"no mediastinum between two lungs {where}")
    peak = lo + int(np.argmax(area[lo:hi]))
    stop, top_found = len(area), False
    for s in range(peak + 1, len(area)):
        if area[s] < TOP_AREA_FRACTION * area[peak]:
            stop, top_found = s + 1, True
            break
    if carina is not None:
        capped = carina + int(round(ABOVE_CARINA_MM / dz))  # half-open: the carina slice and a little above
        if capped < stop:
            stop, top_found = max(capped, peak + 1), True
    # going down from the widest slice the heart narrows; where the area grows again the liver has begun
    waist, low = 0, area[peak]
    waist_found = False
    for s in range(peak, -1, -1):
        if area[s] <= low:
            waist, low = s, area[s]
        elif area[s] > WAIST_RISE * low:
            waist_found = True
            break
    start = max(0, waist - int(round(BELOW_WAIST_MM / dz)))
    return _Slices(start=start, stop=stop, peak=peak, waist=waist, dome=dome, top_found=top_found,
                   bottom_found=waist_found, carina=carina)


def _heart_proper(t: _Thorax, sl: _Slices, frame: _Frame) -> np.ndarray:
    """Myocardium, blood and the roots of the great vessels: the 3-D component of mediastinal soft tissue (block
    mean > :data:`HEART_TISSUE_HU`) in the heart slices, from the waist up, that holds the most core voxels.
    Below the widest slice, tissue with lung less than :data:`SUBPULMONARY_MM` above it is left out: that is the
    top of the liver or spleen under a hemidiaphragm, which may touch the heart."""
    dense = t.soft & (t.v > HEART_TISSUE_HU)
    dense[: sl.waist] = False
    dense[sl.stop:] = False
    # below the widest slice, tissue with lung just above it is under a hemidiaphragm (liver, spleen), not heart
    k = int(np.ceil(SUBPULMONARY_MM / frame.spacing[0]))
    spacing_pl = (frame.spacing[1], frame.spacing[2])
    n_s = dense.shape[0]
    for shift in range(1, k + 1):
        hi = min(sl.peak, n_s - shift)
        if hi > sl.waist:
            dense[sl.waist:hi] &= ~t.lung[sl.waist + shift:hi + shift]
    # thin layers (chest wall muscle behind the cartilage, vessel walls) do not join the heart
    dense = ndi.binary_opening(dense, structure=_disk(OPENING_MM, spacing_pl))
    lab, n = ndi.label(dense)
    if n == 0:
        raise HeartNotFound(NOT_IN_FIELD_OF_VIEW, "no soft tissue between the lungs in the heart slices")
    counts = np.bincount(lab[t.core], minlength=n + 1)
    counts[0] = 0
    if counts.max() == 0:
        counts = np.bincount(lab.ravel(), minlength=n + 1)
        counts[0] = 0
    return lab == int(np.argmax(counts))


def _heart_box(heart: np.ndarray, sl: _Slices, dz: float) -> tuple[int, int, int, int, int, int]:
    """Working-grid box of the heart (half-open, canonical): slices ``sl.start:sl.stop``; in-plane, the extent of
    the heart muscle and blood above its lowest :data:`BOTTOM_SKIP_MM` (where the liver and spleen domes may touch
    it; the heart's inferior part is narrower than its middle). The epicardial margin is added on the input grid."""
    upper = heart.copy()
    skip = sl.waist + int(np.ceil(BOTTOM_SKIP_MM / dz))
    if upper[skip:].any():
        upper[:skip] = False
    _, _, p0, p1, l0, l1 = _bbox(upper)
    return sl.start, sl.stop, p0, p1, l0, l1


def _calcium_region(t: _Thorax, heart: np.ndarray, sl: _Slices, frame: _Frame,
                    box_c: tuple[int, int, int, int, int, int]) -> np.ndarray:
    """Working-grid mask (canonical) of where calcium may be counted: the heart, the mediastinal fat within
    :data:`EPICARDIAL_MM` of it (where the coronaries run) and small dense things in that fat (plaques), but not other
    sizeable soft-tissue structures (chest wall muscle, costal cartilage, descending aorta, oesophagus) nor large
    bones; dilated by :data:`MASK_DILATION_MM`. Computed inside ``box_c`` grown by the epicardial margin only."""
    grow = [int(np.ceil(EPICARDIAL_MM / s)) + 1 for s in frame.spacing]
    crop = tuple(slice(max(0, box_c[2 * c] - grow[c]), min(t.v.shape[c], box_c[2 * c + 1] + grow[c]))
                 for c in range(3))
    h, soft, v, bone = heart[crop], t.soft[crop], t.v[crop], t.bone[crop]
    dist = ndi.distance_transform_edt(~h, sampling=frame.spacing)
    near = dist <= EPICARDIAL_MM
    # other sizeable soft-tissue structures (chest wall, cartilage, descending aorta, oesophagus)
    lab, n = ndi.label((v > HEART_TISSUE_HU) & ~h & ~bone & t.fov[None, crop[1], crop[2]])
    big = np.bincount(lab.ravel(), minlength=n + 1) * frame.voxel_ml >= OTHER_STRUCTURE_ML
    big[0] = False
    other = ndi.binary_erosion(big[lab], structure=_PLANE4) & (dist > MASK_DILATION_MM)  # rim and heart side: plaques
    other[: max(0, sl.waist - crop[0].start)] = False  # below the waist: liver under the heart, keep what is near
    region = h | (soft & near & ~other)
    pl = (frame.spacing[1], frame.spacing[2])
    region = ndi.binary_dilation(region, structure=_disk(MASK_DILATION_MM, pl))
    region &= ~bone & ~other  # the partial-volume rim of bones is removed on the full grid (_drop_bone_contact)
    out = np.zeros(t.v.shape, dtype=bool)
    out[crop] = region
    return out


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """Half-open index ranges (a0, a1, b0, b1, c0, c1) of the True voxels of a non-empty 3-D mask."""
    out: list[int] = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        out += [int(idx[0]), int(idx[-1]) + 1]
    return tuple(out)  # type: ignore[return-value]


def _canonical_box_to_input(box_c: tuple[int, ...], frame: _Frame, work_shape_c: tuple[int, int, int],
                            input_shape: tuple[int, int, int], spacing_zyx_mm: tuple[float, float, float],
                            margins_mm: tuple[float, float, float]) -> tuple[int, int, int, int, int, int]:
    """Working-grid box (canonical, half-open) to a half-open box on the input grid, grown by ``margins_mm``
    (superior-inferior, anterior-posterior, left-right)."""
    ranges: list[tuple[int, int]] = [(0, 0)] * 3
    for c in range(3):
        lo, hi = box_c[2 * c], box_c[2 * c + 1]
        n_work = work_shape_c[c]
        if frame.flip[c]:
            lo, hi = n_work - hi, n_work - lo
        axis = frame.perm[c]
        f = frame.factors[axis]
        lo_in, hi_in = lo * f, hi * f
        if hi == n_work:  # trailing voxels that did not fill a block belong to the last block
            hi_in = input_shape[axis]
        grow = int(np.ceil(margins_mm[c] / float(spacing_zyx_mm[axis]) - 1e-9))
        ranges[axis] = (max(0, lo_in - grow), min(input_shape[axis], hi_in + grow))
    (z0, z1), (y0, y1), (x0, x1) = ranges
    return z0, z1, y0, y1, x0, x1


def _upsample_into_box(work_mask_in: np.ndarray, factors: tuple[int, int, int], input_shape: tuple[int, int, int],
                       box: tuple[int, int, int, int, int, int]) -> np.ndarray:
    """Full-resolution bool mask: ``work_mask_in`` (working grid, input axis order) repeated inside ``box``,
    False outside it."""
    out = np.zeros(input_shape, dtype=bool)
    idx = []
    for axis in range(3):
        lo, hi = box[2 * axis], box[2 * axis + 1]
        idx.append(np.minimum(np.arange(lo, hi) // factors[axis], work_mask_in.shape[axis] - 1))
    out[box[0]:box[1], box[2]:box[3], box[4]:box[5]] = work_mask_in[np.ix_(*idx)]
    return out


def _drop_bone_contact(mask: np.ndarray, hu: np.ndarray, box: tuple[int, int, int, int, int, int],
                       bone_in: np.ndarray, factors: tuple[int, int, int]) -> None:
    """Remove from ``mask`` (in place) every full-resolution >= 130 HU component inside the box that touches a large
    bone, with a one-voxel rim: the partial-volume edge of sternum, ribs and spine that the coarse grid misses."""
    sl = (slice(box[0], box[1]), slice(box[2], box[3]), slice(box[4], box[5]))
    dense = hu[sl] >= CALCIUM_HU
    if not dense.any():
        return
    bone = _upsample_into_box(bone_in, factors, hu.shape, box)[sl]
    lab, n = ndi.label(dense, structure=np.ones((3, 3, 3), dtype=bool))
    touching = np.unique(lab[bone & dense])
    touching = touching[touching > 0]
    if touching.size == 0:
        return
    hit = np.zeros(n + 1, dtype=bool)
    hit[touching] = True
    drop = ndi.binary_dilation(hit[lab], structure=np.ones((3, 3, 3), dtype=bool))
    mask[sl] &= ~drop


def _check_inputs(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], origin_lps_mm: tuple[float, ...],
                  direction: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray, np.ndarray]:
    hu = np.asarray(hu)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise ValueError(f"hu must be a non-empty 3-D (z, y, x) array, got shape {hu.shape}")
    sp = tuple(float(s) for s in spacing_zyx_mm)
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing_zyx_mm must be three positive numbers (mm), got {spacing_zyx_mm}")
    origin = np.asarray(origin_lps_mm, dtype=np.float64).reshape(3)
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != (3, 3) or not np.all(np.isfinite(d)):
        raise ValueError(f"direction must be a finite 3x3 matrix, got shape {d.shape}")
    return hu, sp, origin, d  # type: ignore[return-value]


def find_heart_region(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float],
                      origin_lps_mm: tuple[float, float, float], direction: np.ndarray) -> HeartRegion:
    """Find the heart in a non-contrast chest CT volume.

    Args:
        hu: HU volume (z, y, x), int16 or float; axial slices ascending along the slice normal.
        spacing_zyx_mm: (slice increment, row spacing, column spacing) in mm.
        origin_lps_mm: LPS position (mm) of voxel (0, 0, 0).
        direction: 3x3 matrix whose columns are the LPS unit vectors of the x (column), y (row) and z (slice)
            axes: voxel (z, y, x) lies at ``origin + direction @ [x*sx, y*sy, z*sz]``.

    Returns:
        A :class:`HeartRegion`: the box (input voxel ranges and LPS mm), the mask of voxels where calcium may be
        counted (inside the box: heart, epicardial fat within :data:`EPICARDIAL_MM`, dilated by
        :data:`MASK_DILATION_MM`; large bones and every >= 130 HU component touching them removed) and QC numbers
        (plain floats: volumes in ml, extents in mm, ``confidence`` 0-1).

    Raises:
        HeartNotFound: ``heart_not_in_field_of_view`` (no lungs or no mediastinum between them),
            ``heart_region_implausible`` (size or position not that of a heart), ``not_axial``.
        ValueError: malformed arguments.
    """
    hu, spacing, origin, d = _check_inputs(hu, spacing_zyx_mm, origin_lps_mm, direction)
    frame = _working_frame(hu.shape, spacing, d)
    v = _to_canonical(_block_mean(hu, frame.factors), frame)
    thorax = _thorax(v, frame)
    slices = _heart_slices(thorax, frame)
    heart = _heart_proper(thorax, slices, frame)
    crop_box = _heart_box(heart, slices, frame.spacing[0])
    heart_mm = {"ap": (crop_box[3] - crop_box[2]) * frame.spacing[1],
                "lr": (crop_box[5] - crop_box[4]) * frame.spacing[2],
                "si": (crop_box[1] - crop_box[0]) * frame.spacing[0]}
    _check_plausible(heart_mm, hu.shape[0] * spacing[0], thorax, crop_box)
    op, ol = thorax.offset
    box_c = (crop_box[0], crop_box[1], crop_box[2] + op, crop_box[3] + op, crop_box[4] + ol, crop_box[5] + ol)
    box = _canonical_box_to_input(box_c, frame, v.shape, hu.shape, spacing,
                                  (BOX_MARGIN_Z_MM, EPICARDIAL_MM, EPICARDIAL_MM))
    mask = _full_mask(hu, box, thorax, heart, slices, frame, v.shape)
    lo, hi = box_lps_corners(box, spacing, origin, d)
    qc = _qc(thorax, heart, slices, frame, mask, box, spacing, (lo, hi), heart_mm)
    return HeartRegion(box_zyx=box, mask=mask, box_lps_mm=(lo, hi), method="heuristic", qc=qc)


def _full_mask(hu: np.ndarray, box: tuple[int, int, int, int, int, int], t: _Thorax, heart: np.ndarray,
               sl: _Slices, frame: _Frame, work_shape: tuple[int, int, int]) -> np.ndarray:
    """The calcium region on the input grid: working-grid region repeated inside ``box``, then the >= 130 HU
    components touching bone removed at full resolution."""
    op, ol = t.offset
    in_crop = (slice(None), slice(op, op + t.v.shape[1]), slice(ol, ol + t.v.shape[2]))
    region_c = np.zeros(work_shape, dtype=bool)
    region_c[in_crop] = _calcium_region(t, heart, sl, frame, _heart_box(heart, sl, frame.spacing[0]))
    bone_c = np.zeros(work_shape, dtype=bool)
    bone_c[in_crop] = t.bone
    mask = _upsample_into_box(_from_canonical(region_c, frame), frame.factors, hu.shape, box)
    _drop_bone_contact(mask, hu, box, _from_canonical(bone_c, frame), frame.factors)
    return mask


def _qc(t: _Thorax, heart: np.ndarray, sl: _Slices, frame: _Frame, mask: np.ndarray,
        box: tuple[int, int, int, int, int, int], spacing: tuple[float, float, float],
        corners: tuple[tuple[float, float, float], tuple[float, float, float]],
        heart_mm: dict[str, float]) -> dict[str, float]:
    """QC numbers, all plain floats: volumes (ml), extents (mm), flags (0/1) and a 0-1 confidence."""
    lo, hi = corners
    voxel_ml = float(np.prod(spacing)) / 1000.0
    qc = {
        "lung_volume_ml": float(t.lung.sum()) * frame.voxel_ml,
        "heart_volume_ml": float(heart.sum()) * frame.voxel_ml,
        "region_volume_ml": float(mask.sum()) * voxel_ml,
        "box_volume_ml": float((box[1] - box[0]) * (box[3] - box[2]) * (box[5] - box[4])) * voxel_ml,
        "box_extent_x_mm": float(hi[0] - lo[0]),
        "box_extent_y_mm": float(hi[1] - lo[1]),
        "box_extent_z_mm": float(hi[2] - lo[2]),
        "heart_extent_ap_mm": float(heart_mm["ap"]),
        "heart_extent_lr_mm": float(heart_mm["lr"]),
        "heart_extent_si_mm": float(heart_mm["si"]),
        "bottom_found": float(sl.bottom_found),
        "top_found": float(sl.top_found),
        "liver_dome_found": float(sl.dome is not None),
        "carina_found": float(sl.carina is not None),
        "working_voxel_mm": float(max(frame.spacing)),
    }
    qc["confidence"] = _confidence(qc)
    return qc


def _check_plausible(heart_mm: dict[str, float], scan_length_mm: float, t: _Thorax,
                     crop_box: tuple[int, int, int, int, int, int]) -> None:
    """Raise ``heart_region_implausible`` when the heart's size or position is not that of a heart."""
    lo, hi = PLAUSIBLE_INPLANE_MM
    for axis, name in (("ap", "front-back"), ("lr", "left-right")):
        if not lo <= heart_mm[axis] <= hi:
            raise HeartNotFound(IMPLAUSIBLE, f"heart region is {heart_mm[axis]:.0f} mm {name}, outside the plausible "
                                             f"{lo:.0f}-{hi:.0f} mm")
    need = min(PLAUSIBLE_MIN_Z_MM, 0.8 * scan_length_mm)
    if heart_mm["si"] < need:
        raise HeartNotFound(IMPLAUSIBLE, f"heart region is {heart_mm['si']:.0f} mm head-feet, need at least "
                                         f"{need:.0f} mm")
    s0, s1, p0, p1, l0, l1 = crop_box
    centre = ((s0 + s1) // 2, (p0 + p1) // 2, (l0 + l1) // 2)
    if not t.body[centre]:
        raise HeartNotFound(IMPLAUSIBLE, "the centre of the heart region lies outside the body")
    if centre[1] >= t.spine_front[centre[0]]:
        raise HeartNotFound(IMPLAUSIBLE, "the centre of the heart region is not in front of the spine")


def _confidence(qc: dict[str, float]) -> float:
    """0-1: 1 when both ends of the heart were found anatomically, its in-plane size is typical (90-170 mm) and
    the lungs are large; lower towards the plausibility limits, when the scan cuts the heart, or for little lung."""
    score = 1.0
    for axis in ("ap", "lr"):
        ext = qc[f"heart_extent_{axis}_mm"]
        if ext < 90.0:
            score *= max(0.0, (ext - PLAUSIBLE_INPLANE_MM[0]) / (90.0 - PLAUSIBLE_INPLANE_MM[0]))
        elif ext > 170.0:
            score *= max(0.0, (PLAUSIBLE_INPLANE_MM[1] - ext) / (PLAUSIBLE_INPLANE_MM[1] - 170.0))
    score *= 1.0 if qc["top_found"] else 0.8
    score *= 1.0 if qc["bottom_found"] else 0.9
    score *= min(1.0, qc["lung_volume_ml"] / 1000.0)
    return float(round(score, 3))
