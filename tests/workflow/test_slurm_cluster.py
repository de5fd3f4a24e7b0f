"""The workflow on a real SLURM cluster (tests/slurm/local_cluster.sh): `snakemake --profile profiles/slurm`.

Slow (a few minutes: every job pays sbatch, srun and a Snakemake job step); runs in CI, never skips.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "slurm"
TABLES = ("series", "scores", "vessels", "lesions", "exclusions")
#: Rules that must never become SLURM jobs (declared `localrules` in the Snakefile).
LOCAL_RULES = {"all", "aggregate", "evaluate_all", "train"}
#: CI-friendly polling on top of the profile (a real site keeps the profile's intervals).
FAST_POLLING = ["--seconds-between-status-checks", "1", "--slurm-init-seconds-before-status-checks", "1"]


#: The partitions the profile reads from the environment: GPU rules to 'gpu', every other job to 'main'.
PARTITIONS = {"CACFLOW_SLURM_PARTITION": "main", "CACFLOW_SLURM_GPU_PARTITION": "gpu"}


def sacct_jobs(workdir: Path, since: str) -> pd.DataFrame:
    """SLURM's accounting records of the allocations submitted from ``workdir`` since ``since``: job id, rule
    (from the plugin's --comment rule_<name>_wildcards_...), state, partition, allocated TRES and exit code."""
    fields = ["JobIDRaw", "JobName", "State", "Partition", "AllocTRES", "Comment", "WorkDir", "ExitCode"]
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-S", since, "-E", "now", "-o", ",".join(fields)],
                         capture_output=True, text=True, check=True).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
    frame = pd.DataFrame(rows, columns=fields)
    frame = frame[frame["WorkDir"].map(lambda w: Path(w).resolve() == workdir.resolve() if w else False)].copy()
    frame["rule"] = frame["Comment"].map(lambda c: (re.match(r"rule_(.+?)(?:_wildcards_|$)", c) or [None, None])[1])
    return frame


def _since() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))


@pytest.fixture(scope="module")
def demo_on_slurm_and_locally(tmp_path_factory, slurm_cluster, run_snakemake):
    """The demo cohort run twice from the same generated DICOM: through SLURM with the project's profile (first,
    so the generator's job goes through SLURM too), then locally with --cores 2."""
    base = tmp_path_factory.mktemp("slurm_demo")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["resources"] = str(base / "resources")  # one generated cohort shared by both runs
    runs = {}
    for name, extra in (("slurm", ["--profile", str(PROFILE), *FAST_POLLING]), ("local", ["--cores", "2"])):
        workdir = base / name
        workdir.mkdir()
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        since = _since()
        proc = run_snakemake(workdir, *extra, env=PARTITIONS)
        assert proc.returncode == 0, f"{name} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        runs[name] = {"workdir": workdir, "since": since, "log": proc.stdout + proc.stderr}
    return runs


@pytest.mark.e2e
def test_every_cluster_job_went_through_slurm_and_completed(demo_on_slurm_and_locally):
    run = demo_on_slurm_and_locally["slurm"]
    jobs = sacct_jobs(run["workdir"], run["since"])
    shards = len(list((run["workdir"] / "results" / "demo" / "shards" / "preprocess").glob("shard-*.parquet")))
    assert shards >= 1
    expected = {"synth_cohort": 1, "discover": 1, "preprocess": shards, "infer": shards, "score": shards}
    assert jobs["rule"].value_counts().to_dict() == expected, jobs.to_string()
    assert set(jobs["State"]) == {"COMPLETED"}, jobs.to_string()
    assert not LOCAL_RULES & set(jobs["rule"])
    # the GPU rule asked for and got a GPU; no other job holds one
    gpu = jobs["AllocTRES"].str.contains("gres/gpu=1", regex=False)
    assert set(jobs.loc[gpu, "rule"]) == {"infer"}, jobs[["rule", "AllocTRES"]].to_string()
    # partitions came from the environment through the profile, without editing it or the workflow
    assert dict(zip(jobs["rule"], jobs["Partition"])) == {r: "gpu" if r == "infer" else "main" for r in expected}
    # the run reports the jobs it submitted through the SLURM executor
    assert "slurm" in run["log"].lower()


@pytest.mark.e2e
def test_slurm_run_tables_equal_the_local_run(demo_on_slurm_and_locally, cohort_table):
    slurm, local = (demo_on_slurm_and_locally[k]["workdir"] for k in ("slurm", "local"))
    for name in TABLES:
        a, b = cohort_table(slurm, "demo", name), cohort_table(local, "demo", name)
        assert list(a.columns) == list(b.columns), name
        assert len(a) == len(b), name
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9, obj=name)
    scores = cohort_table(slurm, "demo", "scores")
    assert {"classic_heart_region", "regression", "reference"} <= set(scores["method"])


RETRY_SNAKEFILE = """
localrules: all

rule all:
    input: "flaky.done"

rule flaky:
    output: "flaky.done"
    resources: runtime=2, mem_mb=200
    # fails on its first attempt only (the marker survives the failed job)
    shell: "if [ ! -e first-attempt.marker ]; then touch first-attempt.marker; exit 3; fi; echo ok > {output}"
"""


@pytest.mark.e2e
def test_a_failed_slurm_job_is_retried_as_the_profile_says(tmp_path, slurm_cluster, run_snakemake):
    retries = yaml.safe_load((PROFILE / "config.v8+.yaml").read_text())["retries"]
    assert retries >= 1
    (tmp_path / "Snakefile").write_text(RETRY_SNAKEFILE)
    since = _since()
    proc = run_snakemake(tmp_path, "--profile", str(PROFILE), *FAST_POLLING, timeout=600,
                         snakefile=tmp_path / "Snakefile", env=PARTITIONS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "flaky.done").read_text().strip() == "ok"
    jobs = sacct_jobs(tmp_path, since)
    assert list(jobs["rule"]) == ["flaky", "flaky"], jobs.to_string()
    assert list(jobs["State"]) == ["FAILED", "COMPLETED"], jobs.to_string()
