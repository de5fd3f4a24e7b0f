"""The public score tables' columns and types: ``scores``, ``vessels``, ``lesions``, the scoring stage's ``regions``
(the heart-region and heart-box columns of the ``series`` table) and ``exclusions`` (every column's meaning is in
``docs/outputs.md``).

The score stage (:mod:`cacflow.pipeline.score`) writes its shard tables with these columns and the aggregate stage
(:mod:`cacflow.pipeline.aggregate`) gives the cohort tables the same types, so both read them from here.
"""

from __future__ import annotations

import pandas as pd

from cacflow.pipeline.box_columns import HEART_BOX_LPS_COLUMNS
from cacflow.scoring.strata import SCHEMES

SCORE_COLUMNS: tuple[str, ...] = (
    "series_key", "method", "status", "reason", "message", "agatston", "volume_mm3", "mass_mg", "n_lesions",
    *SCHEMES, *(f"{s}_index" for s in SCHEMES), "region", "convention_id", "convention", "grid", "model",
    "second_reader", "second_reader_note",
)
VESSEL_COLUMNS: tuple[str, ...] = ("series_key", "method", "vessel", "agatston", "volume_mm3", "mass_mg",
                                   "n_lesions", "convention_id")
LESION_COLUMNS: tuple[str, ...] = (
    "series_key", "method", "lesion_index", "vessel", "z_first", "z_last", "n_slices", "n_voxels", "volume_mm3",
    "peak_hu", "mean_hu", "agatston", "mass_mg", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "convention_id",
    "guard",
)
REGION_COLUMNS: tuple[str, ...] = (
    "series_key", "heart_region_method", "heart_region_status", "heart_region_reason", *HEART_BOX_LPS_COLUMNS,
    "heart_region_volume_ml", "heart_region_confidence", "scoring_slices", "reference_labels", "qc_picture",
    "heart_box_method", "heart_box_flag", "localizer_status", "localizer_confidence", "localizer_model",
    "regressor_model",
)


#: Column types of the score tables (nullable where a value can be missing).
TYPES: dict[str, dict[str, str]] = {
    "scores": {"series_key": "string", "method": "string", "status": "string", "reason": "string",
               "message": "string", "agatston": "Float64", "volume_mm3": "Float64", "mass_mg": "Float64",
               "n_lesions": "Int64", **{s: "string" for s in SCHEMES}, **{f"{s}_index": "Int8" for s in SCHEMES},
               "region": "string", "convention_id": "string", "convention": "string", "grid": "string",
               "model": "string", "second_reader": "boolean", "second_reader_note": "string"},
    "vessels": {"series_key": "string", "method": "string", "vessel": "string", "agatston": "float64",
                "volume_mm3": "float64", "mass_mg": "float64", "n_lesions": "int64", "convention_id": "string"},
    "lesions": {"series_key": "string", "method": "string", "lesion_index": "int64", "vessel": "string",
                "z_first": "int64", "z_last": "int64", "n_slices": "int64", "n_voxels": "int64",
                "volume_mm3": "float64", "peak_hu": "float64", "mean_hu": "float64", "agatston": "float64",
                "mass_mg": "float64", "centroid_x_mm": "float64", "centroid_y_mm": "float64",
                "centroid_z_mm": "float64", "convention_id": "string", "guard": "string"},
    "regions": {"series_key": "string", "heart_region_method": "string", "heart_region_status": "string",
                "heart_region_reason": "string", **{c: "Float64" for c in REGION_COLUMNS if c.startswith("heart_box")},
                "heart_region_volume_ml": "Float64", "heart_region_confidence": "Float64",
                "scoring_slices": "Int64", "reference_labels": "boolean", "qc_picture": "string",
                "heart_box_method": "string", "heart_box_flag": "string", "localizer_status": "string",
                "localizer_confidence": "Float64", "localizer_model": "string", "regressor_model": "string"},
    "exclusions": {"series_key": "string", "level": "string", "stage": "string", "method": "string",
                   "reason": "string", "message": "string"},
}


def coerce_types(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Give a score table its documented column types (empty tables keep them too)."""
    types = TYPES[name]
    return frame.astype({c: t for c, t in types.items() if c in frame.columns})
