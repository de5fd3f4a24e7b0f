"""The root-folder fingerprint that reruns a real cohort's discovery when data arrive."""

from __future__ import annotations

import os
from pathlib import Path

from cacflow.discovery.root_state import root_state


def _tree(root: Path) -> Path:
    series = root / "P001" / "study-1" / "series-1"
    series.mkdir(parents=True)
    (series / "1.dcm").write_bytes(b"x")
    return series


def _age(root: Path) -> None:
    """Every folder's mtime set to one old value, so any change below is visible whatever the clock resolution."""
    for path in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))


def test_same_tree_same_fingerprint_and_a_missing_root(tmp_path):
    _tree(tmp_path / "root")
    _age(tmp_path / "root")
    assert root_state(tmp_path / "root") == root_state(tmp_path / "root")
    assert root_state(tmp_path / "nothing") == "missing"


def test_new_participant_study_series_and_file_each_change_it(tmp_path):
    root = tmp_path / "root"
    series = _tree(root)
    changes = [
        lambda: (root / "P002").mkdir(),                                  # participant
        lambda: (root / "P001" / "study-2").mkdir(),                      # study
        lambda: (root / "P001" / "study-1" / "series-2").mkdir(),         # series
        lambda: (series / "2.dcm").write_bytes(b"y"),                     # file in a series
    ]
    for change in changes:
        _age(root)
        before = root_state(root)
        change()
        assert root_state(root) != before


def test_depth_limits_what_is_watched(tmp_path):
    root = tmp_path / "root"
    series = _tree(root)
    _age(root)
    before = {d: root_state(root, d) for d in (1, 2, 3)}
    (series / "2.dcm").write_bytes(b"y")  # only the series folder (depth 3) changes
    assert root_state(root, 1) == before[1] and root_state(root, 2) == before[2]
    assert root_state(root, 3) != before[3]
