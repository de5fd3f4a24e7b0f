"""A user-supplied heart region (:mod:`cacflow.io.heart_regions`) put on a series' scoring grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cacflow.imaging.resample import ZGrid, resample_labels
from cacflow.imaging.volume import Geometry, Volume, box_lps_corners, lps_box_to_voxels
from cacflow.io.heart_regions import UserRegion
from cacflow.io.labels import LabelMapError, read_label_map


class UserRegionError(Exception):
    """A user region that gives no voxels on the series: ``reason`` (a code of
    :data:`cacflow.discovery.reasons.REASONS`) and ``message``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class GridRegion:
    """A user region on a scoring grid: its voxel box (z0, z1, y0, y1, x0, x1; half-open), the mask of voxels where
    calcium may be counted (bool, z, y, x; the whole box for a box region), and the box's LPS corners (mm)."""

    box_zyx: tuple[int, int, int, int, int, int]
    mask: np.ndarray
    box_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]]


def region_on_grid(region: UserRegion, volume: Volume, native: Geometry, grid: ZGrid) -> GridRegion:
    """The user region on ``volume`` (the series on its scoring grid ``grid``); a mask file is read in the
    series' native geometry ``native`` and put on the grid as reference labels are.

    Raises:
        UserRegionError: ``user_heart_region_outside_volume`` (the box or mask holds no voxel of the scan) or
            ``user_heart_region_invalid`` (the mask file cannot be read or is not in the series' geometry).
    """
    shape = tuple(int(n) for n in volume.hu.shape)
    origin, direction = np.asarray(volume.origin), np.asarray(volume.direction)
    if region.box_lps_mm is not None:
        box = lps_box_to_voxels(region.box_lps_mm, shape, volume.spacing_zyx, origin, direction)
        if box is None:
            raise UserRegionError("user_heart_region_outside_volume",
                                  f"the user heart box {region.box_lps_mm} (LPS mm) holds no voxel of the scan")
        mask = np.zeros(shape, dtype=bool)
        z0, z1, y0, y1, x0, x1 = box
        mask[z0:z1, y0:y1, x0:x1] = True
    else:
        try:
            labels = read_label_map(Path(str(region.mask_path)), native)
        except LabelMapError as exc:
            raise UserRegionError("user_heart_region_invalid", f"user heart mask: {exc.message}") from None
        mask = resample_labels((labels > 0).astype(np.uint8), native, grid) > 0
        if not mask.any():
            raise UserRegionError("user_heart_region_outside_volume", "the user heart mask is empty on the scan")
        zs, ys, xs = (np.flatnonzero(mask.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
        box = (int(zs[0]), int(zs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1)
    return GridRegion(box, mask, box_lps_corners(box, volume.spacing_zyx, origin, direction))


def task_regions(tasks: pd.DataFrame) -> list[str | None]:
    """Each row's user region (UserRegion JSON, or None) of a shard task table; None throughout for a table
    written before the column existed."""
    if "heart_region" not in tasks.columns:
        return [None] * len(tasks)
    return [None if pd.isna(r) else str(r) for r in tasks["heart_region"]]


def region_fingerprint(region_json: str | None) -> list:
    """What a user region's results depend on: its JSON and, for a mask, the file's size and modification time."""
    if region_json is None:
        return []
    region = UserRegion.from_json(region_json)
    if region.mask_path is None:
        return [region_json]
    try:
        st = Path(region.mask_path).stat()
        return [region_json, int(st.st_size), int(st.st_mtime_ns)]
    except OSError:
        return [region_json, "missing"]
