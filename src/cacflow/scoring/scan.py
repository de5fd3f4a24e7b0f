"""One scan's calcium scores: totals, per vessel, per lesion and strata, from the one scoring library.

:func:`score_scan` is what every method (classic threshold in the heart region, reference annotations, model
masks) calls, so every score in the tables is computed the same way under a recorded convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cacflow.scoring.agatston import DEFAULT_CONVENTION, AgatstonConvention, AgatstonResult, agatston_score
from cacflow.scoring.lesions import Lesion, lesions_3d
from cacflow.scoring.strata import strata

#: Coronary artery label values of reference annotations and vessel-aware models.
VESSELS: dict[int, str] = {1: "LM", 2: "LAD", 3: "CX", 4: "RCA"}


@dataclass(frozen=True)
class RegionScore:
    """Scores inside one region or vessel: Agatston (dimensionless), volume (mm³), mass (mg HA), lesion count."""

    agatston: float
    volume_mm3: float
    mass_mg: float
    n_lesions: int


@dataclass
class ScanScore:
    """Scores of one scan by one method.

    Attributes:
        total: scores over the whole region or every label.
        strata: label of each risk scheme for ``total.agatston``.
        vessels: per vessel name (only when scored with a vessel label map; every vessel present, 0 if clean).
        lesions: 3-D lesions (their ``label`` is the vessel code with a label map).
        result: the underlying 2-D result (lesion maps for pictures).
    """

    total: RegionScore
    strata: dict[str, str | None]
    vessels: dict[str, RegionScore] = field(default_factory=dict)
    lesions: list[Lesion] = field(default_factory=list)
    result: AgatstonResult | None = None


def score_scan(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], origin_lps_mm: np.ndarray,
               direction: np.ndarray, region: np.ndarray | None = None, vessel_labels: bool = False,
               convention: AgatstonConvention = DEFAULT_CONVENTION) -> ScanScore:
    """Score a HU volume (z, y, x) on its grid.

    Args:
        hu: HU volume (z, y, x), e.g. the 3 mm / 1.5 mm scoring grid.
        spacing_zyx_mm: (slice increment, row spacing, column spacing), mm.
        origin_lps_mm, direction: geometry (LPS mm of voxel 0; columns = x, y, z axis unit vectors) for centroids.
        region: boolean region or integer label map (0 outside); None scores the whole volume.
        vessel_labels: ``region`` holds coronary labels (:data:`VESSELS`); per-vessel scores are filled.
        convention: scoring parameters.
    """
    res = agatston_score(hu, spacing_zyx_mm, region, convention)
    lesions = lesions_3d(res, hu, origin_lps_mm, direction)
    total = RegionScore(res.total, res.volume_mm3, res.mass_mg, len(lesions))
    vessels: dict[str, RegionScore] = {}
    if vessel_labels:
        unknown = set(np.unique(res.lesion_label_value).tolist()) - set(VESSELS)
        if unknown:
            raise ValueError(f"vessel label map has values {sorted(unknown)}; expected {VESSELS}")
        dz, dy, dx = res.spacing_zyx_mm
        for code, name in VESSELS.items():
            sel = res.lesion_label_value == code
            voxels = int(np.round(res.lesion_area_mm2[sel].sum() / (dy * dx))) if sel.any() else 0
            vessels[name] = RegionScore(
                agatston=float(res.lesion_score[sel].sum()),
                volume_mm3=float(voxels * dy * dx * dz),
                mass_mg=float(sum(les.mass_mg for les in lesions if les.label == code)),
                n_lesions=sum(1 for les in lesions if les.label == code),
            )
    return ScanScore(total=total, strata=strata(res.total), vessels=vessels, lesions=lesions, result=res)
