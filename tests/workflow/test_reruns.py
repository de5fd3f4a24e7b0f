"""Reruns are exact with the default shard size (200): the next plain ``snakemake`` after a change leaves the same
tables as a clean run, and the one after that has nothing to do (slow; runs in CI).

One cohort "A" with the default configuration (all its scans in one shard) is built in two steps: three studies,
then three more added under the same root. Then a selection rule is relaxed, a table partition is deleted, and a
volume, a QC picture and the shard tables are deleted. Each state is compared with a clean run of the same root and
settings in a fresh working folder. Tests run in file order on one workspace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TABLES = ("series", "scores", "vessels", "lesions", "exclusions")
pytestmark = pytest.mark.e2e


def _tables(workdir: Path, cohort_table) -> dict[str, pd.DataFrame]:
    """The cohort's public tables, rows in a stable order. ``preprocess_status`` says what the last run did to a
    scan (done: converted now; skipped: already converted); both mean its volumes are there, so they compare equal."""
    out = {t: cohort_table(workdir, "A", t) for t in TABLES}
    out["series"]["preprocess_status"] = out["series"]["preprocess_status"].replace("skipped", "done")
    return out


def _assert_tables_equal(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for t in TABLES:
        pd.testing.assert_frame_equal(got[t], want[t], obj=t)


@pytest.fixture(scope="module")
def space(tmp_path_factory, small_cohort, run_snakemake):
    """A root holding three of the small cohort's participants, its config with default sharding, and a function
    that runs the workflow from scratch on a copy of a root with a config overlay (the clean run to compare with)."""
    base = tmp_path_factory.mktemp("reruns")
    participants = sorted(p for p in (small_cohort / "dicom").iterdir() if p.is_dir())
    assert len(participants) >= 6
    root = base / "data" / "A"
    for p in participants[:3]:
        shutil.copytree(p, root / p.name)
    config = {"cohorts": {"A": {"root": str(root), "labels": str(small_cohort / "truth" / "labels")}},
              "models": {m: str(REPO / "models" / m) for m in ("localizer", "regressor")}}

    def write_config(workdir: Path, cfg: dict) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))

    def clean_run(name: str, cfg: dict) -> Path:
        workdir = base / name
        copy = base / f"{name}-data"
        shutil.copytree(root, copy)
        write_config(workdir, {**cfg, "cohorts": {"A": {**cfg["cohorts"]["A"], "root": str(copy)}}})
        proc = run_snakemake(workdir, "--cores", "2")
        assert proc.returncode == 0, proc.stderr[-4000:]
        return workdir

    workdir = base / "work"
    write_config(workdir, config)
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"base": base, "root": root, "workdir": workdir, "config": config, "participants": participants,
            "write_config": write_config, "clean_run": clean_run}


def test_studies_added_to_an_existing_shard_are_scored(space, run_snakemake, dry_run_jobs, cohort_table):
    """The acceptance case: a cohort built in two steps gives the tables of one run on the whole cohort."""
    workdir = space["workdir"]
    assert sorted(p.name for p in (workdir / "results" / "A" / "shards" / "preprocess").iterdir()) == \
        ["shard-0000.parquet"]
    for p in space["participants"][3:6]:
        shutil.copytree(p, space["root"] / p.name)
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    # still one shard: the new scans joined it, and they were processed
    assert len(list((workdir / "results" / "A" / "shards" / "preprocess").iterdir())) == 1
    status = pd.read_parquet(workdir / "results" / "A" / "shards" / "preprocess" / "shard-0000.parquet")
    assert set(status["status"]) == {"done", "skipped"} and (status["status"] == "done").sum() == 3
    assert dry_run_jobs(workdir, "--cores", "2") == {}
    series = cohort_table(workdir, "A", "series")
    selected = series[series["selected"]]
    assert len(selected) >= 6 and (selected["preprocess_status"] != "not_selected").all()
    _assert_tables_equal(_tables(workdir, cohort_table),
                         _tables(space["clean_run"]("clean-whole", space["config"]), cohort_table))


def test_a_relaxed_selection_rule_selects_and_scores_more_series(space, run_snakemake, dry_run_jobs, cohort_table):
    workdir = space["workdir"]
    before = cohort_table(workdir, "A", "series")["selected"].sum()
    config = {**space["config"], "cohorts": {"A": {**space["config"]["cohorts"]["A"],
                                                   "selection": {"reconstructions": "all"}}}}
    space["write_config"](workdir, config)
    assert dry_run_jobs(workdir, "--cores", "2").get("discover") == 1
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert dry_run_jobs(workdir, "--cores", "2") == {}
    after = _tables(workdir, cohort_table)
    assert after["series"]["selected"].sum() > before
    space["config"] = config
    _assert_tables_equal(after, _tables(space["clean_run"]("clean-all-recons", config), cohort_table))


def test_a_deleted_table_partition_is_rebuilt(space, run_snakemake, dry_run_jobs, cohort_table):
    workdir = space["workdir"]
    want = _tables(workdir, cohort_table)
    shutil.rmtree(workdir / "results" / "tables" / "lesions" / "cohort=A")
    assert dry_run_jobs(workdir, "--cores", "2") == {"aggregate": 1, "all": 1}
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    _assert_tables_equal(_tables(workdir, cohort_table), want)
    assert dry_run_jobs(workdir, "--cores", "2") == {}


@pytest.mark.parametrize("lost", ["volume", "qc_picture", "shard_tables"])
def test_lost_outputs_are_rebuilt_by_the_plain_command(space, run_snakemake, dry_run_jobs, cohort_table, lost):
    """A deleted volume, QC picture or set of shard tables, with the cohort's tables and summary left in place."""
    workdir = space["workdir"]
    results = workdir / "results" / "A"
    want = _tables(workdir, cohort_table)
    key = want["scores"].query("status == 'scored'")["series_key"].iloc[0]
    target = {"volume": results / "volumes" / "scoring" / f"{key}.zarr",
              "qc_picture": results / "qc" / f"{key}.png",
              "shard_tables": results / "shards"}[lost]
    assert target.exists()
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    planned = dry_run_jobs(workdir, "--cores", "2")
    assert planned.get("preprocess") == 1 and planned.get("aggregate") == 1
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert target.exists()
    _assert_tables_equal(_tables(workdir, cohort_table), want)
    assert dry_run_jobs(workdir, "--cores", "2") == {}
    if lost == "volume":  # only the lost store was made again; the shard's other scans were skipped
        status = pd.read_parquet(results / "shards" / "preprocess" / "shard-0000.parquet").set_index("series_key")
        assert status.loc[key, "status"] == "done"
        assert set(status.drop(index=key)["status"]) <= {"skipped", "excluded"}
