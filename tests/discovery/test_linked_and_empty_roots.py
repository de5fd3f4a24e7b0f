"""Cohort roots assembled from symbolic links are read through them (loops and repeats once); a root without
DICOM ends with an error that names it."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from cacflow import config as cfg
from cacflow.discovery.inventory import list_files
from cacflow.pipeline.discover import NoDicomError, run_discover
from cacflow.pipeline.layout import CohortLayout


def test_linked_participant_folders_are_followed_and_loops_read_once(small_cohort, tmp_path):
    participants = sorted(p for p in (small_cohort / "dicom").iterdir() if p.is_dir())[:2]
    store = tmp_path / "store"
    for p in participants:
        shutil.copytree(p, store / p.name)
    root = tmp_path / "root"
    root.mkdir()
    for p in participants:  # the root holds only links, as cluster cohort roots often do
        os.symlink(store / p.name, root / p.name)
    os.symlink(root, store / participants[0].name / "loop")  # a link back up: a loop
    os.symlink(store / participants[1].name, root / "again")  # a second link to one folder
    files = list_files(root)
    real = sorted(f for p in participants for f in (store / p.name).rglob("*") if f.is_file())
    assert len(files) == len(real) > 0
    assert len({os.path.realpath(f) for f in files}) == len(files)

    config = cfg.validate({"cohorts": {"c": {"root": str(root)}}})
    layout = CohortLayout(tmp_path / "results", "c")
    summary = run_discover(root, layout, cfg.cohort_config(config, "c"))
    direct = run_discover(store, CohortLayout(tmp_path / "direct", "c"), cfg.cohort_config(config, "c"))
    assert summary["series"] == direct["series"] > 0 and summary["selected"] == direct["selected"]
    assert len(pd.read_parquet(layout.manifest)) == summary["series"]


def test_a_root_without_dicom_names_the_root(tmp_path):
    root = tmp_path / "empty_cohort"
    (root / "P1" / "notes").mkdir(parents=True)
    (root / "P1" / "notes" / "readme.txt").write_text("not an image")
    config = cfg.validate({"cohorts": {"c": {"root": str(root)}}})
    for r in (root, root / "P1" / "notes" / "nothing_here"):
        r.mkdir(exist_ok=True)
    with pytest.raises(NoDicomError, match=f"no DICOM image found under {root}.*'root'"):
        run_discover(root, CohortLayout(tmp_path / "results", "c"), cfg.cohort_config(config, "c"))
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(NoDicomError, match=f"under {bare} \\(0 file"):
        run_discover(bare, CohortLayout(tmp_path / "results2", "c"), cfg.cohort_config(config, "c"))
