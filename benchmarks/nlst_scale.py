"""NLST-scale scheduling benchmark: how big the workflow's DAG is, and what it costs, at 75,000 exams.

Usage:
    python benchmarks/nlst_scale.py [--exams 75000] [--shard-size N] [--workdir /tmp/nlst_bench] [--repeats 5]

No pixels are made. For each selection mode ("prefer": one series per exam, the default; "all": every series, the
worst case) the script:

1. builds a synthetic NLST-style manifest (about 2.7 axial series per exam, so ~200,000 series for 75,000 exams;
   vectorised, seconds), shards its selected series with the workflow's own ``assign_shards`` and writes what the
   ``discover`` checkpoint writes (manifest, exclusions, shards.json, per-shard task tables) into a scratch
   working directory, with a config whose one cohort ``nlst`` has a real ``root``: an NLST-shaped tree of empty
   ``<PatientID>/<study>/<series>/`` folders (no files; the workflow fingerprints the tree while building its
   graph). A real-root cohort's discovery has no input, so its present outputs count as done and the dry run
   schedules the shard jobs only;
2. dry-runs the whole workflow there (``snakemake -n --quiet rules``), timing wall seconds and the peak RSS of the
   snakemake process, and checks its job counts per rule against the expected ones (discover must not run);
3. (prefer mode) times what each SLURM job re-does before its work starts: a ``snakemake --target-jobs ...
   --mode remote`` invocation that parses the full workflow and builds the DAG of one shard job, as the
   slurm / slurm-jobstep executor plugins spawn it (run here with ``--dry-run``), against import baselines. A
   SLURM job runs two such invocations: the batch step (``--executor slurm-jobstep``) and the ``srun`` step it
   starts (snakemake_executor_plugin_slurm_jobstep ``run_job``), so the per-job figure is twice the median.

Finally it estimates a default shard job's duration per stage from measured per-scan costs (each figure names
the file it comes from), prints a table and writes ``benchmarks/out/nlst_scale.json``.

Targets (issue acceptance): <= 1 job per 200 series per stage; dry run <= 30 s and <= 1 GB; re-parse <= 3 s per
job; a default CPU shard job lasts minutes to an hour, not seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cacflow import __version__
from cacflow import config as cfg
from cacflow.io.tables import write_json, write_parquet
from cacflow.pipeline.discover import ACQUISITION_FIELDS, assign_shards
from cacflow.pipeline.layout import CohortLayout

REPO = Path(__file__).resolve().parents[1]
COHORT = "nlst"
STAGES = ("preprocess", "infer", "score")
MODES = ("prefer", "all")

# Targets of the issue.
MAX_JOBS_PER_200_SERIES = 1.0
MAX_DRY_RUN_S = 30.0
MAX_DRY_RUN_MB = 1024.0
MAX_REPARSE_S = 3.0
MIN_JOB_S, MAX_JOB_S = 60.0, 3600.0

# NLST-like acquisition mix (weights, not a census): series per exam 2/3/4 gives ~2.67 on average.
SERIES_PER_EXAM = {2: 0.45, 3: 0.43, 4: 0.12}
EXAMS_PER_PARTICIPANT = 3  # T0, T1, T2 screens
SCANNERS = [("GE MEDICAL SYSTEMS", "LightSpeed16"), ("SIEMENS", "Sensation 16"), ("Philips", "Mx8000 IDT 16"),
            ("TOSHIBA", "Aquilion")]
KERNELS = [("STANDARD", "soft"), ("B30f", "soft"), ("C", "soft"), ("FC01", "soft"), ("BONE", "sharp"),
           ("B50f", "sharp"), ("D", "sharp"), ("LUNG", "sharp")]
UID_ROOT = "1.2.826.0.1.3680043.8.498"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class Measured:
    """One child process: wall and CPU (user + system) seconds, peak resident memory (MB), exit status, output."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


# ----------------------------------------------------------------------------------------------- manifest


def _uids(prefix: str, numbers: np.ndarray) -> list[str]:
    """DICOM-style UIDs ``<root>.<prefix>.<n>`` for each number."""
    return [f"{UID_ROOT}.{prefix}.{n}" for n in numbers.tolist()]


def _study_key(study_uid: str) -> str:
    """Same pseudonymous key as ``cacflow.discovery.selection.study_key``."""
    return "s" + hashlib.sha256(study_uid.encode()).hexdigest()[:16]


def build_manifest(exams: int, seed: int, reconstructions: str) -> pd.DataFrame:
    """A discover-style manifest of ``exams`` NLST exams (one row per axial series, no pixels anywhere).

    ``reconstructions='prefer'`` selects one series per exam (a soft kernel when the exam has one, as
    ``_prefer_reconstructions`` would); ``'all'`` selects every series.
    """
    rng = np.random.default_rng(seed)
    counts = rng.choice(list(SERIES_PER_EXAM), size=exams, p=list(SERIES_PER_EXAM.values()))
    exam = np.repeat(np.arange(exams), counts)
    n = len(exam)
    rank = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)  # series number within its exam, 0-based
    participant = exam // EXAMS_PER_PARTICIPANT
    scanner = rng.integers(len(SCANNERS), size=exams)[exam]
    kernel = rng.integers(len(KERNELS), size=n)
    thickness = rng.choice([1.25, 2.0, 2.5, 3.0], size=n, p=[0.1, 0.2, 0.3, 0.4])
    z_extent = rng.normal(250.0, 25.0, size=n).clip(180.0, 380.0)
    increment = thickness  # contiguous slices: ~110 images per series on average, as NLST's 21 M / 200 k
    n_slices = np.round(z_extent / increment).astype(int) + 1
    spacing = rng.uniform(0.55, 0.85, size=n).round(4)
    study_uid = _uids("1", 10_000_000 + exam)
    series_uid = _uids("2", 10_000_000 + np.arange(n))
    kernel_class = np.array([k[1] for k in KERNELS])[kernel]
    man = pd.DataFrame({
        "series_uid": series_uid,
        "series_key": series_uid,
        "patient_id": (100_000 + participant).astype(str),
        "study_uid": study_uid,
        "series_number": rank + 2,
        "n_files": n_slices,
        "modality": "CT",
        "sop_class_uid": CT_IMAGE_STORAGE,
        "image_type": "ORIGINAL\\PRIMARY\\AXIAL",
        "manufacturer": np.array([s[0] for s in SCANNERS])[scanner],
        "model": np.array([s[1] for s in SCANNERS])[scanner],
        "kernel": np.array([k[0] for k in KERNELS])[kernel],
        "kernel_class": kernel_class,
        "kvp": rng.choice([120.0, 140.0], size=exams)[exam],
        "tube_current_ma": rng.integers(40, 90, size=exams)[exam].astype(float),
        "exposure_mas": rng.integers(20, 60, size=exams)[exam].astype(float),
        "ctdi_vol": rng.uniform(1.5, 4.0, size=exams)[exam].round(2),
        "slice_thickness_mm": thickness,
        "patient_position": "FFS",
        "transfer_syntax": "1.2.840.10008.1.2.1",
        "rows": 512,
        "columns": 512,
        "contrast": False,
        "gantry_tilt_deg": 0.0,
        "n_slices": n_slices.astype(float),
        "increment_mm": increment,
        "z_extent_mm": (n_slices - 1) * increment,
        "pixel_spacing_row_mm": spacing,
        "pixel_spacing_col_mm": spacing,
        "axial_deviation_deg": 0.0,
        "study_year": 1999 + exam % EXAMS_PER_PARTICIPANT + rng.integers(0, 2, size=exams)[exam],
    })
    if reconstructions == "all":
        selected = np.ones(n, dtype=bool)
    else:  # one per exam: the first soft kernel, else the first series (kernel_preference soft, unknown, sharp)
        order = man.assign(_exam=exam, _rank=(kernel_class != "soft").astype(int)).sort_values(["_exam", "_rank"])
        selected = np.zeros(n, dtype=bool)
        selected[order.drop_duplicates("_exam").index.to_numpy()] = True
    man["selected"] = selected
    man["reason"] = np.where(selected, "selected", "not_preferred_reconstruction")
    man["message"] = [f"series {k}: eligible" if s else f"series {k}: another series of the same study preferred"
                      for k, s in zip(man["series_key"], selected)]
    keys = {uid: _study_key(uid) for uid in dict.fromkeys(study_uid)}
    man["study_key"] = man["study_uid"].map(keys)
    return man


