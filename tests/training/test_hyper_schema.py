"""The config schema's training sections list exactly the fields of the hyper-parameter dataclasses they override,
so that schema and code cannot drift, and a misspelled key fails validation naming it."""

from __future__ import annotations

import dataclasses

import jsonschema
import pytest

from cacflow import config as cfg
from cacflow.training.calcium_levels import LevelHyper
from cacflow.training.common import hyper_dict
from cacflow.training.conv_lstm import LSTMHyper
from cacflow.training.localizer import LocalizerHyper
from cacflow.training.patch_unet3d import PatchHyper
from cacflow.training.regressor import RegressorHyper
from cacflow.training.segmentation import VesselSegHyper

#: config section under ``training`` -> the dataclass its keys override (cacflow.training.run)
SECTIONS = {"localizer": LocalizerHyper, "regressor": RegressorHyper, "vessel_segmentation": VesselSegHyper,
            "unet_comparison": VesselSegHyper, "calcium_levels": LevelHyper, "conv_lstm": LSTMHyper,
            "patch_unet3d": PatchHyper}


def _section(name: str) -> dict:
    return cfg.schema()["properties"]["training"]["properties"][name]


@pytest.mark.parametrize("name, hyper", SECTIONS.items())
def test_schema_section_lists_the_dataclass_fields(name, hyper):
    section = _section(name)
    assert section["additionalProperties"] is False
    assert set(section["properties"]) == {f.name for f in dataclasses.fields(hyper)}
    # the dataclass holds the defaults: the schema gives none, and accepts the dataclass's own
    assert not any("default" in p for p in section["properties"].values())
    jsonschema.Draft202012Validator(section).validate(hyper_dict(hyper()))


@pytest.mark.parametrize("name", SECTIONS)
def test_a_misspelled_key_is_refused_naming_it(name):
    config = {"cohorts": {"t": {"root": "dicom"}}, "training": {name: {"sed": 1}}}
    with pytest.raises(ValueError, match=rf"training/{name}.*'sed' was unexpected"):
        cfg.validate(config)


def test_the_typo_of_the_issue_is_refused_and_known_keys_pass():
    with pytest.raises(ValueError, match="nodule_probabilty"):
        cfg.validate({"cohorts": {"t": {"root": "dicom"}}, "training": {"localizer": {"nodule_probabilty": 0.3}}})
    config = cfg.validate({"cohorts": {"t": {"root": "dicom"}},
                           "training": {"localizer": {"appearance_probability": 0.5, "widths": [4, 4, 8, 8, 8]}}})
    assert config["training"]["localizer"] == {"appearance_probability": 0.5, "widths": [4, 4, 8, 8, 8]}
