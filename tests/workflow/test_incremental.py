"""Incremental reruns per cohort, by the real workflow on two real-root cohorts (slow; runs in CI).

The tests run in file order on one workspace: a first run of cohorts A (3 participants) and B (1), then new
studies arrive in A, then the regressor checkpoint is replaced, then the scoring convention changes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from cacflow.models.checkpoint import load_checkpoint, save_checkpoint
from cacflow.synth.cohort import generate_cohort

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _files(workdir: Path, cohort: str) -> list[Path]:
    """Every output and log file of one cohort."""
    out = [p for p in (workdir / "results" / cohort).rglob("*") if p.is_file()]
    out += [p for p in (workdir / "results" / "tables").glob(f"*/cohort={cohort}/*") if p.is_file()]
    out += [p for p in (workdir / "logs").rglob("*")  # logs and benchmark records (logs/benchmarks)
            if p.is_file() and (cohort in p.relative_to(workdir).parts or p.name.startswith(f"{cohort}."))]
    return sorted(out)


def _snapshot(files: list[Path]) -> dict[str, tuple[str, int]]:
    """path -> (SHA-256 of the bytes, mtime in ns)."""
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files}


def _stage_frames(workdir: Path, cohort: str, stage: str) -> pd.DataFrame:
    paths = sorted((workdir / "results" / cohort / "shards" / stage).glob("shard-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def _provenance(path: Path) -> dict:
    """The cacflow provenance a stage wrote into a Parquet file's metadata."""
    return json.loads(pq.read_schema(path).metadata[b"cacflow"])


def _mtimes(paths) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small_cohort, run_snakemake):
    base = tmp_path_factory.mktemp("incremental")
    participants = sorted(p for p in (small_cohort / "dicom").iterdir() if p.is_dir())
    assert len(participants) >= 6
    root_a, root_b = base / "data" / "A", base / "data" / "B"
    for p in participants[:3]:
        shutil.copytree(p, root_a / p.name)
    generate_cohort(base / "synth_b", n=1, seed=77, small=True)
    shutil.copytree(base / "synth_b" / "dicom", root_b)
    for model in ("localizer", "regressor"):
        shutil.copytree(REPO / "models" / model, base / "models" / model)
    workdir = base / "work"
    workdir.mkdir()
    config = {
        "cohorts": {"A": {"root": str(root_a), "labels": str(small_cohort / "truth" / "labels")},
                    "B": {"root": str(root_b)}},
        "sharding": {"shard_size": 2, "threads": 2, "scheduler": "processes"},
        "models": {m: str(base / "models" / m) for m in ("localizer", "regressor")},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"base": base, "workdir": workdir, "config": config, "participants": participants, "root_a": root_a}


def test_new_studies_in_one_cohort_process_only_those_and_leave_the_other_cohort_alone(
        workspace, run_snakemake, dry_run_jobs, cohort_table):
    workdir = workspace["workdir"]
    assert dry_run_jobs(workdir, "--cores", "2") == {}
    before_b = _snapshot(_files(workdir, "B"))
    assert any("/tables/" in p for p in before_b) and any("/logs/" in p for p in before_b)
    old_keys = set(cohort_table(workdir, "A", "series").query("selected")["series_key"])
    a_tables = sorted((workdir / "results" / "tables").glob("*/cohort=A/part-0.parquet"))
    a_before = _mtimes(a_tables)
    stage_tables = sorted((workdir / "results" / "A" / "shards").rglob("*.parquet"))
    stages_before = _mtimes(stage_tables)

    for p in workspace["participants"][3:6]:  # three new studies (one per new participant) arrive in A
        shutil.copytree(p, workspace["root_a"] / p.name)
    planned = dry_run_jobs(workdir, "--cores", "2")
    assert planned.get("discover") == 1  # A's discovery only: B's root did not change
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]

    series = cohort_table(workdir, "A", "series").query("selected")
    new_keys = set(series["series_key"]) - old_keys
    assert len(new_keys) == 3 and old_keys < set(series["series_key"])
    # Only the shards whose series changed ran (a shard whose task table is unchanged keeps its tables); in those,
    # per-scan status: the three new scans were processed, every old one skipped
    shards_dir = workdir / "results" / "A" / "shards"
    rerun = {p for p in shards_dir.rglob("*.parquet") if stages_before.get(str(p)) != p.stat().st_mtime_ns}
    assert rerun and len(rerun) < len(list(shards_dir.rglob("*.parquet")))  # not every shard reran
    status = pd.concat([pd.read_parquet(p) for p in sorted(rerun) if p.parent.name == "preprocess"]
                       ).set_index("series_key")["status"]
    assert set(status[list(new_keys)]) == {"done"}
    assert set(status.drop(index=list(new_keys))) == {"skipped"}
    # the shard logs say so too, and inference and scoring reused every old scan's cached result
    logs = "".join(p.read_text() for p in (workdir / "logs").rglob("*.log") if "A" in p.parts)
    assert "'skipped'" in logs
    infer = pd.concat([pd.read_parquet(p) for p in sorted((shards_dir / "infer").glob("*.parquet"))])
    assert set(infer["series_key"]) == set(series["series_key"])
    assert sum(_provenance(p)["inferred"] for p in rerun if p.parent.name == "infer") == 3
    assert sum(_provenance(p)["states"].get("scored", 0) for p in rerun if p.name == "scores.parquet") == 3
    # A's partitions were rewritten; B's files kept their bytes and modification times
    assert all(a_before[k] != v for k, v in _mtimes(a_tables).items())
    assert _snapshot(_files(workdir, "B")) == before_b
    assert dry_run_jobs(workdir, "--cores", "2") == {}