# ----------------------------------------------------------------------------------------------- discover outputs


def write_discover_outputs(manifest: pd.DataFrame, layout: CohortLayout, shard_size: int) -> list[str]:
    """Write what the discover checkpoint writes: manifest, exclusions, per-shard task tables and shards.json.

    Shards come from the workflow's own ``assign_shards``. The task tables have the real columns with empty file
    lists (a dry run never opens them; 21 M file paths would only slow the set-up). Returns the shard ids.
    """
    man = manifest.copy()
    man["shard"] = assign_shards(man, shard_size)
    provenance = {"cacflow_version": __version__, "stage": "discover", "benchmark": "nlst_scale"}
    meta_json = man[list(ACQUISITION_FIELDS) + ["patient_id", "series_uid"]].to_json(orient="records", lines=True)
    man["_metadata"] = meta_json.splitlines()
    shard_ids = sorted(man["shard"].dropna().unique().tolist())
    for shard, group in man[man["selected"]].groupby("shard", sort=True):
        empty = [[] for _ in range(len(group))]
        tasks = pd.DataFrame({"series_key": group["series_key"].to_numpy(), "paths": empty, "sizes": empty,
                              "mtimes": empty, "metadata": group["_metadata"].to_numpy()})
        write_parquet(tasks, layout.shard_tasks(shard), provenance)
    public = man.drop(columns=["_metadata", "study_uid"])
    write_parquet(public, layout.manifest, provenance)
    excl = man.loc[~man["selected"], ["series_key", "series_uid", "reason", "message"]].assign(
        level="series", stage="discover", path=None)
    write_parquet(excl, layout.discover_exclusions, provenance)
    write_json({"cohort": layout.cohort, "shards": shard_ids}, layout.shard_index)
    return shard_ids


def make_root_tree(root: Path, manifest: pd.DataFrame) -> float:
    """An NLST-shaped, file-less DICOM root: ``<PatientID>/<study>/<series>/`` folders, one per manifest series.

    The workflow fingerprints a real root's folder tree while it builds the job graph (discover's rerun trigger),
    so an empty root would under-measure the dry run. Reused when already complete. Returns seconds spent.
    """
    start = time.perf_counter()
    marker = root.parent / f"{root.name}.complete"
    want = f"{len(manifest)} series, first {manifest['series_uid'].iat[0]}, last {manifest['series_uid'].iat[-1]}"
    if marker.exists() and marker.read_text() == want:
        return time.perf_counter() - start
    if root.exists():
        shutil.rmtree(root)
    for patient, study, series in zip(manifest["patient_id"], manifest["study_uid"], manifest["series_uid"]):
        os.makedirs(os.path.join(root, patient, study, series), exist_ok=True)
    marker.write_text(want)
    return time.perf_counter() - start


