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

from cacflow.imaging.geometry import order_slices
from cacflow.imaging.hu import hu_to_int16
from cacflow.imaging.resample import ZGrid, resample_labels, resample_volume, resample_z
from cacflow.imaging.volume import Volume
from cacflow.scoring.agatston import agatston_score
from cacflow.scoring.scan import VESSELS, ScanScore, score_scan
from cacflow.scoring.strata import SCHEMES
from cacflow.synth.dicom_writer import ds_str

SCORING_GRID = ZGrid(thickness_mm=3.0, increment_mm=1.5)
STRATA: tuple[str, ...] = ("0", "1-10", "11-100", "101-400", ">400")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def stratum(score: float) -> str:
    """Five-class risk stratum of an Agatston score (:mod:`cacflow.scoring.strata`)."""
    return SCHEMES["five_class"].label(score)


def ds_float(value: float) -> float:
    """The value a DICOM reader gets back from the decimal string the writer stores."""
    return float(ds_str(float(value)))


def converter_view(hu: np.ndarray, labels: np.ndarray, ipp: np.ndarray, iop: np.ndarray,
                   pixel_spacing: tuple[float, float]) -> tuple[Volume, np.ndarray]:
    """The native volume (and labels on it) exactly as the DICOM converter will build it from the written headers.

    Geometry goes through the same decimal-string rounding and slice ordering as
    :func:`cacflow.pipeline.convert.convert_series`, so scores computed on it equal the pipeline's to the bit.
    """
    ipp_ds = np.vectorize(ds_float)(np.asarray(ipp, dtype=np.float64))
    iop_ds = np.array([ds_float(v) for v in np.asarray(iop).ravel()])
    stack = order_slices(ipp_ds, iop_ds)
    volume = Volume(hu=np.asarray(hu)[stack.order], spacing_zyx=(float(stack.increment_mm), ds_float(pixel_spacing[0]),
                                                                 ds_float(pixel_spacing[1])),
                    origin=tuple(float(v) for v in ipp_ds[stack.order[0]]), direction=stack.direction,
                    z_positions_mm=stack.positions_mm.copy())
    return volume, np.asarray(labels)[stack.order]


def scan_reference(volume: Volume, vessel_labels: np.ndarray, grid: ZGrid = SCORING_GRID) -> ScanScore:
    """The reference scores of a series: the scoring library inside the vessel label map, on the scoring grid.

    This is what the pipeline's ``reference`` method computes from the label map the generator writes.
    """
    on_grid = resample_volume(volume, grid, "scoring")
    labels = resample_labels(vessel_labels, volume, grid)
    return score_scan(on_grid.hu, on_grid.spacing_zyx, np.asarray(on_grid.origin), on_grid.direction, labels,
                      vessel_labels=True)


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
                    pixel_spacing: tuple[float, float], normal_sign: int = 1, as_pipeline: bool = False
                    ) -> ReferenceScore:
    """Agatston score of ``hu`` (z, y, x) on the scoring grid restricted to ``lesion_ids > 0``.

    Used while planning plaques (fast: cropped, float HU, per-plaque shares) and for the per-plaque shares of the
    truth's lesion table; the series total written to the truth tables is :func:`scan_reference`, computed exactly
    as the pipeline computes it.

    ``z_positions_mm`` are dot(ipp, normal), ascending. Planning keeps the defaults (the generated plaques were
    planned so; the plan only steers their size). The truth's shares pass ``as_pipeline=True`` and the series' own
    ``normal_sign`` (:func:`cacflow.imaging.resample.superior_sign`): the grid anchored and the resampled HU rounded
    to integers as the pipeline's scoring volume is, so the shares sum to the series' reference. The volume is
    cropped in-plane to the plaques' bounding box first (scores are restricted to the mask, so this changes nothing
    but speed).
    """
    if not lesion_ids.any():
        return ReferenceScore(0.0, 0.0, {})
    rows = np.nonzero(lesion_ids.any(axis=(0, 2)))[0]
    cols = np.nonzero(lesion_ids.any(axis=(0, 1)))[0]
    rs = slice(max(0, rows[0] - 2), rows[-1] + 3)
    cs = slice(max(0, cols[0] - 2), cols[-1] + 3)
    hu_r, _ = resample_z(hu[:, rs, cs].astype(np.float32), z_positions_mm, SCORING_GRID, reduce="mean",
                         normal_sign=normal_sign)
    ids_r, _ = resample_z(lesion_ids[:, rs, cs], z_positions_mm, SCORING_GRID, reduce="max", normal_sign=normal_sign)
    if as_pipeline:
        hu_r = hu_to_int16(hu_r)  # as resample_volume stores the scoring grid (int16 HU)
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
    "ref_mass_mg", "ref_n_lesions", "ref_stratum", "ref_five_class", "ref_four_class", "ref_cac_drs",
)
VESSEL_COLUMNS: tuple[str, ...] = ("series_uid", "vessel", "ref_agatston", "ref_volume_mm3", "ref_mass_mg",
                                   "ref_n_lesions")