def _replace_regressor(directory: Path) -> None:
    """A different valid checkpoint in place of the regressor: the output layer's bias shifted."""
    payload, card = load_checkpoint(directory, "regressor")
    state = payload["state"]
    last_bias = [k for k in state if k.endswith("bias")][-1]
    state[last_bias] = state[last_bias] + 0.5
    save_checkpoint(directory, payload, {k: v for k, v in card.items() if k not in ("weights_sha256",
                                                                                    "weights_bytes")})


def test_a_replaced_checkpoint_reruns_inference_scoring_and_aggregation_only(
        workspace, run_snakemake, dry_run_jobs, cohort_table):
    workdir = workspace["workdir"]
    results = workdir / "results"
    shards = {c: len(list((results / c / "shards" / "preprocess").glob("*.parquet"))) for c in ("A", "B")}
    upstream = sorted(results.glob("*/shards/preprocess/*.parquet")) + sorted(results.glob("*/volumes/**/zarr.json"))
    upstream_before = _mtimes(upstream)
    before = {c: cohort_table(workdir, c, "scores") for c in ("A", "B")}

    _replace_regressor(workspace["base"] / "models" / "regressor")
    total = shards["A"] + shards["B"]
    assert dry_run_jobs(workdir, "--cores", "2") == {"infer": total, "score": total, "aggregate": 2, "all": 1}
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _mtimes(upstream) == upstream_before  # nothing converted or resampled again
    for cohort in ("A", "B"):
        after = cohort_table(workdir, cohort, "scores")
        reg_b = before[cohort].query("method == 'regression' and status == 'scored'").set_index("series_key")
        reg_a = after.query("method == 'regression' and status == 'scored'").set_index("series_key")
        assert (reg_a["agatston"] != reg_b["agatston"]).any()
        # classic scores are untouched; only the scan-level second-reader flag may follow the new regression
        flag = ["second_reader", "second_reader_note"]
        classic = after.query("method == 'classic_heart_region'").reset_index(drop=True)
        pd.testing.assert_frame_equal(classic.drop(columns=flag), before[cohort].query(
            "method == 'classic_heart_region'").reset_index(drop=True).drop(columns=flag))


def test_a_changed_convention_reruns_scoring_and_aggregation_only(
        workspace, run_snakemake, dry_run_jobs, cohort_table):
    workdir = workspace["workdir"]
    results = workdir / "results"
    shards = sum(len(list((results / c / "shards" / "preprocess").glob("*.parquet"))) for c in ("A", "B"))
    upstream = sorted(results.glob("*/shards/preprocess/*.parquet")) + sorted(results.glob("*/shards/infer/*.parquet"))
    upstream_before = _mtimes(upstream)
    old_id = set(cohort_table(workdir, "A", "scores")["convention_id"])

    config = {**workspace["config"], "scoring": {"convention": {"min_area_mm2": 2.0}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert dry_run_jobs(workdir, "--cores", "2") == {"score": shards, "aggregate": 2, "all": 1}
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _mtimes(upstream) == upstream_before
    new_id = set(cohort_table(workdir, "A", "scores")["convention_id"])
    assert len(new_id) == 1 and new_id != old_id


def test_segmentation_scorers_turned_on_for_one_cohort_rerun_that_cohorts_inference_only(workspace, dry_run_jobs):
    """Segmentation scorers are chosen per cohort: configured but chosen by neither cohort, nothing reruns; chosen
    for B, only B's inference (and what follows it) reruns."""
    workdir = workspace["workdir"]
    results = workdir / "results"
    shards = {c: len(list((results / c / "shards" / "preprocess").glob("*.parquet"))) for c in ("A", "B")}
    base = yaml.safe_load((workdir / "config.yaml").read_text())
    models = {**base["models"], "segmentation": {"lstm": str(REPO / "models" / "lstm")}}
    cohorts = {c: {**base["cohorts"][c], "segmentation": []} for c in ("A", "B")}
    (workdir / "config.yaml").write_text(yaml.safe_dump({**base, "models": models, "cohorts": cohorts}))
    assert dry_run_jobs(workdir, "--cores", "2") == {}
    cohorts["B"]["segmentation"] = ["lstm"]
    (workdir / "config.yaml").write_text(yaml.safe_dump({**base, "models": models, "cohorts": cohorts}))
    assert dry_run_jobs(workdir, "--cores", "2") == {"infer": shards["B"], "score": shards["B"], "aggregate": 1,
                                                      "all": 1}
    (workdir / "config.yaml").write_text(yaml.safe_dump(base))  # leave the workspace as the earlier tests did
