"""The heart-box columns: one encoder and decoder for inference rows, score rows and the evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cacflow.pipeline.box_columns import (
    BOX_LPS_COLUMNS,
    BOX_VOXEL_COLUMNS,
    HEART_BOX_LPS_COLUMNS,
    box_fields,
    box_from_row,
    lps_fields,
    lps_from_row,
)


def test_column_names() -> None:
    assert BOX_VOXEL_COLUMNS == ("box_z0", "box_z1", "box_y0", "box_y1", "box_x0", "box_x1")
    assert BOX_LPS_COLUMNS == ("box_min_x_mm", "box_min_y_mm", "box_min_z_mm", "box_max_x_mm", "box_max_y_mm",
                               "box_max_z_mm")
    assert HEART_BOX_LPS_COLUMNS == tuple("heart_" + c for c in BOX_LPS_COLUMNS)


def test_round_trip_through_a_dict_and_a_table_row() -> None:
    box = (np.int64(3), 20, 5, 60, 7, 70)
    corners = ((-40.5, 10.0, -300.0), (45.0, 80.25, -250.5))
    row = box_fields(box, corners)
    assert list(row) == [*BOX_VOXEL_COLUMNS, *BOX_LPS_COLUMNS]
    assert all(type(row[c]) is int for c in BOX_VOXEL_COLUMNS)
    assert box_from_row(row) == (3, 20, 5, 60, 7, 70)
    assert lps_from_row(row) == corners
    assert lps_fields(corners, "heart_box") == dict(zip(HEART_BOX_LPS_COLUMNS, (*corners[0], *corners[1])))
    table_row = pd.DataFrame([row]).astype({c: "Int64" for c in BOX_VOXEL_COLUMNS}).iloc[0]
    assert box_from_row(table_row) == (3, 20, 5, 60, 7, 70)


def test_missing_box_is_none() -> None:
    assert box_from_row(None) is None and box_from_row({}) is None
    assert box_from_row({"box_z0": None}) is None and lps_from_row({"box_z0": None}) is None
    empty = pd.DataFrame({c: pd.Series([None], dtype="Int64") for c in BOX_VOXEL_COLUMNS}).iloc[0]
    assert box_from_row(empty) is None
