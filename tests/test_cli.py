"""The ``cacflow`` command (cacflow.cli): its discover and preprocess steps on a real synthetic DICOM cohort."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


#: Each maintenance subcommand and the run of cacflow.training.maintenance it calls.
MAINTENANCE = {"refit-vessel-postprocessing": "refit_vessel_postprocessing_run",
               "refit-level-filter": "refit_level_filter_run",
               "reevaluate": "reevaluate_run"}


@pytest.mark.parametrize("command", sorted(MAINTENANCE))
def test_maintenance_help_names_its_options(command, capsys):
    """``cacflow <maintenance command> --help`` exits 0 and states the model folder and every option."""
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cacflow {command} ")
    for option in ("MODEL_DIR", "--localizer DIR", "--config CONFIG", "--cohort COHORT", "rewritten in place"):
        assert option in out


@pytest.mark.parametrize("command", sorted(MAINTENANCE))
def test_maintenance_parses_to_its_run(command):
    """Parsing picks the command's run; the config defaults to config.yaml and the cohort to training.cohort."""
    args = cli.build_parser().parse_args([command, "results/models/m", "--localizer", "models/localizer"])
    assert (args.func, args.maintenance_run) == (cli._maintenance, MAINTENANCE[command])
    assert (args.model_dir, args.localizer, args.config, args.cohort) == (
        "results/models/m", "models/localizer", "config.yaml", None)


def _maintenance_config(tmp_path: Path) -> Path:
    """A config with two labelled cohorts (training.cohort ``t``) and one without labels."""
    config = {"results": str(tmp_path / "results"), "resources": str(tmp_path / "resources"),
              "cohorts": {"t": {"root": str(tmp_path / "t" / "dicom"), "labels": str(tmp_path / "t" / "labels")},
                          "u": {"root": str(tmp_path / "u" / "dicom"), "labels": str(tmp_path / "u" / "labels")},
                          "unlabelled": {"root": str(tmp_path / "x" / "dicom")}},
              "training": {"cohort": "t"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _record_runs(monkeypatch) -> list[tuple[str, tuple]]:
    """Replace every maintenance run by one that records its name and arguments (nothing is fitted or evaluated)."""
    calls = []
    for name in MAINTENANCE.values():
        def run(*args, name=name):
            calls.append((name, args))
            return {"kind": "k", "metrics": {"test": {"icc": 1.0}}}
        monkeypatch.setattr(f"cacflow.training.maintenance.{name}", run)
    return calls


@pytest.mark.parametrize("command", sorted(MAINTENANCE))
@pytest.mark.parametrize("cohort", [None, "u"])
def test_maintenance_calls_its_run_with_the_cohort(command, cohort, tmp_path, monkeypatch, capsys):
    """``cacflow <command> MODEL_DIR --localizer DIR`` calls its run once with the cohort's layout, DICOM root and
    labels (``--cohort``, else training.cohort), the config, the localizer and the model folder."""
    calls = _record_runs(monkeypatch)
    path = _maintenance_config(tmp_path)
    argv = [command, str(tmp_path / "model"), "--localizer", str(tmp_path / "loc"), "--config", str(path)]
    assert cli.main(argv + (["--cohort", cohort] if cohort else [])) == 0
    (name, (layout, root, labels, config, localizer, model)), = calls
    expected = cohort or "t"
    assert name == MAINTENANCE[command]
    assert (layout.results, layout.cohort) == (tmp_path / "results", expected)
    assert (root, labels) == (tmp_path / expected / "dicom", tmp_path / expected / "labels")
    assert config["training"]["cohort"] == "t"
    assert (localizer, model) == (tmp_path / "loc", tmp_path / "model")
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "model_dir": str(tmp_path / "model"), "kind": "k", "test": {"icc": 1.0}}


def test_maintenance_refuses_a_cohort_without_labels(tmp_path, monkeypatch):
    """A cohort without reference labels, or not in the config, stops the command before any run starts."""
    calls = _record_runs(monkeypatch)
    path = _maintenance_config(tmp_path)
    with pytest.raises(SystemExit, match="no reference labels"):
        cli.main(["reevaluate", str(tmp_path / "model"), "--localizer", "loc", "--config", str(path),
                  "--cohort", "unlabelled"])
    with pytest.raises(SystemExit, match="not in"):
        cli.main(["reevaluate", str(tmp_path / "model"), "--localizer", "loc", "--config", str(path),
                  "--cohort", "absent"])
    assert calls == []
