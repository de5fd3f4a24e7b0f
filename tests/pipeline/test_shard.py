"""Preprocessing shards on a synthetic cohort: round trip against ground truth, skip/redo, crash safety."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cacflow import config as cfg
from cacflow.io.zarr_store import read_volume
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard


def _config(root: Path, **selection) -> dict:
    return cfg.validate({"cohorts": {"c": {"root": str(root)}},
                         "selection": {"reconstructions": "all", **selection},
                         "sharding": {"shard_size": 3}})


def _run_all(layout: CohortLayout, root: Path, config: dict, scheduler: str = "synchronous") -> pd.DataFrame:
    shards = json.loads(layout.shard_index.read_text())["shards"]
    frames = [run_shard(layout, s, root, cfg.grids(config), workers=2, scheduler=scheduler) for s in shards]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def processed(small_cohort, tmp_path_factory):
    root = small_cohort / "dicom"
    config = _config(root)
    layout = CohortLayout(tmp_path_factory.mktemp("results"), "c")
    summary = run_discover(root, layout, config, workers=2)
    status = _run_all(layout, root, config, scheduler="processes")
    return root, config, layout, summary, status


def test_every_axial_series_round_trips_voxel_for_voxel(processed, small_cohort):
    root, config, layout, summary, status = processed
    truth = pd.read_parquet(small_cohort / "truth" / "series.parquet")
    axial = truth[truth["kind"] == "axial"]
    assert summary["shards"] == int(np.ceil(summary["selected"] / 3))
    assert set(status["status"]) == {"done"}
    manifest = pd.read_parquet(layout.manifest)
    selected = set(manifest.loc[manifest["selected"], "series_uid"])
    assert selected == set(axial["series_uid"]), "every synthetic axial series should be selected ('all' mode)"
    syntaxes = set()
    for r in axial.itertuples():
        gt = np.load(small_cohort / "truth" / "volumes" / f"{r.series_uid}.npz")
        vol = read_volume(layout.volume(r.series_uid, "native"))
        assert vol.hu.dtype == np.int16
        assert np.array_equal(vol.hu, gt["hu"]), f"{r.series_uid} ({r.transfer_syntax}, {r.storage}) differs"
        assert np.allclose(vol.spacing_zyx, gt["spacing_zyx"], atol=1e-4)
        assert np.allclose(vol.origin, gt["origin"], atol=1e-4)
        assert np.allclose(vol.direction, gt["direction"], atol=1e-6)
        syntaxes.add(r.transfer_syntax)
    assert len(syntaxes) >= 5, f"round trip covered only {syntaxes}"


def test_scoring_grid_is_three_mm_every_one_and_a_half(processed):
    _, _, layout, _, status = processed
    for key in status["series_key"]:
        native = read_volume(layout.volume(key, "native"))
        grid = read_volume(layout.volume(key, "scoring"))
        assert grid.spacing_zyx[0] == pytest.approx(1.5)
        assert np.allclose(np.diff(grid.z_positions_mm), 1.5)
        assert grid.hu.shape[1:] == native.hu.shape[1:]
        assert grid.metadata["grid"]["thickness_mm"] == 3.0
        # the slab mean of a region of constant tissue stays inside the native range
        assert grid.hu.min() >= native.hu.min() and grid.hu.max() <= native.hu.max()


def test_rerun_skips_finished_scans_and_redoes_a_changed_one(processed):
    root, config, layout, _, _ = processed
    again = _run_all(layout, root, config)
    assert set(again["status"]) == {"skipped"}
    # touch one file of one series: only that series is converted again
    key = again["series_key"].iloc[0]
    tasks = pd.concat(pd.read_parquet(p) for p in sorted((layout.base / "work" / "shards").glob("*.parquet")))
    first = tasks.set_index("series_key").loc[key, "paths"][0]
    st = os.stat(root / first)
    os.utime(root / first, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    run_discover(root, layout, config)
    third = _run_all(layout, root, config)
    changed = third.set_index("series_key")["status"]
    assert changed[key] == "done"
    assert set(changed.drop(key)) == {"skipped"}


def test_changed_grid_resamples_without_reconverting(processed, tmp_path):
    root, config, layout, _, _ = processed
    config = dict(config, resample={"grids": {"scoring": {"thickness_mm": 3.0, "increment_mm": 3.0}}})
    rows = _run_all(layout, root, config)
    assert set(rows["convert"]) == {"up_to_date"}
    assert set(rows["resample"]) == {"resampled"}


def test_interrupted_write_leaves_no_complete_looking_store(processed):
    root, config, layout, _, status = processed
    key = status["series_key"].iloc[0]
    store = layout.volume(key, "native")
    # simulate a kill mid-write: a temporary sibling exists and the status record is gone
    partial = store.with_name(store.name + ".tmp-deadbeef0000")
    shutil.copytree(store, partial)
    (partial / "hu" / "c").unlink(missing_ok=True) if (partial / "hu" / "c").is_file() else None
    layout.scan_status(key).unlink()
    rows = _run_all(layout, root, config).set_index("series_key")
    assert rows.loc[key, "status"] == "done"
    assert not partial.exists(), "stale temporary store should be removed"
    assert not list(layout.base.rglob("*.tmp-*"))


def test_no_identifying_values_in_any_output(processed, small_cohort):
    _, _, layout, _, _ = processed
    import pydicom

    first = next((small_cohort / "dicom").rglob("*.dcm"))
    ds = pydicom.dcmread(first)
    secrets = [str(ds.PatientName), str(ds.PatientBirthDate), str(ds.get("InstitutionAddress", "")),
               str(ds.get("ReferringPhysicianName", "")), str(ds.StudyInstanceUID)]
    secrets = [s for s in secrets if len(s) >= 4]
    assert secrets, "the synthetic DICOM should carry fake identifiers to check against"
    for path in layout.base.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for s in secrets:
                assert s.encode() not in blob, f"{s!r} leaked into {path}"