def write_config(workdir: Path, root: Path, shard_size: int, threads: int, reconstructions: str,
                 name: str = "config.yaml") -> Path:
    """The scratch config: one real-root cohort ``nlst`` and the sharding under test (other keys default)."""
    config = {
        "results": "results",
        "resources": "resources",
        "cohorts": {COHORT: {"root": str(root)}},
        "selection": {"reconstructions": reconstructions},
        "sharding": {"shard_size": shard_size, "threads": threads},
    }
    cfg.validate(json.loads(json.dumps(config)))  # fail here, not inside snakemake, on a bad key
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prepare_workdir(workdir: Path, root: Path, manifest: pd.DataFrame, shard_size: int, threads: int,
                    reconstructions: str) -> tuple[Path, list[str]]:
    """A fresh scratch working directory with the discover outputs and config; returns (config path, shards)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shards = write_discover_outputs(manifest, CohortLayout(workdir / "results", COHORT), shard_size)
    return write_config(workdir, root, shard_size, threads, reconstructions), shards


# ----------------------------------------------------------------------------------------------- processes


# Forks and execs the command, then reports its wall time and peak RSS from wait4. A tiny stdlib-only launcher, so
# the child's peak RSS does not include the benchmark process's memory (Linux counts the pre-exec image too).
_LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as fh:
    json.dump({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_kb": usage.ru_maxrss,
               "returncode": os.waitstatus_to_exitcode(status)}, fh)
"""


def run_measured(cmd: list[str], cwd: Path | None = None) -> Measured:
    """Run ``cmd`` to completion: its wall time and the peak RSS of it and its children (MB)."""
    with tempfile.TemporaryDirectory(prefix="nlst-bench-") as tmp:
        out, err, stats = Path(tmp) / "stdout", Path(tmp) / "stderr", Path(tmp) / "stats.json"
        with open(out, "w") as fo, open(err, "w") as fe:
            subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(stats), *cmd], cwd=cwd, stdout=fo,
                           stderr=fe, check=True)
        m = json.loads(stats.read_text())
        return Measured(m["wall_s"], m["cpu_s"], m["max_rss_kb"] / 1024.0, m["returncode"], out.read_text(),
                        err.read_text())


def snakemake_cmd(workdir: Path, config: Path, *args: str) -> list[str]:
    """``python -m snakemake`` on the repository's Snakefile in ``workdir`` with ``config``."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(config), *args]


def parse_job_stats(text: str) -> dict[str, int]:
    """Job counts per rule from snakemake's "Job stats" table (``total`` included)."""
    counts: dict[str, int] = {}
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return counts
    for line in lines[start + 1:]:
        m = re.fullmatch(r"\s*([A-Za-z_][\w]*)\s+(\d+)\s*", line)
        if m:
            counts[m.group(1)] = int(m.group(2))
            if m.group(1) == "total":
                break
        elif counts:
            break
    return counts


def expected_jobs(n_shards: int) -> dict[str, int]:
    """Jobs a full run should schedule once discovery is done: the shard stages, aggregate and the target."""
    jobs = {stage: n_shards for stage in STAGES} | {"aggregate": 1, "all": 1}
    return jobs | {"total": sum(jobs.values())}


def dry_run(workdir: Path, config: Path) -> tuple[Measured, dict[str, int]]:
    """The whole workflow's dry run in ``workdir``: measurement and job counts per rule."""
    res = run_measured(snakemake_cmd(workdir, config, "--dry-run", "--quiet", "rules", "--cores", "2"))
    if res.returncode != 0:
        raise RuntimeError(f"dry run failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res, parse_job_stats(res.stdout + "\n" + res.stderr)


def remote_job_args(rule: str, shard: str, threads: int) -> list[str]:
    """The arguments a SLURM job passes to ``python -m snakemake`` for one job (executor plugins' job exec:
    ``get_job_args`` + ``general_args`` + ``--mode remote``), less storage/deployment flags this config does
    not use, plus ``--dry-run`` so the job's script is not run."""
    return ["--target-jobs", f"{rule}:cohort={COHORT},shard={shard}", "--allowed-rules", rule, "--cores", str(threads),
            "--attempt", "1", "--force", "--target-files-omit-workdir-adjustment", "--max-inventory-time", "0",
            "--retries", "0", "--nocolor", "--no-hooks", "--nolock", "--ignore-incomplete",
            "--rerun-triggers", "code", "input", "mtime", "params", "software-env",
            "--mode", "remote", "--dry-run", "--quiet", "rules"]


def time_command(cmd: list[str], repeats: int) -> dict[str, float]:
    """Median, min and max wall seconds, median CPU seconds and the peak RSS (MB) of ``repeats`` runs of ``cmd``;
    raises on failure."""
    walls, cpus, rss = [], [], 0.0
    for _ in range(repeats):
        res = run_measured(cmd)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
        walls.append(res.wall_s)
        cpus.append(res.cpu_s)
        rss = max(rss, res.max_rss_mb)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls), "runs": repeats,
            "cpu_median_s": statistics.median(cpus), "peak_rss_mb": rss}


