"""One preprocessing job: convert (DICOM series or volume file) and resample every series of a shard in one process.

The scans of a shard run in parallel with Dask (processes by default: pydicom parsing holds the GIL). Each scan
keeps its volume in memory from DICOM decoding to resampling and writes per-scan outputs (Zarr stores and a status
JSON); a rerun skips a scan whose stage fingerprints are unchanged and redoes one whose inputs or settings changed.
One broken scan becomes an excluded status row; it never stops the shard.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import dask
import pandas as pd
from dask import delayed

from cacflow import __version__
from cacflow.config import grids, section_hash
from cacflow.imaging.resample import RESAMPLER_VERSION, ZGrid, resample_volume
from cacflow.imaging.volume import Volume
from cacflow.io.dicom import DicomReadError
from cacflow.io.tables import read_json, write_json, write_parquet
from cacflow.io.volume_file import VolumeReadError
from cacflow.io.zarr_store import read_volume, remove_stale_temporaries, write_volume
from cacflow.pipeline.convert import CONVERTER_VERSION, convert_series
from cacflow.pipeline.layout import CohortLayout
from cacflow.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class SeriesTask:
    """Everything one scan's processing needs (picklable for process workers)."""

    series_key: str
    root: str
    paths: list[str]
    sizes: list[int]
    mtimes: list[int]
    metadata: dict
    results: str
    cohort: str
    grids: dict[str, tuple[float, float]]
    spacing_tolerance: float = 0.1
    show_paths: bool = False  # source paths in messages only when 'SourcePath' is an allowed field


@dataclass
class SeriesStatus:
    """One per-scan status row. ``status``: done | skipped | excluded; stage seconds are wall time."""

    series_key: str
    status: str
    reason: str | None = None
    message: str | None = None
    convert: str | None = None  # converted | up_to_date | failed
    resample: str | None = None  # resampled | up_to_date | failed | not_run
    n_slices: int | None = None
    convert_s: float = 0.0
    resample_s: float = 0.0
    write_s: float = 0.0
    total_s: float = 0.0


def convert_fingerprint(task: SeriesTask) -> str:
    """Changes when a file of the series, the converter or its settings change."""
    return section_hash(sorted(zip(task.paths, task.sizes, task.mtimes)), CONVERTER_VERSION,
                        task.spacing_tolerance, task.metadata)


def grid_fingerprint(convert_fp: str, grid: ZGrid) -> str:
    """Changes when the native volume or the grid changes."""
    return section_hash(convert_fp, asdict(grid), RESAMPLER_VERSION)


def process_series(task: SeriesTask) -> dict:
    """Convert (if needed) and resample (if needed) one series; never raises for bad input."""
    t0 = time.perf_counter()
    layout = CohortLayout(Path(task.results), task.cohort)
    status_path = layout.scan_status(task.series_key)
    previous = read_json(status_path) or {}
    stages = dict(previous.get("stages", {}))
    st = SeriesStatus(series_key=task.series_key, status="done")
    conv_fp = convert_fingerprint(task)
    native_path = layout.volume(task.series_key, "native")
    volume: Volume | None = None
    try:
        prev = stages.get("convert", {})
        if prev.get("fingerprint") == conv_fp and prev.get("status") == "done" and native_path.exists():
            st.convert = "up_to_date"
            st.n_slices = prev.get("n_slices")
        else:
            t = time.perf_counter()
            volume = convert_series(Path(task.root), task.paths, task.metadata, task.spacing_tolerance,
                                    show_paths=task.show_paths)
            st.convert_s = time.perf_counter() - t
            t = time.perf_counter()
            write_volume(native_path, volume)
            st.write_s += time.perf_counter() - t
            st.convert, st.n_slices = "converted", int(volume.hu.shape[0])
            stages = {"convert": {"fingerprint": conv_fp, "status": "done", "n_slices": st.n_slices}}
        results = []
        for name, (thickness, increment) in sorted(task.grids.items()):
            grid = ZGrid(thickness, increment)
            fp = grid_fingerprint(conv_fp, grid)
            key = f"resample:{name}"
            out = layout.volume(task.series_key, name)
            if stages.get(key, {}).get("fingerprint") == fp and out.exists():
                results.append("up_to_date")
                continue
            if volume is None:
                volume = read_volume(native_path)
            t = time.perf_counter()
            resampled = resample_volume(volume, grid, name)
            st.resample_s += time.perf_counter() - t
            t = time.perf_counter()
            write_volume(out, resampled)
            st.write_s += time.perf_counter() - t
            stages[key] = {"fingerprint": fp, "status": "done", "n_slices": int(resampled.hu.shape[0])}
            results.append("resampled")
        st.resample = "resampled" if "resampled" in results else ("up_to_date" if results else "not_run")
        if st.convert == "up_to_date" and st.resample in ("up_to_date", "not_run"):
            st.status = "skipped"
    except (DicomReadError, VolumeReadError) as exc:
        st.status, st.reason, st.message = "excluded", exc.reason, f"series {task.series_key}: {exc.message}"
        st.convert = st.convert or "failed"
        stages = {"convert": {"fingerprint": conv_fp, "status": "excluded", "reason": exc.reason}}
    except Exception as exc:  # a scan must never stop its shard
        st.status, st.reason = "excluded", "conversion_failed"
        st.message = f"series {task.series_key}: {type(exc).__name__}: {str(exc)[:200]}"
        stages = {"convert": {"fingerprint": conv_fp, "status": "excluded", "reason": "conversion_failed"}}
    st.total_s = time.perf_counter() - t0
    write_json({"series_key": task.series_key, "cacflow_version": __version__, "stages": stages}, status_path)
    return asdict(st)


