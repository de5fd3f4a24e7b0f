"""Which shards have lost outputs since their last run, so that the plain ``snakemake`` rebuilds them.

Snakemake reruns a job when one of its declared outputs is missing *and* a later job asks for it, or when an input
changed. A shard's per-scan outputs (Zarr volumes, per-scan status records, QC pictures) are not declared outputs,
and a shard's own tables are intermediate: delete either while the cohort's tables remain and Snakemake sees
nothing to do. This module finds such shards; the workflow then rewrites the shard's repair record
(:meth:`CohortLayout.shard_repair`), an input of the shard's jobs, so they rerun. Inside the jobs every scan whose
outputs exist and whose inputs are unchanged is skipped, so only what is missing is rebuilt.

The check lists each per-scan folder once per cohort (no ``stat`` per file) and reads the shards' small tables, so it
stays cheap at cohort scale. It sees whole files and stores that are gone, not a store with a chunk deleted inside.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from cacflow.io.tables import read_json, write_json
from cacflow.pipeline.layout import CohortLayout

#: Per-scan statuses of the preprocessing table whose scans have volumes on every grid.
CONVERTED = ("done", "skipped")
#: The score stage's tables of one shard (:meth:`CohortLayout.shard_scores`).
SCORE_TABLES = ("scores", "vessels", "lesions", "regions", "exclusions")


def _names(folder: Path) -> set[str]:
    """Entry names of a folder (empty when it does not exist)."""
    try:
        return {e.name for e in os.scandir(folder)}
    except FileNotFoundError:
        return set()


def _column(path: Path, column: str) -> pd.Series | None:
    """One column of a Parquet file, or None when the file does not exist."""
    if not path.exists():
        return None
    return pd.read_parquet(path, columns=[column])[column]


def missing_outputs(layout: CohortLayout, shards: list[str], grid_names: list[str]) -> dict[str, list[str]]:
    """Outputs of each shard's last run that no longer exist: ``{shard: [paths relative to the results folder]}``,
    only for shards with something missing.

    A shard that never ran (none of its series has a status record and none of its tables exists) is not listed:
    Snakemake schedules it anyway. For the others: the shard's preprocess, infer and score tables; the status record
    of each series its preprocess table lists; the native and grid volumes of each series that table says was
    converted; each QC picture the score stage's ``regions`` table names. A series new to the shard is not missing
    anything: its task table changed, which reruns the shard.
    """
    status_names = _names(layout.base / "status")
    volume_names = {grid: _names(layout.base / "volumes" / grid) for grid in ["native", *grid_names]}
    qc_names = _names(layout.base / "qc")
    missing: dict[str, list[str]] = {}
    for shard in shards:
        keys = _column(layout.shard_tasks(shard), "series_key")
        keys = [] if keys is None else keys.tolist()
        tables = [layout.shard_status(shard), layout.shard_infer(shard),
                  *(layout.shard_scores(shard, t) for t in SCORE_TABLES)]
        present = [p.exists() for p in tables]
        if not any(present) and not any(f"{k}.json" in status_names for k in keys):
            continue  # never ran
        gone = [p for p, ok in zip(tables, present) if not ok]
        status = pd.read_parquet(layout.shard_status(shard), columns=["series_key", "status"]) if present[0] else None
        if status is not None:  # the scans the shard's last run processed (a series new to it has no record yet)
            gone += [layout.scan_status(k) for k in status["series_key"] if f"{k}.json" not in status_names]
            for key in status.loc[status["status"].isin(CONVERTED), "series_key"]:
                gone += [layout.volume(key, grid) for grid, names in volume_names.items()
                         if f"{key}.zarr" not in names]
        qc = _column(layout.shard_scores(shard, "regions"), "qc_picture")
        if qc is not None:
            gone += [layout.results / rel for rel in qc.dropna() if Path(rel).name not in qc_names]
        if gone:
            missing[shard] = sorted(str(Path(p).relative_to(layout.results)) for p in gone)
    return missing


def request_repair(layout: CohortLayout, shard: str, missing: list[str]) -> Path:
    """Rewrite the shard's repair record with what is missing and when it was noticed: its content always changes,
    so Snakemake's input check (modification time and checksum) reruns the shard's jobs."""
    record = {"shard": shard, "noticed_ns": time.time_ns(), "missing": missing}
    return write_json(record, layout.shard_repair(shard))


def ensure_repair_record(layout: CohortLayout, shard: str) -> Path:
    """The shard's repair record, created (empty) when it does not exist yet, so it can always be a job input."""
    path = layout.shard_repair(shard)
    if read_json(path) is None:
        write_json({"shard": shard, "noticed_ns": 0, "missing": []}, path)
    return path
