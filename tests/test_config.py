import pytest

from cacflow import config as cfg


def test_defaults_are_filled_and_records_built():
    c = cfg.validate({"cohorts": {"a": {"root": "/data/a"}}})
    assert c["selection"]["min_slices"] == 30 and c["sharding"]["shard_size"] == 200
    assert cfg.selection_rules(c).kernel_preference == ("soft", "unknown", "sharp")
    assert cfg.grids(c)["scoring"].thickness_mm == 3.0


@pytest.mark.parametrize("bad, where", [
    ({"cohorts": {"a": {"root": "/x"}}, "typo": 1}, "typo"),
    ({"cohorts": {"a": {}}}, "cohorts/a"),
    ({"cohorts": {"a": {"root": "/x"}}, "selection": {"reconstructions": "some"}}, "selection/reconstructions"),
    ({"cohorts": {"1bad": {"root": "/x"}}}, "cohorts"),
])
def test_invalid_configs_name_the_key(bad, where):
    with pytest.raises(ValueError, match=where.split("/")[0]):
        cfg.validate(bad)


def test_shipped_config_is_valid():
    from pathlib import Path

    c = cfg.load(Path(__file__).resolve().parents[1] / "config.yaml")
    assert "demo" in c["cohorts"] and c["cohorts"]["demo"]["synthetic"]["n"] >= 5


def test_cohort_folders_are_configured_or_the_generated_synthetic_tree():
    config = cfg.validate({"resources": "res", "cohorts": {
        "real": {"root": "/data/nlst"},
        "labelled": {"root": "/data/x", "labels": "/data/x_labels"},
        "gen": {"synthetic": {"n": 2}}}})
    assert str(cfg.cohort_root(config, "real")) == "/data/nlst"
    assert cfg.cohort_labels(config, "real") is None  # no references
    assert str(cfg.cohort_labels(config, "labelled")) == "/data/x_labels"
    assert cfg.cohort_root(config, "gen").as_posix() == "res/synthetic/gen/dicom"
    assert cfg.cohort_labels(config, "gen").as_posix() == "res/synthetic/gen/truth/labels"


def test_segmentation_scorers_are_chosen_per_cohort():
    config = cfg.validate({"cohorts": {"a": {"root": "/a"}, "b": {"root": "/b", "segmentation": ["unetpp"]},
                                       "c": {"root": "/c", "segmentation": []}},
                           "models": {"segmentation": {"unetpp": "models/unetpp", "lstm": "models/lstm"}}})
    assert sorted(cfg.cohort_config(config, "a")["models"]["segmentation"]) == ["lstm", "unetpp"]  # default: all
    assert cfg.cohort_config(config, "b")["models"]["segmentation"] == {"unetpp": "models/unetpp"}
    assert cfg.cohort_config(config, "c")["models"]["segmentation"] == {}
    assert config["models"]["segmentation"] == {"unetpp": "models/unetpp", "lstm": "models/lstm"}  # untouched
    with pytest.raises(ValueError, match=r"cohorts/a/segmentation: \['levels'\] not in models/segmentation"):
        cfg.validate({"cohorts": {"a": {"root": "/a", "segmentation": ["levels"]}},
                      "models": {"segmentation": {"unetpp": "models/unetpp"}}})


def test_model_directories_resolve_under_the_workflow_when_absent_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run from another working directory
    (tmp_path / "mine").mkdir()
    workflow = tmp_path / "repo"
    config = cfg.validate({"cohorts": {"a": {"root": "/a"}},
                           "models": {"regressor": "mine", "segmentation": {"lstm": "models/lstm"}}},
                          workflow_dir=workflow)
    assert config["models"]["localizer"] == str(workflow / "models" / "localizer")  # the shipped default
    assert config["models"]["regressor"] == "mine"  # present here: kept as given
    assert config["models"]["segmentation"] == {"lstm": str(workflow / "models" / "lstm")}
    assert cfg.validate({"cohorts": {"a": {"root": "/a"}}})["models"]["localizer"] == "models/localizer"
