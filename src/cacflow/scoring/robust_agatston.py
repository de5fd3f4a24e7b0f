"""The robust Agatston score (seed 000): Agatston from a predicted per-pixel calcification level map instead of HU.

Levels (the seed's §3.1, with the classic library's density bounds
:attr:`~cacflow.scoring.agatston.AgatstonConvention.weight_bounds_hu`, default 130/200/300/400 HU):
level 0 below 130 HU or outside calcium, 1 for [130, 200), 2 for [200, 300), 3 for [300, 400), 4 at 400 HU and
above. :func:`hu_to_levels` makes the training targets from a soft-kernel reconstruction.

Score of a level map, per axial slice, exactly as the classic library scores HU:

- a 2-D lesion is an 8-connected component (the convention's connectivity) of pixels with level >= 1;
- components with area under the convention's minimum (1 mm²) are dropped;
- the lesion's density factor is the **highest level of its pixels** (the classic "peak HU" rule, read on levels);
- lesion score = factor x area (mm²) x slice factor (increment / 3 mm), summed over lesions and slices.

This is computed by the one scoring library: each level is replaced by the lower HU bound of its density weight
(:func:`levels_to_hu`), which :func:`cacflow.scoring.agatston.agatston_score` maps back to the same weight. No HU
threshold of the scan itself enters the score (that is the method's point); volume counts level >= 1 pixels, and
mass is not defined (it needs HU).
"""

from __future__ import annotations

import numpy as np

from cacflow.scoring.agatston import DEFAULT_CONVENTION, AgatstonConvention, density_weight
from cacflow.scoring.scan import ScanScore, score_scan

#: Calcification levels 0..4.
N_LEVELS = 5
_AIR_HU = -1000.0


def hu_to_levels(hu: np.ndarray, calcium: np.ndarray, convention: AgatstonConvention = DEFAULT_CONVENTION
                 ) -> np.ndarray:
    """Per-pixel level 0..4 (uint8) of HU inside a calcium region (bool or labels > 0); 0 outside it."""
    levels = density_weight(hu, convention)
    return np.where(np.asarray(calcium) > 0, levels, 0).astype(np.uint8)


def levels_to_hu(levels: np.ndarray, convention: AgatstonConvention = DEFAULT_CONVENTION) -> np.ndarray:
    """The HU stand-in of a level map: level k >= 1 -> the k-th density bound (130, 200, 300, 400 HU), 0 -> air."""
    table = np.concatenate([[_AIR_HU], np.asarray(convention.weight_bounds_hu, dtype=np.float64)]).astype(np.float32)
    levels = np.asarray(levels)
    if levels.size and (levels.min() < 0 or levels.max() >= N_LEVELS):
        raise ValueError(f"calcification levels must lie in 0..{N_LEVELS - 1}")
    return table[levels.astype(np.int64)]


def robust_score(levels: np.ndarray, spacing_zyx_mm: tuple[float, float, float], origin_lps_mm: np.ndarray,
                 direction: np.ndarray, convention: AgatstonConvention = DEFAULT_CONVENTION) -> ScanScore:
    """The robust Agatston score of a level map (z, y, x) on the scoring grid (mass is NaN: it needs HU)."""
    if tuple(convention.weight_bounds_hu)[0] != convention.threshold_hu:
        raise ValueError("the robust score needs the convention's first density bound to equal its threshold")
    score = score_scan(levels_to_hu(levels, convention), spacing_zyx_mm, origin_lps_mm, direction,
                       region=np.asarray(levels) > 0, convention=convention)
    total = score.total
    score.total = type(total)(total.agatston, total.volume_mm3, float("nan"), total.n_lesions)
    return score
