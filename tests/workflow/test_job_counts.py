"""Jobs grow with scans / shard size, not with scans x rules: dry runs of the real workflow on a pixel-less
NLST-style manifest built by benchmarks/nlst_scale.py (which measures the same at 75,000 exams)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("nlst_scale", REPO / "benchmarks" / "nlst_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("reconstructions", ["prefer", "all"])
def test_one_job_per_shard_and_stage_and_no_rediscovery(bench, tmp_path, reconstructions):
    shard_size = 100
    manifest = bench.build_manifest(1500, seed=3, reconstructions=reconstructions)
    root = tmp_path / "root"
    bench.make_root_tree(root, manifest)
    config, shards = bench.prepare_workdir(tmp_path / "work", root, manifest, shard_size, 2, reconstructions)
    selected = int(manifest["selected"].sum())
    assert len(shards) == math.ceil(selected / shard_size)
    _, jobs = bench.dry_run(tmp_path / "work", config)
    assert jobs == bench.expected_jobs(len(shards))  # preprocess, infer, score once per shard; discover not rerun
    for stage in bench.STAGES:
        assert jobs[stage] <= math.ceil(len(manifest) / shard_size)
    assert selected == (1500 if reconstructions == "prefer" else len(manifest))  # one series per exam, or all
