"""The Agatston calcium score, written once.

Source: Agatston AS et al., "Quantification of coronary artery calcium using ultrafast computed tomography",
J Am Coll Cardiol 1990;15(4):827-832, as used for chest CT in the seed papers (``../shared/seeds``):

- candidate voxels: HU >= 130 inside the region (or label map) given;
- lesions: connected components on each axial slice (8-connected in-plane by default);
- lesions with an area below 1 mm² are ignored;
- density weight from the lesion's peak HU: 1 for 130-199, 2 for 200-299, 3 for 300-399, 4 for >= 400;
- score = sum over lesions of area (mm²) x weight x (slice increment / 3 mm).

The slice factor ``increment / 3 mm`` makes thin or overlapping reconstructions count calcium once: with 3 mm
slabs every 1.5 mm each voxel is seen by two slabs, each counted half. ``../shared/research/anchors-cac.md`` §1
lists how public scorers differ on every one of these choices (connectivity, minimum size, weight source, slice
normalisation, HU gating); each is a field of :class:`AgatstonConvention`, whose defaults are the ones above, and
every output row records the convention that produced it.

With a label map (e.g. vessels 1 LM, 2 LAD, 3 CX, 4 RCA) lesions never cross a label boundary: each label is
scored on its own and the total is the sum over labels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cacflow.scoring.components import bounding_slices, connect_3d, sparse_label_stats

#: 8-connectivity within an axial slice, no connection across slices (3-D structuring element, z first).
_IN_PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_8[1] = True
#: 4-connectivity within an axial slice.
_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = ndimage.generate_binary_structure(2, 1)

WEIGHT_SOURCES = ("slice_peak", "lesion_peak")
Z_NORMALISATIONS = ("increment", "none")


@dataclass(frozen=True)
class AgatstonConvention:
    """Parameters of the calcium scores; defaults follow Agatston 1990 with slice normalisation to 3 mm.

    Attributes:
        threshold_hu: candidate voxels have HU >= this value.
        connectivity: 8 or 4, in-plane connectivity of 2-D lesions.
        min_area_mm2: 2-D lesions with area strictly below this (mm²) are dropped (1 mm² is kept).
        weight_bounds_hu: lower HU bounds (inclusive) of density weights 1, 2, 3, 4.
        weight_source: ``"slice_peak"`` (textbook: peak HU of each 2-D lesion) or ``"lesion_peak"`` (peak of the
            3-D lesion the 2-D lesion belongs to, as AI-CAC does; for comparison only).
        z_normalisation: ``"increment"`` multiplies by ``slice increment / reference_thickness_mm``; ``"none"``
            sums raw area x weight (as CalciumScoring.jl does; inflates thin-slice scores).
        reference_thickness_mm: the 3 mm of the slice factor.
        mass_calibration_mg_per_cm3_hu: hydroxyapatite calibration factor c_HA (mg HA per cm³ per HU) of the mass
            score ``c_HA x volume x mean HU`` (McCollough et al., Radiology 2007;243:527-538). 0.75 is a nominal
            120 kVp value; replace it by the phantom-derived value of your scanners.
    """

    threshold_hu: float = 130.0
    connectivity: int = 8
    min_area_mm2: float = 1.0
    weight_bounds_hu: tuple[float, float, float, float] = (130.0, 200.0, 300.0, 400.0)
    weight_source: str = "slice_peak"
    z_normalisation: str = "increment"
    reference_thickness_mm: float = 3.0
    mass_calibration_mg_per_cm3_hu: float = 0.75

    def __post_init__(self) -> None:
        if self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity}")
        if self.weight_source not in WEIGHT_SOURCES:
            raise ValueError(f"weight_source must be one of {WEIGHT_SOURCES}, got {self.weight_source!r}")
        if self.z_normalisation not in Z_NORMALISATIONS:
            raise ValueError(f"z_normalisation must be one of {Z_NORMALISATIONS}, got {self.z_normalisation!r}")
        if list(self.weight_bounds_hu) != sorted(self.weight_bounds_hu) or len(self.weight_bounds_hu) != 4:
            raise ValueError(f"weight_bounds_hu must be 4 ascending HU values, got {self.weight_bounds_hu}")

    def as_dict(self) -> dict:
        """A plain JSON-ready dict of the convention, for provenance records and table rows."""
        d = dataclasses.asdict(self)
        d["weight_bounds_hu"] = list(d["weight_bounds_hu"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AgatstonConvention:
        """The convention from a config section (unknown keys are an error)."""
        kw = dict(d)
        if "weight_bounds_hu" in kw:
            kw["weight_bounds_hu"] = tuple(float(v) for v in kw["weight_bounds_hu"])
        return cls(**kw)

    def slice_factor(self, increment_mm: float) -> float:
        """The z normalisation factor for a slice increment (mm)."""
        return increment_mm / self.reference_thickness_mm if self.z_normalisation == "increment" else 1.0


DEFAULT_CONVENTION = AgatstonConvention()


def density_weight(peak_hu: np.ndarray | float, convention: AgatstonConvention = DEFAULT_CONVENTION) -> np.ndarray:
    """Agatston density weight (0-4) for peak HU values: 0 below the first bound, then 1, 2, 3, 4 (bounds inclusive)."""
    bounds = np.asarray(convention.weight_bounds_hu, dtype=np.float64)
    return np.searchsorted(bounds, np.asarray(peak_hu, dtype=np.float64), side="right").astype(np.int64)


@dataclass
class AgatstonResult:
    """Result of :func:`agatston_score`. Per-lesion arrays are indexed by ``label - 1`` of ``lesion_labels``.

    Attributes:
        total: the Agatston score (area mm² x weight x slice factor, summed).
        per_slice: contribution of each slice (z,), summing to ``total``.
        volume_mm3: volume score, counted voxels x pixel area x slice increment (mm³).
        mass_mg: mass score, c_HA x voxel volume (cm³) x sum of HU over counted voxels (mg hydroxyapatite).
        n_counted_voxels: voxels in kept 2-D lesions.
        lesion_labels: (z, y, x) int32 labels of the counted 2-D lesions (0 elsewhere), numbered from 1.
        lesion_area_mm2, lesion_peak_hu, lesion_weight, lesion_score, lesion_slice: per 2-D lesion.
        lesion_label_value: the region label each 2-D lesion lies in (1 for a boolean region).
        spacing_zyx_mm: the spacing the score was computed with.
        convention: the convention used.
    """

    total: float
    per_slice: np.ndarray
    volume_mm3: float
    mass_mg: float
    n_counted_voxels: int
    lesion_labels: np.ndarray
    lesion_area_mm2: np.ndarray
    lesion_peak_hu: np.ndarray
    lesion_weight: np.ndarray
    lesion_score: np.ndarray
    lesion_slice: np.ndarray
    lesion_label_value: np.ndarray
    spacing_zyx_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    convention: AgatstonConvention = field(default=DEFAULT_CONVENTION)

    def weight_map(self) -> np.ndarray:
        """uint8 (z, y, x): density weight of each counted voxel, 0 elsewhere (for pictures)."""
        lut = np.concatenate([[0], self.lesion_weight]).astype(np.uint8)
        return lut[self.lesion_labels]

    def counted(self) -> np.ndarray:
        """bool (z, y, x): the voxels that count."""
        return self.lesion_labels > 0


def _label_regions(candidates: np.ndarray, regions: np.ndarray | None, structure: np.ndarray
                   ) -> tuple[np.ndarray, int, np.ndarray]:
    """2-D components of ``candidates`` that never cross a region label; returns labels, count, label value per lesion.

    Labelling runs on the candidates' bounding box only (calcium is sparse), then is placed back in the volume.
    """
    box = bounding_slices(candidates)
    full = np.zeros(candidates.shape, dtype=np.int32)
    if box is None:
        return full, 0, np.zeros(0, np.int64)
    labels, n, values = _label_regions_dense(candidates[box], None if regions is None else regions[box], structure)
    full[box] = labels
    return full, n, values


def _label_regions_dense(candidates: np.ndarray, regions: np.ndarray | None, structure: np.ndarray
                         ) -> tuple[np.ndarray, int, np.ndarray]:
    if regions is None or regions.dtype == bool:
        labels, n = ndimage.label(candidates, structure=structure)
        return labels, n, np.ones(n, dtype=np.int64)
    labels = np.zeros(candidates.shape, dtype=np.int32)
    values: list[np.ndarray] = []
    n = 0
    for value in np.unique(regions[candidates]):
        sub, m = ndimage.label(candidates & (regions == value), structure=structure)
        if m:
            labels[sub > 0] = sub[sub > 0] + n
            values.append(np.full(m, int(value), dtype=np.int64))
            n += m
    return labels, n, (np.concatenate(values) if values else np.zeros(0, np.int64))


def agatston_score(
    hu: np.ndarray,
    spacing_zyx_mm: tuple[float, float, float],
    mask: np.ndarray | None = None,
    convention: AgatstonConvention = DEFAULT_CONVENTION,
) -> AgatstonResult:
    """Agatston, volume and mass scores of a HU volume (z, y, x), optionally inside a region or label map.

    Args:
        hu: HU volume (z, y, x); axial slices along z.
        spacing_zyx_mm: (slice increment, row spacing, column spacing) in mm. The slice increment (not the
            nominal thickness) sets the slice factor ``increment / 3 mm``.
        mask: optional region, same shape: boolean (voxels where calcium may count) or integer labels (0 = outside;
            lesions are formed within each label separately, e.g. per coronary artery).
        convention: scoring parameters.

    Returns:
        An :class:`AgatstonResult`; a volume without counted calcium scores exactly 0.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"hu must be (z, y, x), got shape {hu.shape}")
    dz, dy, dx = (float(s) for s in spacing_zyx_mm)
    if not min(dz, dy, dx) > 0:
        raise ValueError(f"spacing must be positive, got {spacing_zyx_mm}")
    candidates = hu >= convention.threshold_hu
    regions = None
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != hu.shape:
            raise ValueError(f"mask shape {mask.shape} differs from volume shape {hu.shape}")
        candidates &= mask != 0
        regions = mask
    structure = _IN_PLANE_8 if convention.connectivity == 8 else _IN_PLANE_4
    labels, n, values = _label_regions(candidates, regions, structure)
    pixel_area = dy * dx
    slice_factor = convention.slice_factor(dz)
    if n == 0:
        empty = np.zeros(0)
        return AgatstonResult(0.0, np.zeros(hu.shape[0]), 0.0, 0.0, 0, np.zeros(hu.shape, np.int32), empty, empty,
                              empty.astype(np.int64), empty, empty.astype(np.int64), empty.astype(np.int64),
                              (dz, dy, dx), convention)
    stats = sparse_label_stats(labels, hu, n)
    counts = stats.counts
    areas = counts * pixel_area
    peaks, hu_sums, slices = stats.peaks, stats.sums, stats.z_first
    keep = areas >= convention.min_area_mm2
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    kept_labels = remap[labels]
    areas, peaks, slices, values = areas[keep], peaks[keep], slices[keep], values[keep]
    if convention.weight_source == "lesion_peak" and areas.size:
        peaks = _lesion_peaks(hu, kept_labels, values)
    weights = density_weight(peaks, convention)
    scores = areas * weights * slice_factor
    per_slice = np.bincount(slices, weights=scores, minlength=hu.shape[0]).astype(np.float64)
    n_counted = int(counts[keep].sum())
    voxel_mm3 = pixel_area * dz
    mass = convention.mass_calibration_mg_per_cm3_hu * (voxel_mm3 / 1000.0) * float(hu_sums[keep].sum())
    return AgatstonResult(
        total=float(scores.sum()),
        per_slice=per_slice,
        volume_mm3=float(n_counted * voxel_mm3),
        mass_mg=float(mass),
        n_counted_voxels=n_counted,
        lesion_labels=kept_labels,
        lesion_area_mm2=areas,
        lesion_peak_hu=peaks,
        lesion_weight=weights,
        lesion_score=scores,
        lesion_slice=slices,
        lesion_label_value=values,
        spacing_zyx_mm=(dz, dy, dx),
        convention=convention,
    )


def _lesion_peaks(hu: np.ndarray, slice_labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Peak HU of the 3-D lesion (26-connected, same region label) each 2-D lesion belongs to."""
    lesion3d = connect_3d(slice_labels, values)
    n3 = int(lesion3d.max())
    peak3 = sparse_label_stats(lesion3d, hu, n3).peaks
    first = sparse_label_stats(slice_labels, hu, len(values)).first_flat
    owner = lesion3d.ravel()[first].astype(np.int64)
    return peak3[owner - 1]
