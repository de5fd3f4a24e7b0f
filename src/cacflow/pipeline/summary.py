"""Cohort-level summary of preprocessing: per-scan status rows and all exclusions in one place."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cacflow import __version__
from cacflow.io.tables import write_parquet
from cacflow.pipeline.layout import CohortLayout


def summarise_cohort(layout: CohortLayout, shard_status_paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join the manifest with the shard status rows; collect discovery and conversion exclusions.

    Writes ``preprocess_status.parquet`` (one row per series: discovery decision, stage outcome) and
    ``exclusions.parquet`` (every excluded file or series with its reason code, stage and message).
    """
    manifest = pd.read_parquet(layout.manifest)
    frames = [pd.read_parquet(p) for p in shard_status_paths]
    status = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else \
        pd.DataFrame(columns=["series_key", "status", "reason", "message"])
    status = status.rename(columns={"reason": "stage_reason", "message": "stage_message", "n_slices": "volume_slices"})
    table = manifest.merge(status, on="series_key", how="left")
    table["status"] = table["status"].fillna("not_selected")
    disc = pd.read_parquet(layout.discover_exclusions)
    conv = status[status["status"] == "excluded"][["series_key", "stage_reason", "stage_message"]].rename(
        columns={"stage_reason": "reason", "stage_message": "message"}).assign(level="series", stage="convert")
    if "series_uid" in manifest.columns:
        conv = conv.merge(manifest[["series_key", "series_uid"]], on="series_key", how="left")
    exclusions = pd.concat([disc, conv], ignore_index=True)
    meta = {"cacflow_version": __version__, "cohort": layout.cohort}
    write_parquet(table, layout.status_table, meta)
    write_parquet(exclusions, layout.exclusions, meta)
    return table, exclusions