def reparse_times(workdir: Path, config: Path, shard: str, threads: int, repeats: int) -> dict[str, dict]:
    """Seconds one shard job spends re-parsing the workflow (per stage rule), and import-level baselines.

    ``job_preprocess_empty_root`` is the same job with the cohort root pointed at an empty folder: the difference
    is what the NLST-sized root costs while the job's graph is built."""
    py = sys.executable
    out: dict[str, dict] = {
        "baseline_python": time_command([py, "-c", "pass"], repeats),
        "baseline_import_snakemake": time_command([py, "-c", "import snakemake"], repeats),
        "baseline_import_snakemake_cli": time_command([py, "-c", "import snakemake.cli"], repeats),
        "baseline_snakemake_version": time_command([py, "-m", "snakemake", "--version"], repeats),
        "baseline_import_cacflow_config": time_command([py, "-c", "import cacflow.config"], repeats),
    }
    for rule in STAGES:
        args = remote_job_args(rule, shard, threads)
        out[f"job_{rule}"] = time_command(snakemake_cmd(workdir, config, *args), repeats)
    empty_root = workdir / "empty-root"
    empty_root.mkdir(exist_ok=True)
    settings = yaml.safe_load(config.read_text())
    empty = write_config(workdir, empty_root, settings["sharding"]["shard_size"], threads,
                         settings["selection"]["reconstructions"], name="config-empty-root.yaml")
    out["job_preprocess_empty_root"] = time_command(
        snakemake_cmd(workdir, empty, *remote_job_args("preprocess", shard, threads)), repeats)
    return out


# ----------------------------------------------------------------------------------------------- job durations


def _tsv_wall_s(path: Path) -> float | None:
    """Wall seconds of a snakemake ``benchmark:`` TSV (first row), or None when absent."""
    if not path.exists():
        return None
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def _rows(path: Path) -> int | None:
    """Rows of a Parquet table, or None when absent."""
    return len(pd.read_parquet(path)) if path.exists() else None


