"""Benchmark: per-scan wall time of discover, convert and resample on the demo cohort, and the overhead fraction.

Measures, in one process (imports paid once, as in a shard job):
  * discover: header inventory + selection of the whole cohort root (per file and per series);
  * each selected scan's stage bodies (DICOM decode, resample, Zarr writes) from its status row;
  * the shard job's wall time, and overhead = 1 - (sum of stage bodies) / wall;
and, with --snakemake, the same cohort through `snakemake --cores 2`, whose overhead over the stage bodies
includes interpreter start-up, the DAG and job bookkeeping.

Reports ratios and per-scan figures; it asserts nothing (a benchmark measures, tests check).

Usage: python benchmarks/preprocess_stages.py [--n 6] [--seed 20261121] [--small] [--workers 2] [--snakemake]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from cacflow import config as cfg
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard
from cacflow.synth.cohort import generate_cohort

REPO = Path(__file__).resolve().parents[1]


def _shards(layout: CohortLayout) -> list[str]:
    return json.loads(layout.shard_index.read_text())["shards"]


def measure_in_process(root: Path, work: Path, workers: int, scheduler: str) -> dict:
    config = cfg.validate({"cohorts": {"bench": {"root": str(root)}}, "sharding": {"shard_size": 10_000}})
    layout = CohortLayout(work / f"results-{scheduler}-{workers}", "bench")
    t = time.perf_counter()
    disc = run_discover(root, layout, config, workers=workers)
    discover_s = time.perf_counter() - t
    t = time.perf_counter()
    rows = pd.concat([run_shard(layout, s, root, cfg.grids(config), workers=workers, scheduler=scheduler)
                      for s in _shards(layout)], ignore_index=True)
    shard_wall = time.perf_counter() - t
    done = rows[rows["status"] == "done"]
    bodies = done[["convert_s", "resample_s", "write_s"]].sum()
    n = max(len(done), 1)
    return {
        "scheduler": scheduler, "workers": workers, "files": disc["files"], "series": disc["series"],
        "scans": int(len(done)), "slices_mean": float(done["n_slices"].mean()) if len(done) else 0.0,
        "discover_wall_s": discover_s, "discover_ms_per_file": 1000 * discover_s / max(disc["files"], 1),
        "convert_s_per_scan": float(bodies["convert_s"]) / n, "resample_s_per_scan": float(bodies["resample_s"]) / n,
        "zarr_write_s_per_scan": float(bodies["write_s"]) / n,
        "stage_bodies_s_per_scan": float(bodies.sum()) / n,
        "shard_wall_s": shard_wall, "shard_wall_s_per_scan": shard_wall / n, "scans_per_s": n / shard_wall,
        "overhead_fraction": 1.0 - float(bodies.sum()) / max(shard_wall * (workers if scheduler != "synchronous"
                                                                          else 1), 1e-9),
    }


def measure_snakemake(cohort_dir: Path, work: Path) -> dict:
    wd = work / "smk"
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "config.yaml").write_text(f"cohorts:\n  bench:\n    root: {cohort_dir / 'dicom'}\n")
    exe = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    t = time.perf_counter()
    subprocess.run([exe, "-s", str(REPO / "Snakefile"), "--directory", str(wd), "--cores", "2", "-q"], check=True,
                   capture_output=True)
    wall = time.perf_counter() - t
    status = pd.read_parquet(wd / "results" / "bench" / "preprocess_status.parquet")
    done = status[status["status"] == "done"]
    bodies = float(done[["convert_s", "resample_s", "write_s"]].sum().sum())
    return {"snakemake_wall_s": wall, "scans": int(len(done)), "snakemake_wall_s_per_scan": wall / max(len(done), 1),
            "stage_bodies_s": bodies, "overhead_fraction": 1.0 - bodies / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cohort-dir", type=Path, help="existing synthetic cohort (default: generate one)")
    ap.add_argument("--snakemake", action="store_true", help="also time the whole workflow under snakemake")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cacflow-bench-"))
    try:
        cohort = args.cohort_dir
        if cohort is None:
            cohort = work / "cohort"
            t = time.perf_counter()
            generate_cohort(cohort, n=args.n, seed=args.seed, small=args.small, workers=args.workers)
            print(f"generated {args.n} participants in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        runs = [measure_in_process(cohort / "dicom", work, 1, "synchronous"),
                measure_in_process(cohort / "dicom", work, args.workers, "processes")]
        result = {"in_process": runs}
        if args.snakemake:
            result["snakemake"] = measure_snakemake(cohort, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "preprocess_stages.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
