"""Ground truth: reference calcium scores and the files under ``out/truth/``.

The reference is what a reader who marks exactly the true plaques would get:
the project's Agatston score on the 3 mm / 1.5 mm scoring grid, restricted to
the plaque masks (which include each plaque's partial-volume/blur halo).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cacflow.imaging.resample import ZGrid, resample_z
from cacflow.scoring.agatston import agatston_score

SCORING_GRID = ZGrid(thickness_mm=3.0, increment_mm=1.5)
STRATA: tuple[str, ...] = ("0", "1-10", "11-100", "101-400", ">400")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def stratum(score: float) -> str:
    """Five-class risk stratum of an Agatston score."""
    if score <= 0:
        return "0"
    if score <= 10:
        return "1-10"
    if score <= 100:
        return "11-100"
    if score <= 400:
        return "101-400"
    return ">400"


@dataclass(frozen=True)
class ReferenceScore:
    """Reference Agatston total, volume (mm^3) and per-lesion contributions {lesion_id: score}."""

    agatston: float
    volume_mm3: float
    per_lesion: dict[int, float]

    @property
    def stratum(self) -> str:
        return stratum(self.agatston)


def reference_score(hu: np.ndarray, lesion_ids: np.ndarray, z_positions_mm: np.ndarray,
                    pixel_spacing: tuple[float, float]) -> ReferenceScore:
    """Agatston score of ``hu`` (z, y, x) on the scoring grid restricted to ``lesion_ids > 0``.

    ``z_positions_mm`` are dot(ipp, normal), ascending.  The volume is cropped in-plane
    to the plaques' bounding box first (scores are restricted to the mask, so this
    changes nothing but speed).
    """
    if not lesion_ids.any():
        return ReferenceScore(0.0, 0.0, {})
    rows = np.nonzero(lesion_ids.any(axis=(0, 2)))[0]
    cols = np.nonzero(lesion_ids.any(axis=(0, 1)))[0]
    rs = slice(max(0, rows[0] - 2), rows[-1] + 3)
    cs = slice(max(0, cols[0] - 2), cols[-1] + 3)
    hu_r, _ = resample_z(hu[:, rs, cs].astype(np.float32), z_positions_mm, SCORING_GRID, reduce="mean")
    ids_r, _ = resample_z(lesion_ids[:, rs, cs], z_positions_mm, SCORING_GRID, reduce="max")
    spacing = (SCORING_GRID.increment_mm, float(pixel_spacing[0]), float(pixel_spacing[1]))
    res = agatston_score(hu_r, spacing, mask=ids_r > 0)
    per: dict[int, float] = {int(i): 0.0 for i in np.unique(lesion_ids) if i > 0}
    for j, score in enumerate(res.lesion_score, start=1):
        owners = ids_r[res.lesion_labels == j]
        owners = owners[owners > 0]
        if owners.size:
            owner = int(np.bincount(owners).argmax())
            per[owner] = per.get(owner, 0.0) + float(score)
    return ReferenceScore(float(res.total), float(res.volume_mm3), per)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays like ``np.savez_compressed`` but byte-reproducibly (fixed zip timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=1)


SERIES_COLUMNS: tuple[str, ...] = (
    "patient_id", "study_uid", "series_uid", "series_dir", "kind", "manufacturer", "kernel", "kernel_class",
    "acquisition_id", "kvp", "thickness_mm", "increment_mm", "pixel_spacing_mm", "rows", "cols", "n_slices",
    "patient_position", "storage", "transfer_syntax", "noise_hu", "n_lesions", "ref_agatston", "ref_volume_mm3",
    "ref_stratum",
)
LESION_COLUMNS: tuple[str, ...] = ("series_uid", "lesion_id", "vessel", "center_lps_mm", "diameter_mm", "peak_hu",
                                   "ref_agatston")


def write_tables(truth_dir: Path, series_rows: list[dict], lesion_rows: list[dict]) -> None:
    """Write ``series.parquet`` and ``lesions.parquet`` (rows sorted, fixed column order)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    series = pd.DataFrame(series_rows, columns=list(SERIES_COLUMNS))
    series = series.sort_values(["patient_id", "series_dir"], kind="stable").reset_index(drop=True)
    for col in ("rows", "cols", "n_slices", "n_lesions"):
        series[col] = series[col].astype("int64")
    series.to_parquet(truth_dir / "series.parquet", index=False)
    lesions = pd.DataFrame(lesion_rows, columns=list(LESION_COLUMNS))
    lesions = lesions.sort_values(["series_uid", "lesion_id"], kind="stable").reset_index(drop=True)
    lesions["lesion_id"] = lesions["lesion_id"].astype("int64")
    lesions["vessel"] = lesions["vessel"].astype("int64")
    lesions["center_lps_mm"] = [list(map(float, c)) for c in lesions["center_lps_mm"]]
    lesions.to_parquet(truth_dir / "lesions.parquet", index=False)


def write_cohort_json(path: Path, payload: dict) -> None:
    """Deterministic JSON (sorted keys, no timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
