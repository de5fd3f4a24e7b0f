"""Faults: a shard job killed with SIGKILL mid-way, and scans that make a scorer raise (slow; runs in CI).

The SLURM retry of a failed job is tested with the cluster in test_slurm_cluster.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cacflow import config as cfg
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.score import run_score_shard
from cacflow.pipeline.shard import run_shard, shard_options

REPO = Path(__file__).resolve().parents[2]
TABLES = ("series", "scores", "vessels", "lesions", "exclusions")


def _workdir(base: Path, name: str, small_cohort: Path) -> Path:
    workdir = base / name
    workdir.mkdir()
    config = {"cohorts": {"K": {"root": str(small_cohort / "dicom"), "labels": str(small_cohort / "truth" / "labels")}},
              "sharding": {"shard_size": 50, "threads": 2, "scheduler": "processes"}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


@pytest.mark.e2e
def test_a_shard_killed_mid_way_reruns_to_the_tables_of_an_uninterrupted_run(
        tmp_path, small_cohort, run_snakemake, snakemake_exe, cohort_table, workflow_env):
    reference = _workdir(tmp_path, "uninterrupted", small_cohort)
    proc = run_snakemake(reference, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]

    workdir = _workdir(tmp_path, "killed", small_cohort)
    status_dir = workdir / "results" / "K" / "status"
    shard_table = workdir / "results" / "K" / "shards" / "preprocess" / "shard-0000.parquet"
    job = subprocess.Popen([snakemake_exe, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=workflow_env,
                           start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        # wait until the preprocessing shard has finished some scans but not the shard, then kill everything
        while not (status_dir.is_dir() and any(status_dir.glob("*.json"))):
            assert job.poll() is None and time.monotonic() < deadline, "the run ended before the shard began"
            time.sleep(0.02)
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    done_before_kill = {p.stem for p in status_dir.glob("*.json")}
    assert not shard_table.exists(), "the kill came after the shard finished: nothing was interrupted"
    n_selected = len(pd.read_parquet(workdir / "results" / "K" / "manifest" / "series.parquet").query("selected"))
    assert 1 <= len(done_before_kill) < n_selected
    # nothing downstream counted the interrupted shard
    assert not (workdir / "results" / "tables").exists()

    assert run_snakemake(workdir, "--unlock").returncode == 0
    proc = run_snakemake(workdir, "--cores", "2", "--rerun-incomplete")
    assert proc.returncode == 0, proc.stderr[-4000:]
    status = pd.read_parquet(shard_table).set_index("series_key")["status"]
    assert set(status[sorted(done_before_kill & set(status.index))]) <= {"skipped", "excluded"}
    assert "done" in set(status)  # the scans the kill interrupted were processed after it
    for name in TABLES:
        got, want = cohort_table(workdir, "K", name), cohort_table(reference, "K", name)
        if name == "series":  # what this run did to a scan: 'skipped' is a scan finished before the kill
            assert set(got.loc[got["preprocess_status"] == "skipped", "series_key"]) <= done_before_kill
            got["preprocess_status"] = got["preprocess_status"].replace("skipped", "done")
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-9, obj=name)
    leftovers = [p for p in (workdir / "results" / "K" / "volumes").rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers


def _set_spacing(store: Path, spacing_zyx: list[float]) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["cacflow"]["spacing_zyx_mm"] = spacing_zyx
    (store / "zarr.json").write_text(json.dumps(meta))


def test_scans_that_make_a_scorer_raise_become_exclusions_and_the_shard_completes(small_cohort, tmp_path):
    root = small_cohort / "dicom"
    config = cfg.validate({"cohorts": {"c": {"root": str(root)}}, "sharding": {"shard_size": 50}})
    layout = CohortLayout(tmp_path / "results", "c")
    run_discover(root, layout, config, workers=2)
    (shard,) = json.loads(layout.shard_index.read_text())["shards"]
    status = run_shard(layout, shard, root, workers=2, **shard_options(config))
    keys = sorted(status.query("status == 'done'")["series_key"])
    assert len(keys) >= 3
    broken_volume, broken_inference = keys[0], keys[1]
    # a scoring-grid volume whose geometry says 0 mm pixels: the classic scorer raises on it
    _set_spacing(layout.volume(broken_volume, "scoring"), [1.5, 0.0, 0.0])
    # an inference row that cannot be read: the regression method raises on it
    infer = pd.DataFrame({"series_key": keys, "status": "done", "heart_box_method": "heuristic_fallback",
                          "regression_raw": ["[[1.0, 2.0]]"] * len(keys), "regression_spacing_z_mm": 1.5})
    infer.loc[infer["series_key"] == broken_inference, "regression_raw"] = "not a list"
    layout.shard_infer(shard).parent.mkdir(parents=True, exist_ok=True)
    infer.to_parquet(layout.shard_infer(shard))

    frames = run_score_shard(layout, shard, root, config, labels_dir=small_cohort / "truth" / "labels", workers=2)
    scores, excl = frames["scores"], frames["exclusions"]
    classic = scores[scores["method"] == "classic_heart_region"].set_index("series_key")
    assert classic.loc[broken_volume, "status"] == "failed"
    assert classic.loc[broken_volume, "reason"] == "scoring_failed"
    assert "classic scoring failed" in classic.loc[broken_volume, "message"]
    assert set(scores.loc[scores["series_key"] == broken_inference, "status"]) == {"failed"}
    assert set(scores.loc[scores["series_key"] == broken_inference, "reason"]) == {"scoring_failed"}
    # each fault is an exclusion with its reason; every other scan of the shard was scored by every method
    assert {(broken_volume, "classic_heart_region"), (broken_inference, "regression")} <= set(
        zip(excl["series_key"], excl["method"]))
    assert (excl["reason"] == "scoring_failed").all()
    others = scores[scores["series_key"].isin(keys[2:])]
    assert len(others) and (others["status"] == "scored").all()
    assert layout.shard_scores(shard, "scores").is_file()
