"""The Agatston calcium score, written once.

Source: Agatston AS et al., "Quantification of coronary artery calcium using ultrafast computed tomography",
J Am Coll Cardiol 1990;15(4):827-832, as used for chest CT in the seed papers (``../shared/seeds``): candidate
voxels at or above 130 HU; lesions are connected components on each axial slice; lesions smaller than 1 mm² are
ignored; each lesion's area (mm²) is multiplied by a density weight from its peak HU (1: 130-199, 2: 200-299,
3: 300-399, 4: >= 400); the score sums these over slices. Slices thinner or thicker than the original 3 mm are
normalised by ``slice increment / 3 mm`` so that overlapping or thin reconstructions do not count calcium twice
(``../shared/research/anchors-cac.md`` §1 discusses the conventions public scorers differ on).

Every choice is a field of :class:`AgatstonConvention`; the defaults are the ones above.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

#: 8-connectivity within an axial slice, no connection across slices (3-D structuring element, z first).
_IN_PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_8[1] = True
#: 4-connectivity within an axial slice.
_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class AgatstonConvention:
    """Parameters of the Agatston score; defaults follow Agatston 1990 with slice normalisation to 3 mm.

    Attributes:
        threshold_hu: candidate voxels have HU >= this value.
        connectivity: 8 or 4, in-plane connectivity of 2-D lesions.
        min_area_mm2: lesions with area strictly below this (mm²) are dropped.
        weight_bounds_hu: lower HU bounds of density weights 1, 2, 3, 4 (peak HU of the lesion).
        reference_thickness_mm: slice normalisation factor is ``increment / reference_thickness_mm``.
    """

    threshold_hu: float = 130.0
    connectivity: int = 8
    min_area_mm2: float = 1.0
    weight_bounds_hu: tuple[float, float, float, float] = (130.0, 200.0, 300.0, 400.0)
    reference_thickness_mm: float = 3.0

    def as_dict(self) -> dict:
        """A plain dict of the convention, for provenance records."""
        return dataclasses.asdict(self)


DEFAULT_CONVENTION = AgatstonConvention()


def density_weight(peak_hu: np.ndarray | float, convention: AgatstonConvention = DEFAULT_CONVENTION) -> np.ndarray:
    """Agatston density weight (0-4) for peak HU values: 0 below the first bound, then 1, 2, 3, 4."""
    bounds = np.asarray(convention.weight_bounds_hu, dtype=np.float64)
    return np.searchsorted(bounds, np.asarray(peak_hu, dtype=np.float64), side="right").astype(np.int64)


@dataclass
class AgatstonResult:
    """Result of :func:`agatston_score`.

    Attributes:
        total: the Agatston score (dimensionless, area mm² x weight x slice factor summed).
        per_slice: contribution of each slice (z,), summing to ``total``.
        volume_mm3: volume of counted voxels (count x pixel area x slice increment), mm³.
        lesion_labels: (z, y, x) int32 labels of the counted 2-D lesions (0 elsewhere), numbered from 1.
        lesion_area_mm2, lesion_peak_hu, lesion_weight, lesion_score, lesion_slice: per 2-D lesion,
            index ``label - 1``.
        convention: the convention used.
    """

    total: float
    per_slice: np.ndarray
    volume_mm3: float
    lesion_labels: np.ndarray
    lesion_area_mm2: np.ndarray
    lesion_peak_hu: np.ndarray
    lesion_weight: np.ndarray
    lesion_score: np.ndarray
    lesion_slice: np.ndarray
    convention: AgatstonConvention = field(default=DEFAULT_CONVENTION)


def agatston_score(
    hu: np.ndarray,
    spacing_zyx_mm: tuple[float, float, float],
    mask: np.ndarray | None = None,
    convention: AgatstonConvention = DEFAULT_CONVENTION,
) -> AgatstonResult:
    """Agatston score of a HU volume (z, y, x), optionally restricted to a region or label mask.

    Args:
        hu: HU volume (z, y, x).
        spacing_zyx_mm: (slice increment, row spacing, column spacing) in mm. The slice increment (not the
            nominal thickness) sets the slice normalisation ``increment / 3 mm``.
        mask: optional boolean (or label) array of the same shape; only voxels where it is non-zero count.
        convention: scoring parameters.

    Returns:
        An :class:`AgatstonResult`.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"hu must be (z, y, x), got shape {hu.shape}")
    dz, dy, dx = (float(s) for s in spacing_zyx_mm)
    if min(dz, dy, dx) <= 0:
        raise ValueError(f"spacing must be positive, got {spacing_zyx_mm}")
    candidates = hu >= convention.threshold_hu
    if mask is not None:
        if mask.shape != hu.shape:
            raise ValueError(f"mask shape {mask.shape} differs from volume shape {hu.shape}")
        candidates &= mask.astype(bool)
    structure = _IN_PLANE_8 if convention.connectivity == 8 else _IN_PLANE_4
    if convention.connectivity not in (4, 8):
        raise ValueError("connectivity must be 4 or 8")
    labels, n = ndimage.label(candidates, structure=structure)
    pixel_area = dy * dx
    slice_factor = dz / convention.reference_thickness_mm
    empty = np.zeros(0)
    if n == 0:
        return AgatstonResult(0.0, np.zeros(hu.shape[0]), 0.0, np.zeros(hu.shape, np.int32), empty, empty,
                              empty.astype(np.int64), empty, empty.astype(np.int64), convention)
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1:]
    areas = counts * pixel_area
    index = np.arange(1, n + 1)
    peaks = np.asarray(ndimage.maximum(hu, labels, index), dtype=np.float64)
    slices = np.asarray([s[0].start for s in ndimage.find_objects(labels)], dtype=np.int64)
    keep = areas >= convention.min_area_mm2
    # Renumber kept lesions 1..m in label order; dropped ones become 0.
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    kept_labels = remap[labels]
    areas, peaks, slices = areas[keep], peaks[keep], slices[keep]
    weights = density_weight(peaks, convention)
    scores = areas * weights * slice_factor
    per_slice = np.bincount(slices, weights=scores, minlength=hu.shape[0]).astype(np.float64)
    volume = float(counts[keep].sum() * pixel_area * dz)
    return AgatstonResult(
        total=float(scores.sum()),
        per_slice=per_slice,
        volume_mm3=volume,
        lesion_labels=kept_labels,
        lesion_area_mm2=areas,
        lesion_peak_hu=peaks,
        lesion_weight=weights,
        lesion_score=scores,
        lesion_slice=slices,
        convention=convention,
    )
