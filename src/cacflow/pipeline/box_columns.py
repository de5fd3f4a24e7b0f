"""The heart box in table rows: its column names, and the one encoder and decoder of them.

A heart box is written as two groups of columns:

- the voxel box ``box_z0, box_z1, box_y0, box_y1, box_x0, box_x1``: half-open index ranges on the scoring grid,
  as ``box_zyx`` (z0, z1, y0, y1, x0, x1) everywhere in the package (inference rows);
- its corners in patient coordinates ``box_min_x_mm, box_min_y_mm, box_min_z_mm, box_max_x_mm, box_max_y_mm,
  box_max_z_mm`` (LPS mm, voxel centres of the first and last voxel), in the inference rows; the ``series`` table
  carries the same corners as ``heart_box_min_x_mm`` ... ``heart_box_max_z_mm`` (:data:`HEART_BOX_LPS_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

BoxZYX = tuple[int, int, int, int, int, int]
Corners = tuple[Sequence[float], Sequence[float]]

#: The voxel box, in ``box_zyx`` order: box_z0, box_z1, box_y0, box_y1, box_x0, box_x1.
BOX_VOXEL_COLUMNS: tuple[str, ...] = tuple(f"box_{a}{e}" for a in "zyx" for e in "01")


def lps_columns(prefix: str = "box") -> tuple[str, ...]:
    """The corner columns ``{prefix}_min_x_mm`` ... ``{prefix}_max_z_mm`` (min corner x, y, z, then max corner)."""
    return tuple(f"{prefix}_{m}_{a}_mm" for m in ("min", "max") for a in "xyz")


#: The box's LPS corners in inference rows.
BOX_LPS_COLUMNS: tuple[str, ...] = lps_columns("box")
#: The same corners in the ``series`` table (the box every scorer used).
HEART_BOX_LPS_COLUMNS: tuple[str, ...] = lps_columns("heart_box")


def lps_fields(box_lps_mm: Corners, prefix: str = "box") -> dict:
    """Row fields of a box's LPS corners ``(min corner (x, y, z), max corner (x, y, z))``, values as given."""
    lo, hi = box_lps_mm
    return dict(zip(lps_columns(prefix), (lo[0], lo[1], lo[2], hi[0], hi[1], hi[2])))


def box_fields(box_zyx: Sequence[int], box_lps_mm: Corners) -> dict:
    """Row fields of a heart box: the voxel box (z0, z1, y0, y1, x0, x1) as ints and its LPS corners."""
    return {**{c: int(v) for c, v in zip(BOX_VOXEL_COLUMNS, box_zyx)}, **lps_fields(box_lps_mm)}


def has_box(row: Mapping | pd.Series | None) -> bool:
    """Whether a row (a dict or a table row) holds a heart box (``box_z0`` present and not missing)."""
    if row is None:
        return False
    z0 = row.get("box_z0")
    return z0 is not None and not pd.isna(z0)


def box_from_row(row: Mapping | pd.Series | None) -> BoxZYX | None:
    """The voxel box (z0, z1, y0, y1, x0, x1) of a row, or None when it has none."""
    if not has_box(row):
        return None
    return tuple(int(row[c]) for c in BOX_VOXEL_COLUMNS)  # type: ignore[index, return-value]


def lps_from_row(row: Mapping | pd.Series | None) -> Corners | None:
    """A row's LPS corners ``((min x, y, z), (max x, y, z))`` as stored, or None when it has no box."""
    if not has_box(row):
        return None
    values = [row[c] for c in BOX_LPS_COLUMNS]  # type: ignore[index]
    return tuple(values[:3]), tuple(values[3:])