def per_scan_costs(threads: int, scheduler: str) -> dict[str, list[dict]]:
    """Measured seconds per scan for each stage, each with its source, from the repository's benchmark files.

    Only measurements made with the configured threads (and Dask scheduler, for preprocessing) count. A workflow
    ``benchmark:`` TSV (its jobs ran with the default config) counts only with its shard's scan count
    (``results/<cohort>/shards/...``).
    """
    costs: dict[str, list[dict]] = {stage: [] for stage in STAGES}
    stages_json = REPO / "benchmarks/out/preprocess_stages.json"
    if stages_json.exists():
        for row in json.loads(stages_json.read_text())["in_process"]:
            if row["workers"] != threads or row["scheduler"] != scheduler:
                continue
            costs["preprocess"].append({
                "s_per_scan": row["shard_wall_s_per_scan"], "scans": row["scans"], "threads": row["workers"],
                "source": f"benchmarks/out/preprocess_stages.json in_process scheduler={row['scheduler']} "
                          f"workers={row['workers']}: shard_wall_s_per_scan ({row['scans']} scans, "
                          f"{row['slices_mean']:.0f} slices)"})
    infer_json = REPO / "benchmarks/out/inference_cpu.json"
    if infer_json.exists():
        data = json.loads(infer_json.read_text())
        big = max(data["shards"], key=lambda s: s["scans"])
        if data["threads"] == threads:
            costs["infer"].append({"s_per_scan": big["s_per_scan"], "scans": big["scans"], "threads": data["threads"],
                                   "source": f"benchmarks/out/inference_cpu.json shards[scans={big['scans']}]"
                                             ".s_per_scan (whole job process, CPU)"})
    for stage in STAGES:
        for tsv in sorted((REPO / "benchmarks" / stage).glob("*/shard-*.tsv")):
            cohort, shard = tsv.parent.name, tsv.stem
            layout = CohortLayout(REPO / "results", cohort)
            table = layout.shard_status(shard) if stage == "preprocess" else (
                layout.shard_infer(shard) if stage == "infer" else layout.shard_scores(shard, "regions"))
            wall, scans = _tsv_wall_s(tsv), _rows(table)
            if wall is None or not scans:
                continue
            costs[stage].append({"s_per_scan": wall / scans, "scans": scans, "threads": threads,
                                 "source": f"{tsv.relative_to(REPO)} (workflow job wall {wall:.1f} s) / {scans} scans "
                                           f"in {table.relative_to(REPO)}"})
    return costs


def job_durations(costs: dict[str, list[dict]], shard_size: int) -> dict[str, dict]:
    """A full shard's job duration per stage: shard_size x seconds per scan; low and high over the measurements.

    Per-scan figures from small shards carry the job's fixed start-up costs, so they overestimate."""
    out: dict[str, dict] = {}
    for stage, rows in costs.items():
        if not rows:
            out[stage] = {"low_s": None, "high_s": None, "within_minutes_to_hour": None, "estimates": []}
            continue
        est = [{**r, "job_s": shard_size * r["s_per_scan"]} for r in rows]
        low, high = min(e["job_s"] for e in est), max(e["job_s"] for e in est)
        out[stage] = {"low_s": low, "high_s": high, "within_minutes_to_hour": MIN_JOB_S <= low and high <= MAX_JOB_S,
                      "estimates": est}
    return out


# ----------------------------------------------------------------------------------------------- report


def mode_figures(manifest: pd.DataFrame, shards: list[str], measured: Measured, jobs: dict[str, int],
                 shard_size: int, setup_s: float) -> dict:
    """Figures of one selection mode: sizes, jobs per rule and per 200 series, dry-run cost, checks."""
    n_series, n_selected = len(manifest), int(manifest["selected"].sum())
    expected = expected_jobs(len(shards))
    per200 = {s: jobs.get(s, 0) / (n_series / 200.0) for s in STAGES}
    allowed = math.ceil(n_series / 200)
    per200_selected = {s: jobs.get(s, 0) / (n_selected / 200.0) for s in STAGES}
    return {
        "series": n_series, "selected_series": n_selected, "shard_size": shard_size, "shards": len(shards),
        "setup_s": setup_s,
        "max_jobs_per_stage_allowed": allowed, "jobs_per_rule": jobs, "expected_jobs_per_rule": expected,
        "jobs_as_expected": jobs == expected, "discover_scheduled": jobs.get("discover", 0) > 0,
        "jobs_per_200_series_per_stage": per200, "jobs_per_200_selected_series_per_stage": per200_selected,
        "dry_run_wall_s": measured.wall_s, "dry_run_cpu_s": measured.cpu_s, "dry_run_peak_rss_mb": measured.max_rss_mb,
        "targets": {
            "jobs_per_200_series": all(jobs.get(s, 0) <= MAX_JOBS_PER_200_SERIES * allowed for s in STAGES),
            "dry_run_wall": measured.wall_s <= MAX_DRY_RUN_S,
            "dry_run_memory": measured.max_rss_mb <= MAX_DRY_RUN_MB,
        },
    }


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.0f} s ({x / 60:.1f} min)" if x >= 60 else f"{x:.1f} s"


