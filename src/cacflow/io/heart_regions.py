"""A cohort's user-supplied heart regions: a CSV naming, per series, a box in patient coordinates or a mask file.

For phantoms (a QRM thorax has no lungs, so no heart is found) and special cases, a cohort may give the region
to score by hand (``cohorts.<name>.heart_regions``). One row per series:

``series_uid``
    the series' SeriesInstanceUID;
``min_x_mm, min_y_mm, min_z_mm, max_x_mm, max_y_mm, max_z_mm``
    a box in DICOM patient coordinates (LPS, mm; x to the patient's left, y posterior, z to the head), or
``mask``
    a NIfTI label map in the series' own geometry (nonzero = the region), relative to the CSV's folder.

A row gives either the six box columns or ``mask``, not both. The region replaces the heart localizer and the
anatomical heuristic for that series: every method scores inside it (``heart_box_method = user``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

BOX_COLUMNS: tuple[str, ...] = ("min_x_mm", "min_y_mm", "min_z_mm", "max_x_mm", "max_y_mm", "max_z_mm")
COLUMNS: tuple[str, ...] = ("series_uid", *BOX_COLUMNS, "mask")


class HeartRegionsError(ValueError):
    """A heart-region table that cannot be used; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class UserRegion:
    """A user-supplied heart region: a box in LPS mm (``box_lps_mm`` = (min xyz, max xyz)) or a mask file."""

    box_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    mask_path: str | None = None

    def as_json(self) -> str:
        """Stable JSON text (stored in the shard task tables)."""
        return json.dumps({"box_lps_mm": self.box_lps_mm, "mask_path": self.mask_path}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UserRegion:
        doc = json.loads(text)
        box = doc.get("box_lps_mm")
        return cls(None if box is None else (tuple(box[0]), tuple(box[1])), doc.get("mask_path"))


def _number(value: str, where: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise HeartRegionsError(f"{where}: {value!r} is not a number (mm)") from None
    if not math.isfinite(x):
        raise HeartRegionsError(f"{where}: {value!r} is not a finite number (mm)")
    return x


def read_heart_regions(path: Path) -> dict[str, UserRegion]:
    """The regions of a heart-region CSV, by SeriesInstanceUID; mask paths made absolute.

    Raises:
        HeartRegionsError: the file is missing, has unknown or missing columns, a row gives both or neither a box
            and a mask, a box is empty (a min not below its max), a mask file does not exist, or a series repeats.
    """
    path = Path(path)
    if not path.is_file():
        raise HeartRegionsError(f"heart regions {path}: no such file; fix cohorts.<name>.heart_regions in the config")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in (reader.fieldnames or [])]
        unknown = sorted(set(header) - set(COLUMNS))
        if "series_uid" not in header or unknown:
            raise HeartRegionsError(f"heart regions {path}: columns {header}; expected series_uid with either "
                                    f"{', '.join(BOX_COLUMNS)} or mask" + (f" (unknown: {unknown})" if unknown else ""))
        regions: dict[str, UserRegion] = {}
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"heart regions {path}, line {line}"
            uid = row.get("series_uid", "")
            if not uid:
                raise HeartRegionsError(f"{where}: empty series_uid")
            if uid in regions:
                raise HeartRegionsError(f"{where}: series {uid} is listed twice; keep one row per series")
            has_box = [bool(row.get(c)) for c in BOX_COLUMNS]
            mask = row.get("mask", "")
            if mask and any(has_box):
                raise HeartRegionsError(f"{where}: gives both a box and a mask; keep one")
            if mask:
                mask_path = (path.parent / mask).resolve()
                if not mask_path.is_file():
                    raise HeartRegionsError(f"{where}: mask {mask} not found (relative to {path.parent})")
                regions[uid] = UserRegion(mask_path=str(mask_path))
                continue
            if not all(has_box):
                raise HeartRegionsError(f"{where}: give all of {', '.join(BOX_COLUMNS)} (LPS mm) or a mask")
            lo = tuple(_number(row[c], f"{where}, {c}") for c in BOX_COLUMNS[:3])
            hi = tuple(_number(row[c], f"{where}, {c}") for c in BOX_COLUMNS[3:])
            if any(a >= b for a, b in zip(lo, hi)):
                raise HeartRegionsError(f"{where}: empty box (each min_*_mm must be below its max_*_mm)")
            regions[uid] = UserRegion(box_lps_mm=(lo, hi))  # type: ignore[arg-type]
    return regions