LESION_COLUMNS: tuple[str, ...] = ("series_uid", "lesion_id", "vessel", "center_lps_mm", "diameter_mm", "peak_hu",
                                   "ref_agatston")


def reference_columns(score: ScanScore | None) -> dict:
    """The ``ref_*`` columns of a truth series row (NaN / empty for non-axial series)."""
    if score is None:
        return {"ref_agatston": float("nan"), "ref_volume_mm3": float("nan"), "ref_mass_mg": float("nan"),
                "ref_n_lesions": -1, "ref_stratum": "", "ref_five_class": "", "ref_four_class": "", "ref_cac_drs": ""}
    return {"ref_agatston": score.total.agatston, "ref_volume_mm3": score.total.volume_mm3,
            "ref_mass_mg": score.total.mass_mg, "ref_n_lesions": score.total.n_lesions,
            "ref_stratum": score.strata["five_class"], "ref_five_class": score.strata["five_class"],
            "ref_four_class": score.strata["four_class"], "ref_cac_drs": score.strata["cac_drs"]}


def vessel_rows(series_uid: str, score: ScanScore) -> list[dict]:
    """Per-vessel reference rows of one series (every vessel, 0 where clean)."""
    return [{"series_uid": series_uid, "vessel": name, "ref_agatston": v.agatston, "ref_volume_mm3": v.volume_mm3,
             "ref_mass_mg": v.mass_mg, "ref_n_lesions": v.n_lesions} for name, v in score.vessels.items()]


def write_tables(truth_dir: Path, series_rows: list[dict], lesion_rows: list[dict],
                 vessel_rows_: list[dict] | None = None) -> None:
    """Write ``series.parquet``, ``lesions.parquet`` and ``vessels.parquet`` (rows sorted, fixed column order)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    series = pd.DataFrame(series_rows, columns=list(SERIES_COLUMNS))
    series = series.sort_values(["patient_id", "series_dir"], kind="stable").reset_index(drop=True)
    for col in ("rows", "cols", "n_slices", "n_lesions", "ref_n_lesions"):
        series[col] = series[col].astype("int64")
    series.to_parquet(truth_dir / "series.parquet", index=False)
    lesions = pd.DataFrame(lesion_rows, columns=list(LESION_COLUMNS))
    lesions = lesions.sort_values(["series_uid", "lesion_id"], kind="stable").reset_index(drop=True)
    lesions["lesion_id"] = lesions["lesion_id"].astype("int64")
    lesions["vessel"] = lesions["vessel"].astype("int64")
    lesions["center_lps_mm"] = [list(map(float, c)) for c in lesions["center_lps_mm"]]
    lesions.to_parquet(truth_dir / "lesions.parquet", index=False)
    vessels = pd.DataFrame(vessel_rows_ or [], columns=list(VESSEL_COLUMNS))
    vessels["_order"] = vessels["vessel"].map({v: k for k, v in VESSELS.items()})
    vessels = vessels.sort_values(["series_uid", "_order"], kind="stable").drop(columns="_order")
    vessels["ref_n_lesions"] = vessels["ref_n_lesions"].astype("int64")
    vessels.reset_index(drop=True).to_parquet(truth_dir / "vessels.parquet", index=False)


def write_cohort_json(path: Path, payload: dict) -> None:
    """Deterministic JSON (sorted keys, no timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