def _row(label: str, values: list[str]) -> str:
    return f"{label:36}" + "".join(f"{v:>14}" for v in values)


def print_report(result: dict) -> None:
    """The human-readable table."""
    modes = list(result["modes"].values())
    print(f"\nNLST-scale scheduling benchmark: {result['exams']:,} exams, shard_size {result['shard_size']}, "
          f"threads {result['threads']}, snakemake {result['snakemake_version']}"
          f", {result['cpu_count']} CPUs, load avg at start {result['loadavg_start']}")
    print(_row("selection.reconstructions", list(result["modes"])))
    for label, key in (("series", "series"), ("selected series", "selected_series"), ("shards", "shards")):
        print(_row(label, [f"{m[key]:,}" for m in modes]))
    for rule in (*STAGES, "aggregate", "all", "discover", "total"):
        print(_row(f"jobs {rule}", [f"{m['jobs_per_rule'].get(rule, 0):,}" for m in modes]))
    print(_row("jobs per 200 series, per stage", [f"{max(m['jobs_per_200_series_per_stage'].values()):.3f}"
                                                   for m in modes]))
    print(_row("jobs as expected, discover not run", [str(m["jobs_as_expected"] and not m["discover_scheduled"])
                                                      for m in modes]))
    print(_row("dry run wall (s)", [f"{m['dry_run_wall_s']:.1f}" for m in modes]))
    print(_row("dry run CPU (s)", [f"{m['dry_run_cpu_s']:.1f}" for m in modes]))
    print(_row("dry run peak RSS (MB)", [f"{m['dry_run_peak_rss_mb']:.0f}" for m in modes]))
    print(_row("set-up: manifest / outputs (s)", [f"{m['manifest_build_s']:.1f} / {m['setup_s']:.1f}"
                                                  for m in modes]))
    rp = result["reparse"]
    print(f"\nRe-parse per job: wall s, median [min-max] of {rp['job_preprocess']['runs']} runs, CPU s, peak RSS "
          "(job: snakemake --target-jobs <rule>:cohort=nlst,shard=... --mode remote --dry-run)")
    for key, val in rp.items():
        print(f"  {key:36}{val['median_s']:6.2f}  [{val['min_s']:.2f}-{val['max_s']:.2f}]  "
              f"{val['cpu_median_s']:5.2f}  {val['peak_rss_mb']:5.0f} MB")
    print(f"  per SLURM job (sbatch step + srun step each parse once): {result['reparse_per_slurm_job_s']:.2f} s")
    rs = result["parse_time_work"]["root_state"]
    if rs:
        print(f"  root_state fingerprint of the NLST-shaped root (depth {rs['depth']}, warm): {rs['median_s']:.2f} s")
    print(f"\nShard job duration at shard_size {result['shard_size']} (shard_size x measured s/scan, "
          f"threads {result['threads']})")
    for stage, d in result["job_durations"].items():
        print(f"  {stage:12}{_fmt_s(d['low_s']):>18} .. {_fmt_s(d['high_s'])}")
        for e in d["estimates"]:
            print(f"      {e['s_per_scan']:.2f} s/scan  <- {e['source']}")
    print("\nTargets")
    for name, ok in result["targets"].items():
        print(f"  {name:60}{'met' if ok else 'NOT met'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exams", type=int, default=75_000)
    ap.add_argument("--shard-size", type=int, default=None, help="default: sharding.shard_size of config.yaml")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/nlst_bench"))
    ap.add_argument("--repeats", type=int, default=5, help="runs per re-parse / baseline timing")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/out/nlst_scale.json")
    return ap.parse_args(argv)


