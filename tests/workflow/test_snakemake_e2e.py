"""The real workflow, run by Snakemake on a generated synthetic cohort (slow; still runs in CI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


def _readme_python_blocks(heading: str) -> list[str]:
    """The python code blocks of one README section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]


@pytest.mark.e2e
def test_snakemake_runs_discover_convert_resample_on_a_generated_cohort(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "cohorts:\n  tiny:\n    synthetic: {n: 3, seed: 5, small: true}\n"
        "sharding: {shard_size: 2, threads: 2, scheduler: processes}\n"
        # the shipped segmentation scorers, opted in (relative model paths resolve against the workflow)
        "models: {segmentation: {unetpp: models/unetpp, levels: models/levels, lstm: models/lstm,"
        " patch3d: models/patch3d}}\n"
    )
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    cmd = [snakemake, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "2", "all",
           "evaluate_all"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    tables = tmp_path / "results" / "tables"
    series = pd.read_parquet(tables / "series" / "cohort=tiny" / "part-0.parquet")
    selected = series[series["selected"]]
    assert len(selected) >= 3 and set(selected["preprocess_status"]) == {"done"}
    for key in selected["series_key"]:
        assert (tmp_path / "results" / "tiny" / "volumes" / "scoring" / f"{key}.zarr" / "zarr.json").is_file()
    scores = pd.read_parquet(tables / "scores")
    segmenters = {"unetpp", "levels", "lstm", "patch3d"}
    assert set(scores["method"]) == {"classic_heart_region", "regression", "reference"} | segmenters
    assert len(scores) == 7 * len(selected) and (scores["status"] == "scored").all()
    # the vessel-specific scorer fills the vessel table; every scan carries one second-reader flag
    vessels = pd.read_parquet(tables / "vessels")
    assert len(vessels.query("method == 'unetpp'")) == 4 * len(selected)
    assert not len(vessels.query("method == 'levels'")) and scores.query("method == 'levels'")["mass_mg"].isna().all()
    # the coronary (vessel-less) segmenters: no vessel rows, lesion rows without a vessel
    lesions = pd.read_parquet(tables / "lesions")
    for method in ("lstm", "patch3d"):  # noqa: B007 (read by the query strings as @method)
        assert not len(vessels.query("method == @method"))
        assert lesions.query("method == @method")["vessel"].isna().all()
    assert scores["second_reader"].notna().all()
    assert (scores.groupby("series_key")["second_reader"].nunique() == 1).all()
    # the evaluation target compares every method with the reference and the localizer with the true hearts
    evaluation = tmp_path / "results" / "tiny" / "evaluation"
    agree = pd.read_parquet(evaluation / "agreement.parquet")
    assert set(agree["method"]) == {"classic_heart_region", "regression"} | segmenters
    assert (agree.loc[agree["group"] == "all", "n"] == len(selected)).all()
    assert len(pd.read_parquet(evaluation / "localizer.parquet")) == len(selected)
    assert (evaluation / "figures" / "regression.png").is_file()
    # the segmentation scorers' maps against the reference labels (a level map is judged against levels instead)
    seg = pd.read_parquet(evaluation / "segmentation.parquet").query("group == 'all'").set_index("method")
    assert set(seg.index) == segmenters - {"levels"} and (seg["n"] == len(selected)).all()
    assert seg["calcium_dice"].between(0, 1).all()
    assert seg.loc["unetpp", "vessel_dice"] <= seg.loc["unetpp", "calcium_dice"]
    assert seg["vessel_dice"].drop("unetpp").isna().all()
    # one series per study here (reconstructions: prefer), so no soft/sharp pair: the kernel table is written empty
    assert pd.read_parquet(evaluation / "kernels.parquet").empty
    # the run ends by printing the cohort summary
    assert "cacflow summary, cohort tiny" in proc.stdout + proc.stderr
    for log in ("logs/discover/tiny.log", "logs/synth/tiny.log", "logs/aggregate/tiny.log"):
        assert (tmp_path / log).is_file()
    for stage in ("preprocess", "infer", "score"):
        assert list((tmp_path / "logs" / "benchmarks" / stage / "tiny").glob("shard-*.tsv"))
    # the README's query examples run as written against these tables
    for block in _readme_python_blocks("## Querying the results"):
        run = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "tiny" in run.stdout
    # no identifying value of the input reaches results or logs
    import pydicom

    ds = pydicom.dcmread(next((tmp_path / "resources" / "synthetic" / "tiny" / "dicom").rglob("*.dcm")))
    secrets = [str(ds.PatientName), str(ds.PatientBirthDate), str(ds.get("ReferringPhysicianName", ""))]
    secrets = [s.encode() for s in secrets if len(s) >= 4]
    assert secrets
    for folder in ("results", "logs"):  # logs/ holds the benchmark records too
        for path in (tmp_path / folder).rglob("*"):
            if path.is_file():
                blob = path.read_bytes()
                assert not any(s in blob for s in secrets), f"identifier leaked into {path}"
    assert list((tmp_path / "results" / "tiny" / "qc").glob("*.png"))
    # a second run has nothing to do
    dry = subprocess.run(cmd + ["-n"], capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr
