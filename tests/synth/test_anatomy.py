"""The phantom's coronary anatomy versions (cacflow.synth.anatomy.build_phantom's ``anatomy``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cacflow.synth.anatomy import build_phantom
from cacflow.synth.cohort import generate_cohort

SEEDS = range(6)


def _layer(phantom, name):
    return next(layer for layer in phantom.layers if layer.name == name)


def _radius(ellipsoid, points: np.ndarray) -> np.ndarray:
    """Each point's normalised ellipsoid radius (1 on the surface, < 1 inside)."""
    local = (np.asarray(points) - np.asarray(ellipsoid.center)) @ ellipsoid.axes
    return np.sqrt(((local / np.asarray(ellipsoid.radii)) ** 2).sum(axis=1))


@pytest.mark.parametrize("seed", SEEDS)
def test_version_2_coronaries_run_in_the_epicardial_fat_from_their_ostia(seed):
    v1 = build_phantom(np.random.default_rng(seed))
    v2 = build_phantom(np.random.default_rng(seed), anatomy=2)
    heart, fat = _layer(v2, "myocardium_blood").shape, _layer(v2, "pericardial_fat").shape
    for vessel in (1, 2, 3, 4):
        r = _radius(heart, v2.centerlines[vessel])
        assert (r > 1.0).all() and (_radius(fat, v2.centerlines[vessel]) < 1.0).all(), vessel
    # version 1: most of the left main and the first centimetre or more of the right coronary in the blood pool
    assert (_radius(heart, v1.centerlines[1]) < 1.0).mean() > 0.5
    assert (_radius(heart, v1.centerlines[4][:5]) < 1.0).all()
    # a left main of a plausible length (10-40 mm), starting near the right coronary's ostium
    lm = v2.centerlines[1]
    assert 10.0 < np.linalg.norm(np.diff(lm, axis=0), axis=1).sum() < 40.0
    assert np.linalg.norm(lm[0] - v2.centerlines[4][0]) < 20.0


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_version_2_changes_only_the_proximal_left_main_and_right_coronary(seed):
    v1 = build_phantom(np.random.default_rng(seed))
    v2 = build_phantom(np.random.default_rng(seed), anatomy=2)
    others = [(a.name, a.hu, a.shape.bbox()) for a in v1.layers if not a.name.startswith("coronary_")]
    assert others == [(b.name, b.hu, b.shape.bbox()) for b in v2.layers if not b.name.startswith("coronary_")]
    for vessel in (2, 3):
        np.testing.assert_array_equal(v1.centerlines[vessel], v2.centerlines[vessel])
    np.testing.assert_array_equal(v1.distractor_points, v2.distractor_points)
    assert v1.heart_center == v2.heart_center


def test_unknown_versions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="anatomy version"):
        build_phantom(np.random.default_rng(0), anatomy=3)
    with pytest.raises(ValueError, match="anatomy version"):
        generate_cohort(tmp_path, 1, 0, small=True, anatomy=0)


def test_the_cohort_records_its_anatomy(tmp_path):
    generate_cohort(tmp_path / "c", 1, 5, small=True, anatomy=2)
    meta = json.loads((tmp_path / "c" / "truth" / "cohort.json").read_text())
    assert meta["anatomy"] == 2 and meta["n"] == 1


def test_the_config_schema_and_the_cli_offer_exactly_the_known_versions():
    import argparse
    from importlib import resources

    from cacflow.cli import build_parser
    from cacflow.synth.anatomy import ANATOMY_VERSIONS

    schema = json.loads(resources.files("cacflow").joinpath("schemas/config.schema.json").read_text())
    synthetic = schema["properties"]["cohorts"]["additionalProperties"]["properties"]["synthetic"]
    assert tuple(synthetic["properties"]["anatomy"]["enum"]) == ANATOMY_VERSIONS
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    option = next(a for a in sub.choices["synth"]._actions if a.dest == "anatomy")
    assert tuple(option.choices) == ANATOMY_VERSIONS
