"""Where a cohort's files live under the results folder (one function per kind of path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CohortLayout:
    """Paths of one cohort's outputs under ``<results>/<cohort>/``."""

    results: Path
    cohort: str

    @property
    def base(self) -> Path:
        return Path(self.results) / self.cohort

    @property
    def manifest(self) -> Path:
        """Public series manifest (one row per series, selected or excluded)."""
        return self.base / "manifest" / "series.parquet"

    @property
    def discover_exclusions(self) -> Path:
        """Public file- and series-level exclusions found by discovery."""
        return self.base / "manifest" / "exclusions.parquet"

    @property
    def shard_index(self) -> Path:
        """JSON list of shard ids (the discovery checkpoint's hand-off)."""
        return self.base / "work" / "shards.json"

    @property
    def task_tables(self) -> Path:
        """Folder of the internal per-shard task tables."""
        return self.base / "work" / "shards"

    def shard_tasks(self, shard: str) -> Path:
        """Internal per-shard task table (series, files, sizes, mtimes)."""
        return self.task_tables / f"{shard}.parquet"

    def shard_repair(self, shard: str) -> Path:
        """Internal per-shard record of outputs found missing (an input of the shard's jobs: rewriting it reruns
        them; see :mod:`cacflow.pipeline.completeness`)."""
        return self.base / "work" / "repair" / f"{shard}.json"

    def shard_status(self, shard: str) -> Path:
        """Per-series status rows written by a preprocessing shard job."""
        return self.base / "shards" / "preprocess" / f"{shard}.parquet"

    def volume(self, series_key: str, grid: str = "native") -> Path:
        """Zarr store of a series on a grid ('native' or a named resampling grid)."""
        return self.base / "volumes" / grid / f"{series_key}.zarr"

    def scan_status(self, series_key: str) -> Path:
        """Per-scan status JSON: the completion record of each stage with its input fingerprint."""
        return self.base / "status" / f"{series_key}.json"

    def shard_scores(self, shard: str, table: str) -> Path:
        """One of a scoring shard's tables (scores, vessels, lesions, regions, exclusions)."""
        return self.base / "shards" / "score" / shard / f"{table}.parquet"

    def shard_infer(self, shard: str) -> Path:
        """An inference shard's rows (heart box, localizer status, regression scores) per series."""
        return self.base / "shards" / "infer" / f"{shard}.parquet"

    def infer_cache(self, series_key: str) -> Path:
        """Per-series inference row with the fingerprint (volume, model weights, convention) it was computed under."""
        return self.base / "infer" / f"{series_key}.json"

    def score_cache(self, series_key: str) -> Path:
        """Per-series scoring rows with the fingerprint they were computed under."""
        return self.base / "scores" / f"{series_key}.json"

    def qc_picture(self, series_key: str) -> Path:
        """Quality-control PNG of a scored series."""
        return self.base / "qc" / f"{series_key}.png"

    @property
    def summary_text(self) -> Path:
        """The human-readable run summary of the cohort."""
        return self.base / "summary.txt"
