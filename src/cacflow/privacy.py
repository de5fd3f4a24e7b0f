"""Which identifying fields may leave the input.

The header reader never parses names, birth dates, addresses or staff names at all. The fields below are read
because the pipeline needs them; each reaches an output table only when ``privacy.allowed_fields`` names it.
Acquisition fields (kVp, kernel, manufacturer, thickness, spacing, ...) are not identifying and always allowed.
"""

from __future__ import annotations

import hashlib

import pandas as pd

#: config name -> the columns it governs in cacflow tables
IDENTIFYING_COLUMNS: dict[str, tuple[str, ...]] = {
    "PatientID": ("patient_id",),
    "StudyYear": ("study_year",),
    "StudyDate": ("study_date",),
    "StudyInstanceUID": ("study_uid",),
    "SeriesInstanceUID": ("series_uid",),
    "SeriesDescription": ("series_description",),
    "SourcePath": ("path", "paths"),
}

DEFAULT_ALLOWED = ("PatientID", "StudyYear", "SeriesInstanceUID")


def file_key(path: str) -> str:
    """A pseudonymous key for a source file path (used where the path itself is not allowed)."""
    return "f" + hashlib.sha256(path.encode()).hexdigest()[:16]


def filter_columns(frame: pd.DataFrame, allowed: tuple[str, ...] | list[str] = DEFAULT_ALLOWED) -> pd.DataFrame:
    """Drop the identifying columns that ``allowed`` does not name; file paths become ``file_key`` and are
    replaced by that key inside ``message`` texts too."""
    out = frame.copy()
    allowed = set(allowed)
    if "path" in out.columns and "SourcePath" not in allowed:
        keys = out["path"].map(lambda p: file_key(p) if isinstance(p, str) else None)
        if "message" in out.columns:
            out["message"] = [m.replace(p, k) if isinstance(m, str) and isinstance(p, str) else m
                              for m, p, k in zip(out["message"], out["path"], keys)]
        out["file_key"] = keys
    drop = [c for name, cols in IDENTIFYING_COLUMNS.items() if name not in allowed for c in cols if c in out.columns]
    return out.drop(columns=drop)
