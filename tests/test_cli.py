"""The ``cacflow`` command (cacflow.cli): its discover and preprocess steps on a real synthetic DICOM cohort."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cacflow import cli


def _discover(config: dict, path: Path, capsys) -> dict:
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["discover", "--config", str(path), "--cohort", "t", "--workers", "1"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_discover_applies_the_cohorts_own_selection_rules(small_cohort, tmp_path, capsys):
    """A cohort's ``selection`` overrides the top-level rules, in the command as in the workflow: with
    ``reconstructions: all`` the paired participants' soft and sharp series are both selected, with the top-level
    ``prefer`` one series per study."""
    def config(name: str, cohort_selection: dict) -> dict:
        return {"results": str(tmp_path / name / "results"), "resources": str(tmp_path / name / "resources"),
                "selection": {"reconstructions": "prefer"},
                "cohorts": {"t": {"root": str(small_cohort / "dicom"), "selection": cohort_selection}}}

    prefer = _discover(config("prefer", {}), tmp_path / "prefer.yaml", capsys)
    every = _discover(config("all", {"reconstructions": "all"}), tmp_path / "all.yaml", capsys)
    studies = {p.parent for p in (small_cohort / "dicom").glob("*/*/*/")}
    assert prefer["selected"] == len(studies)  # one series per study
    assert every["selected"] > prefer["selected"]  # the sharp reconstructions of the paired acquisitions too
    assert every["series"] == prefer["series"]