def root_state_seconds(root: Path, repeats: int) -> dict | None:
    """Median seconds of the workflow's root fingerprint (``cacflow.discovery.root_state``, evaluated while the
    DAG is built) over the NLST-shaped root at the default watch depth; None where the workflow has no such step."""
    try:
        from cacflow.discovery.root_state import root_state
    except ImportError:
        return None
    depth = int(cfg.validate({"cohorts": {COHORT: {"root": str(root)}}})["cohorts"][COHORT].get("watch_depth", 3))
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        root_state(root, depth)
        walls.append(time.perf_counter() - t)
    return {"depth": depth, "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls)}


def run_mode(mode: str, args: argparse.Namespace, root: Path, shard_size: int, threads: int) -> tuple[dict, tuple]:
    """Manifest, scratch workdir and dry run of one selection mode; (figures, (workdir, config, first shard))."""
    t = time.perf_counter()
    manifest = build_manifest(args.exams, args.seed, mode)
    build_s = time.perf_counter() - t
    tree_s = make_root_tree(root, manifest)
    t = time.perf_counter()
    workdir = args.workdir / mode
    config, shards = prepare_workdir(workdir, root, manifest, shard_size, threads, mode)
    setup_s = time.perf_counter() - t
    measured, jobs = dry_run(workdir, config)
    figures = mode_figures(manifest, shards, measured, jobs, shard_size, setup_s)
    return figures | {"manifest_build_s": build_s, "root_tree_s": tree_s}, (workdir, config, shards[0])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    repo_config = cfg.load(REPO / "config.yaml")
    shard_size = args.shard_size or int(repo_config["sharding"]["shard_size"])
    threads = int(repo_config["sharding"]["threads"])
    scheduler = str(repo_config["sharding"]["scheduler"])
    root = args.workdir / "dicom"
    result: dict = {"exams": args.exams, "shard_size": shard_size, "threads": threads, "scheduler": scheduler,
                    "seed": args.seed, "workdir": str(args.workdir), "root": str(root),
                    "loadavg_start": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count(),
                    "snakemake_version": metadata.version("snakemake"),
                    "modes": {}}
    targets = {}
    for mode in MODES:
        result["modes"][mode], job = run_mode(mode, args, root, shard_size, threads)
        targets.setdefault("prefer", job)
    workdir, config, shard = targets["prefer"]
    result["reparse"] = reparse_times(workdir, config, shard, threads, args.repeats)
    worst = max(result["reparse"][f"job_{r}"]["median_s"] for r in STAGES)
    result["reparse_worst_job_median_s"] = worst
    result["reparse_per_slurm_job_s"] = 2 * worst
    result["parse_time_work"] = {"root_state": root_state_seconds(root, args.repeats)}
    result["per_scan_costs"] = per_scan_costs(threads, scheduler)
    result["job_durations"] = job_durations(result["per_scan_costs"], shard_size)
    modes = result["modes"].values()
    result["targets"] = {
        "<= 1 job per 200 series per stage (all modes)": all(m["targets"]["jobs_per_200_series"] for m in modes),
        "dry run <= 30 s (all modes)": all(m["targets"]["dry_run_wall"] for m in modes),
        "dry run <= 1 GB (all modes)": all(m["targets"]["dry_run_memory"] for m in modes),
        "re-parse <= 3 s per snakemake invocation": worst <= MAX_REPARSE_S,
        "re-parse <= 3 s per SLURM job (2 invocations)": 2 * worst <= MAX_REPARSE_S,
        "default CPU shard job lasts minutes to an hour": all(
            d["within_minutes_to_hour"] for d in result["job_durations"].values()),
        "dry runs schedule exactly the expected jobs, no discover": all(
            m["jobs_as_expected"] and not m["discover_scheduled"] for m in modes),
    }
    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