def load_tasks(layout: CohortLayout, shard: str, root: Path, grids: dict[str, ZGrid],
               spacing_tolerance: float, show_paths: bool = False) -> list[SeriesTask]:
    """The tasks of one shard, from the table written by the discover step."""
    frame = pd.read_parquet(layout.shard_tasks(shard))
    return [
        SeriesTask(series_key=r.series_key, root=str(root), paths=list(r.paths), sizes=[int(s) for s in r.sizes],
                   mtimes=[int(m) for m in r.mtimes], metadata=json.loads(r.metadata), results=str(layout.results),
                   cohort=layout.cohort, grids={k: (g.thickness_mm, g.increment_mm) for k, g in grids.items()},
                   spacing_tolerance=spacing_tolerance, show_paths=show_paths)
        for r in frame.itertuples(index=False)
    ]


def shard_options(config: dict) -> dict:
    """The keyword arguments of :func:`run_shard` that come from a validated config."""
    return {"grids": grids(config), "scheduler": config["sharding"]["scheduler"],
            "spacing_tolerance": config["selection"]["spacing_tolerance"],
            "show_paths": "SourcePath" in config["privacy"]["allowed_fields"]}


def grid_volume(layout: CohortLayout, series_key: str, grid_name: str) -> tuple[str | None, dict]:
    """(fingerprint of the series' volume on ``grid_name``, its status record): the fingerprint is None unless that
    resampling stage is done and the store exists. Later stages use it to find what they can read."""
    record = read_json(layout.scan_status(series_key)) or {}
    stage = record.get("stages", {}).get(f"resample:{grid_name}", {})
    done = stage.get("status") == "done" and layout.volume(series_key, grid_name).exists()
    return (stage.get("fingerprint") if done else None), record


def run_shard(layout: CohortLayout, shard: str, root: Path, grids: dict[str, ZGrid], workers: int = 1,
              scheduler: str = "processes", spacing_tolerance: float = 0.1, show_paths: bool = False) -> pd.DataFrame:
    """Process every series of ``shard`` and write its status table; returns the status rows."""
    remove_stale_temporaries(layout.base / "volumes")
    tasks = load_tasks(layout, shard, root, grids, spacing_tolerance, show_paths)
    log.info("%s %s: %d series, %d workers (%s)", layout.cohort, shard, len(tasks), workers, scheduler)
    t0 = time.perf_counter()
    if not tasks:
        rows = []
    else:
        if workers <= 1 or len(tasks) == 1:
            scheduler = "synchronous"
        with Progress(len(tasks), f"preprocess {layout.cohort} {shard}"):
            rows = list(dask.compute(*[delayed(process_series)(t) for t in tasks], scheduler=scheduler,
                                     num_workers=max(1, workers)))
    frame = pd.DataFrame(rows)
    counts = frame["status"].value_counts().to_dict() if not frame.empty else {}
    wall = time.perf_counter() - t0
    log.info("%s %s finished in %.1f s: %s", layout.cohort, shard, wall, counts)
    for r in rows:
        if r["status"] == "excluded":
            log.warning("excluded %s: %s", r["series_key"], r["reason"])
    write_parquet(frame, layout.shard_status(shard), {"cacflow_version": __version__, "shard": shard,
                                                       "wall_s": wall, "workers": workers, "scheduler": scheduler})
    return frame
