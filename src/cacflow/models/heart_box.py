"""The heart box every scorer uses: the localizer's, or the anatomical heuristic's where the localizer is unsure.

Rule (one place): a user-supplied region's box, when the cohort gives one for the scan, is used as it is (the
localizer does not run). Otherwise the localizer box is used when its status is ``found`` (confidence >= the
localizer's minimum and a plausible size and position). Otherwise the scan falls back to
:func:`cacflow.imaging.heart_region.find_heart_region` and is flagged with the localizer's reason; when that fails
too, the scan has no heart box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cacflow.imaging.heart_region import HeartNotFound, HeartRegion, find_heart_region
from cacflow.models.predict import HeartBox, HeartLocalizer

LOCALIZER = "localizer"
HEURISTIC_FALLBACK = "heuristic_fallback"
USER = "user"
Box = tuple[int, int, int, int, int, int]
LpsBox = tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class HeartChoice:
    """Which box a scan is scored in.

    ``method``: 'localizer', 'heuristic_fallback' or 'user' (None: no box). ``localizer``: its result (None when a
    user box was given). ``flag``: the localizer's reason when it was not used. ``region``: the heuristic's region
    when it ran (its mask also serves the classic baseline).
    """

    box_zyx: Box | None
    box_lps_mm: LpsBox | None
    method: str | None
    localizer: HeartBox | None
    flag: str | None
    region: HeartRegion | None = None
    reason: str | None = None
    message: str | None = None


def choose_heart_box(localizer: HeartLocalizer, hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float],
                     origin_lps_mm: np.ndarray, direction: np.ndarray,
                     user_box: tuple[Box, LpsBox] | None = None) -> HeartChoice:
    """The scan's heart box: ``user_box`` ((z0, z1, y0, y1, x0, x1), its LPS corners in mm) when given, else the
    localizer's on the scan (z, y, x HU), falling back to the heuristic when its box is not usable."""
    if user_box is not None:
        return HeartChoice(user_box[0], user_box[1], USER, None, None)
    hb = localizer.locate(hu, spacing_zyx_mm, origin_lps_mm, direction)
    if hb.usable:
        return HeartChoice(hb.box_zyx, hb.box_lps_mm, LOCALIZER, hb, None)
    try:
        region = find_heart_region(hu, spacing_zyx_mm, origin_lps_mm, direction)
    except HeartNotFound as exc:
        return HeartChoice(None, None, None, hb, hb.reason, None, exc.reason,
                           f"localizer: {hb.message}; heuristic: {exc.message}")
    return HeartChoice(region.box_zyx, region.box_lps_mm, HEURISTIC_FALLBACK, hb, hb.reason, region)
