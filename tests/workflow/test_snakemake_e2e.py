"""The real workflow, run by Snakemake on a generated synthetic cohort (slow; still runs in CI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_snakemake_runs_discover_convert_resample_on_a_generated_cohort(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "cohorts:\n  tiny:\n    synthetic: {n: 3, seed: 5, small: true}\n"
        "sharding: {shard_size: 2, threads: 2, scheduler: processes}\n"
    )
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    cmd = [snakemake, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    status = pd.read_parquet(tmp_path / "results" / "tiny" / "preprocess_status.parquet")
    selected = status[status["selected"]]
    assert len(selected) >= 3 and set(selected["status"]) == {"done"}
    for key in selected["series_key"]:
        assert (tmp_path / "results" / "tiny" / "volumes" / "scoring" / f"{key}.zarr" / "zarr.json").is_file()
    for log in ("logs/discover/tiny.log", "logs/synth/tiny.log"):
        assert (tmp_path / log).is_file()
    assert list((tmp_path / "benchmarks" / "preprocess" / "tiny").glob("shard-*.tsv"))
    # no identifying value of the input reaches results or logs
    import pydicom

    ds = pydicom.dcmread(next((tmp_path / "resources" / "synthetic" / "tiny" / "dicom").rglob("*.dcm")))
    secrets = [str(ds.PatientName), str(ds.PatientBirthDate), str(ds.get("ReferringPhysicianName", ""))]
    secrets = [s.encode() for s in secrets if len(s) >= 4]
    assert secrets
    for folder in ("results", "logs", "benchmarks"):
        for path in (tmp_path / folder).rglob("*"):
            if path.is_file():
                blob = path.read_bytes()
                assert not any(s in blob for s in secrets), f"identifier leaked into {path}"
    # a second run has nothing to do
    dry = subprocess.run(cmd + ["-n"], capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr
