"""The discover step: inventory a cohort root, select series, write the manifest and the shard task tables."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from cacflow import __version__
from cacflow import config as cfg
from cacflow.discovery.inventory import inventory
from cacflow.discovery.selection import normalise_inventory, select_series, series_key
from cacflow.io.heart_regions import read_heart_regions
from cacflow.io.tables import write_json, write_parquet, write_parquet_if_changed
from cacflow.pipeline.layout import CohortLayout
from cacflow.privacy import filter_columns

log = logging.getLogger(__name__)

#: Manifest columns that describe the acquisition and travel with each volume as attributes.
ACQUISITION_FIELDS = (
    "manufacturer", "model", "kernel", "kernel_class", "kvp", "tube_current_ma", "exposure_mas", "ctdi_vol",
    "slice_thickness_mm", "increment_mm", "pixel_spacing_row_mm", "pixel_spacing_col_mm", "rows", "columns",
    "n_slices", "patient_position", "transfer_syntax", "contrast", "study_year",
)


class NoDicomError(ValueError):
    """A cohort root that holds no readable DICOM image."""


def assign_shards(manifest: pd.DataFrame, shard_size: int) -> pd.Series:
    """Shard id per selected series: contiguous blocks of ``shard_size`` in (patient, study, series) order."""
    sel = manifest[manifest["selected"]].sort_values(["patient_id", "study_key", "series_key"], na_position="last")
    n = len(sel)
    width = max(4, len(str(max(0, math.ceil(n / shard_size) - 1))))
    ids = [f"shard-{i // shard_size:0{width}d}" for i in range(n)]
    return pd.Series(ids, index=sel.index, dtype=object)


def output_series_key(series_uid, allowed: list[str]) -> str | None:
    """The series key written to outputs: the UID-based key, or a hash when SeriesInstanceUID is not allowed."""
    if not isinstance(series_uid, str):
        return None
    return series_key(series_uid) if "SeriesInstanceUID" in allowed else series_key("#" + series_uid)


def _anonymise_keys(manifest: pd.DataFrame, allowed: list[str]) -> pd.DataFrame:
    """Re-key series (and the keys quoted in messages) when SeriesInstanceUID is not an allowed field."""
    if "SeriesInstanceUID" in allowed:
        return manifest
    manifest = manifest.copy()
    new = manifest["series_uid"].map(lambda u: output_series_key(u, allowed))
    manifest["message"] = [m.replace(old, k) if isinstance(m, str) else m
                           for m, old, k in zip(manifest["message"], manifest["series_key"], new)]
    manifest["series_key"] = new
    return manifest


def run_discover(root: Path, layout: CohortLayout, config: dict, workers: int = 1) -> dict:
    """Inventory ``root``, select series and write the cohort's manifest, exclusions and shard tables.

    Returns a summary dict (files, series, selected, excluded, shards).
    """
    rules = cfg.selection_rules(config)
    user_regions = read_heart_regions(Path(config["heart_regions"])) if config.get("heart_regions") else {}
    allowed = list(config.get("privacy", {}).get("allowed_fields", []))
    shard_size = int(config.get("sharding", {}).get("shard_size", 200))
    volumes = config.get("volumes")
    raw = inventory(Path(root), workers=workers, volumes=volumes)
    if not (raw["error"].isna() & raw["has_pixel_data"].ne(False)).any():
        what = "DICOM image or volume file" if volumes is not None else "DICOM image"
        raise NoDicomError(f"cohort {layout.cohort}: no {what} found under {root} ({len(raw)} file(s) read"
                           + (f"; reasons: {raw['error'].fillna('no pixel data').value_counts().to_dict()}"
                              if len(raw) else "")
                           + "); check the cohort's 'root' in the config (it must hold "
                           "<participant>/<study>/<series>/<DICOM files>"
                           + (", or volume files (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd)" if volumes is not None
                              else "; add a 'volumes' section to read NIfTI, NRRD or MetaImage files") + ")")
    inv = normalise_inventory(raw)
    manifest, file_excl = select_series(inv, rules, normalised=True)
    manifest = _anonymise_keys(manifest, allowed)
    manifest["shard"] = assign_shards(manifest, shard_size) if len(manifest) else pd.Series(dtype=object)
    provenance = {"cacflow_version": __version__, "stage": "discover",
                  "selection": cfg.section_hash(config.get("selection", {})), "allowed_fields": allowed}

    # Internal shard task tables: files with size and mtime, for fingerprints; acquisition metadata for volumes.
    files = inv[inv["error"].isna() & inv["has_pixel_data"].ne(False)]
    by_uid = {uid: g.sort_values("path") for uid, g in files.groupby("series_uid", sort=False)}
    shard_ids = sorted(manifest["shard"].dropna().unique().tolist()) if len(manifest) else []
    changed: list[str] = []
    for shard in shard_ids:
        rows = []
        for _, r in manifest[manifest["shard"] == shard].iterrows():
            g = by_uid[r["series_uid"]]
            meta = {k: r.get(k) for k in ACQUISITION_FIELDS}
            if isinstance(r.get("source_format"), str):  # volume files only: DICOM task tables are unchanged
                meta["source_format"] = r["source_format"]
                meta["unknown_fields"] = r.get("unknown_fields") if isinstance(r.get("unknown_fields"), str) else None
            if "PatientID" in allowed:
                meta["patient_id"] = r.get("patient_id")
            if "SeriesInstanceUID" in allowed:
                meta["series_uid"] = r.get("series_uid")
            region = user_regions.get(r["series_uid"])
            rows.append({"series_key": r["series_key"], "paths": g["path"].tolist(),
                         "sizes": g["size_bytes"].astype("int64").tolist(),
                         "mtimes": g["mtime_ns"].astype("int64").tolist(),
                         "metadata": pd.Series(meta).to_json(),
                         "heart_region": None if region is None else region.as_json()})
        # written only when its content changes: the shard's jobs rerun exactly when its series or files change
        if write_parquet_if_changed(pd.DataFrame(rows), layout.shard_tasks(shard), provenance):
            changed.append(shard)
    for stale in sorted(layout.task_tables.glob("shard-*.parquet")):
        if stale.stem not in shard_ids:  # a shard that no longer exists (fewer selected series)
            stale.unlink()

    public = filter_columns(manifest.drop(columns=["study_uid", "study_date"], errors="ignore")
                            if "StudyInstanceUID" not in allowed else manifest, allowed)
    write_parquet(public, layout.manifest, provenance)
    series_excl = manifest[~manifest["selected"]][["series_key", "series_uid", "reason", "message"]].assign(
        level="series", stage="discover", path=None)
    file_excl = file_excl.assign(level="file", stage="discover",
                                 series_key=file_excl["series_uid"].map(lambda u: output_series_key(u, allowed)))
    excl = pd.concat([series_excl, file_excl], ignore_index=True)
    write_parquet(filter_columns(excl, allowed), layout.discover_exclusions, provenance)
    unmatched = set(user_regions) - set(manifest["series_uid"].dropna()) if len(manifest) else set(user_regions)
    if unmatched:
        log.warning("%s: %d series of the heart-region table %s are not in the cohort", layout.cohort,
                    len(unmatched), config["heart_regions"])
    write_json({"cohort": layout.cohort, "shards": shard_ids}, layout.shard_index)
    summary = {"files": int(len(inv)), "series": int(len(manifest)), "selected": int(manifest["selected"].sum()),
               "excluded_series": int((~manifest["selected"]).sum()), "excluded_files": int(len(file_excl)),
               "shards": len(shard_ids), "shards_changed": len(changed)}
    log.info("discover %s: %s", layout.cohort, summary)
    return summary
