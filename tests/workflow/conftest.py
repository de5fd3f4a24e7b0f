"""Fixtures of the workflow tests: a real one-node SLURM cluster on localhost, and the Snakemake command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests" / "slurm" / "local_cluster.sh"


def _cluster(action: str, state: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"CACFLOW_SLURM_STATE": str(state)} if state else {})}
    return subprocess.run(["bash", str(CLUSTER), action], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """The local SLURM cluster: used as it is when already up (CI starts it), else installed and started here and
    stopped at the end of the session (only the daemons started here: they are recorded in a state folder of this
    session). It never skips: a cluster that cannot start fails the tests that need it."""
    if _cluster("status", timeout=60).returncode == 0:
        yield "already running"
        return
    state = tmp_path_factory.mktemp("slurm_state")
    for action in ("install", "start"):
        proc = _cluster(action, state)
        if proc.returncode != 0:
            pytest.fail(f"local SLURM cluster: `{CLUSTER.name} {action}` failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    try:
        yield "started by the tests"
    finally:
        _cluster("stop", state, 120)


@pytest.fixture(scope="session")
def snakemake_exe() -> str:
    """The snakemake of this interpreter's environment."""
    return shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))


def _sorted_table(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    keys = [c for c in ("series_key", "method", "vessel", "lesion_index", "level", "stage", "file_key")
            if c in frame.columns]
    return frame.sort_values(keys, na_position="last").reset_index(drop=True)


@pytest.fixture(scope="session")
def cohort_table():
    """read(workdir, cohort, table) -> the cohort's partition of a public table, rows in a stable order."""
    def read(workdir: Path, cohort: str, table: str):
        return _sorted_table(Path(workdir) / "results" / "tables" / table / f"cohort={cohort}" / "part-0.parquet")
    return read


def _workflow_env(**extra: str) -> dict[str, str]:
    """This process's environment with its interpreter's folder first on PATH (snakemake, its scripts and SLURM jobs,
    which inherit it through sbatch --export=ALL, use this venv), plus ``extra`` variables."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@pytest.fixture(scope="session")
def run_snakemake(snakemake_exe):
    """run(workdir, *args, timeout=..., snakefile=..., env=...) -> CompletedProcess of a workflow (the repository's
    by default) in ``workdir`` (which holds its config.yaml), under :func:`_workflow_env` with ``env`` added."""
    def run(workdir: Path, *args: str, timeout: float = 1200, snakefile: Path = REPO / "Snakefile",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        # Snakemake ignores SIGTERM while it polls; `timeout -k` makes sure a hung run ends
        cmd = ["timeout", "-k", "15", str(int(timeout)), snakemake_exe, "-s", str(snakefile),
               "--directory", str(workdir), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=_workflow_env(**(env or {})))
    return run


@pytest.fixture(scope="session")
def workflow_env() -> dict[str, str]:
    """The environment workflow runs get (this interpreter's folder first on PATH)."""
    return _workflow_env()


def planned_jobs(output: str) -> dict[str, int]:
    """Jobs per rule from a dry run's 'Job stats' table."""
    jobs: dict[str, int] = {}
    if "Job stats:" not in output:
        return jobs
    for line in output.split("Job stats:", 1)[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="session")
def dry_run_jobs(run_snakemake):
    """jobs(workdir, *args) -> {rule: count} Snakemake would run now (empty: nothing to be done)."""
    def jobs(workdir: Path, *args: str) -> dict[str, int]:
        proc = run_snakemake(workdir, "-n", *args, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return planned_jobs(proc.stdout + proc.stderr)
    return jobs
