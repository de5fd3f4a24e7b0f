"""The shipped models reproduce their model cards' test metrics on CPU.

The test split of the training cohort (config.yaml `cohorts.train`, split by `training.split`) is regenerated
from its seed participant by participant (the generator is deterministic per participant), with the phantom
anatomy the model's card names (once per anatomy), preprocessed by the pipeline's own stages and scored by the
shipped weights through the same code the training run evaluated with.
The pipeline's inference stage must give the same per-scan scores. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from cacflow import config as cfg
from cacflow.models.calcium_levels import LevelPredictor
from cacflow.models.checkpoint import read_card
from cacflow.models.mask_scorers import load_mask_scorer
from cacflow.models.predict import HeartLocalizer, SliceRegressor
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.infer import run_infer_shard
from cacflow.pipeline.labelled import labelled_series, split_of
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard, shard_options
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.regression_rule import regression_totals
from cacflow.synth.cohort import _participant_id, generate_participant
from cacflow.training import calcium_levels as tcl
from cacflow.training import localizer as tl
from cacflow.training import regressor as tr
from cacflow.training import segmentation as ts
from cacflow.training.cards import regression_metrics

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
#: every shipped model directory (one with a model card), read from models/ rather than listed again here
SHIPPED = tuple(sorted(p.parent.name for p in MODELS.glob("*/model_card.json")))
pytestmark = pytest.mark.e2e


def _generate_test_split(out: Path, anatomy: int, n: int) -> dict:
    """The test split of the first ``n`` participants of the training cohort, with the phantom anatomy ``anatomy``,
    generated and preprocessed in ``out``."""
    project = cfg.load(REPO / "config.yaml")
    spec = project["cohorts"][project["training"]["cohort"]]["synthetic"]
    split = project["training"]["split"]
    card = read_card(MODELS / "regressor")
    assert card["split_seed"] == split["seed"] and card["split_fractions"] == split["fractions"]
    indices = [i for i in range(n) if split_of(_participant_id(i), split["seed"], tuple(split["fractions"]))
               == "test"]
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(generate_participant, [out] * len(indices), [spec["seed"]] * len(indices), indices,
                      [spec["small"]] * len(indices), [anatomy] * len(indices)))
    root = out / "dicom"
    config = cfg.validate({"cohorts": {"t": {"root": str(root), "selection": {"reconstructions": "all"}}},
                           "inference": {"device": "cpu"}, "sharding": {"shard_size": 1000}})
    layout = CohortLayout(out / "results", "t")
    run_discover(root, layout, cfg.cohort_config(config, "t"), workers=2)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    for s in shards:
        run_shard(layout, s, root, workers=2, **shard_options(config))
    grid = cfg.grids(config)[config["scoring"]["grid"]]
    series = labelled_series(layout, root, out / "truth" / "labels", config["scoring"]["grid"], 0, (0.0, 0.0, 1.0))
    return {"layout": layout, "shards": shards, "config": config, "grid": grid, "series": series,
            "convention": AgatstonConvention.from_dict(config["scoring"]["convention"])}


@functools.cache
def _cohort(model: str) -> tuple[int, int]:
    """The phantom anatomy and the participant count of the cohort a shipped model was trained and tested on.
    Cards before these fields were recorded: anatomy 1, 120 participants (docs/training.md)."""
    card = read_card(MODELS / model)
    return int(card.get("anatomy") or 1), int(card.get("cohort_participants") or 120)


def _largest(anatomy: int) -> str:
    """The shipped model with the largest training cohort of that phantom anatomy."""
    return max((m for m in SHIPPED if _cohort(m)[0] == anatomy), key=lambda m: _cohort(m)[1])


def _members(model: str) -> set[str]:
    """The PatientIDs of the cohort a shipped model was trained and tested on."""
    return {_participant_id(i) for i in range(_cohort(model)[1])}


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """``splits(model)``: the test split of that model's card. The split of a smaller cohort is the larger one's
    series of its first participants (the generator and the split are per participant), so each phantom anatomy
    is generated once, for the largest cohort among the shipped cards."""
    cache: dict[int, dict] = {}

    def get(model: str) -> dict:
        anatomy = _cohort(model)[0]
        if anatomy not in cache:
            cache[anatomy] = _generate_test_split(tmp_path_factory.mktemp(f"shipped{anatomy}"), anatomy,
                                                  _cohort(_largest(anatomy))[1])
        members = _members(model)
        return {**cache[anatomy], "series": [s for s in cache[anatomy]["series"] if s.participant in members]}

    return get


@pytest.fixture(scope="module")
def crops(splits):
    """``crops(model)``: that model's test series cropped to the shipped localizer's heart boxes (8 mm margin), as
    the trainings evaluated; cropped once per phantom anatomy."""
    cache: dict[int, list] = {}
    localizer = HeartLocalizer.load(MODELS / "localizer", "cpu")

    def get(model: str) -> list:
        anatomy = _cohort(model)[0]
        if anatomy not in cache:
            whole = splits(_largest(anatomy))
            cache[anatomy] = tr.load_crops(whole["series"], localizer, whole["grid"], whole["convention"], 8.0)
        members = _members(model)
        return [rec for rec in cache[anatomy] if rec.series.participant in members]

    return get


def test_localizer_reproduces_its_card(splits):
    test_split = splits("localizer")
    card = read_card(MODELS / "localizer")
    localizer = HeartLocalizer.load(MODELS / "localizer", "cpu")
    rows = tl.evaluate_localizer(localizer, test_split["series"], test_split["grid"], test_split["convention"])
    got, want = tl.summarise_localizer(rows), card["metrics"]["test"]
    assert got["n"] == want["n"] == card["split_sizes"]["test"]["series"]
    for key in ("share_coverage_ge_0.98", "median_iou", "median_coverage", "share_found"):
        assert got[key] == pytest.approx(want[key], abs=0.02), key
    # the acceptance figures of the localizer on the synthetic test split
    assert got["share_coverage_ge_0.98"] >= 0.98 and got["median_iou"] >= 0.85


def test_regressor_reproduces_its_card_and_the_pipeline_agrees(splits, crops):
    test_split, crops = splits("regressor"), crops("regressor")
    card = read_card(MODELS / "regressor")
    device = "cpu"
    regressor = SliceRegressor.load(MODELS / "regressor", device)
    assert card["hyper_parameters"]["jitter_mm"] == 8.0
    pred = tr.scan_predictions(regressor, crops, test_split["convention"])
    got, want = regression_metrics(pred, crops), card["metrics"]["test"]
    assert got["agatston"]["n"] == want["agatston"]["n"] == card["split_sizes"]["test"]["series"]
    for key in ("icc", "icc_log", "ba_log_mean_diff"):
        assert got["agatston"][key] == pytest.approx(want["agatston"][key], abs=2e-3), key
    for key in ("five_class_accuracy", "five_class_kappa", "four_class_accuracy", "cac_drs_accuracy"):
        assert got["agatston"][key] == pytest.approx(want["agatston"][key], abs=1.01 / len(crops)), key
    # the pipeline's inference stage gives the same per-scan scores as the evaluation path
    layout, config = test_split["layout"], {**test_split["config"],
                                            "models": {"localizer": str(MODELS / "localizer"),
                                                       "regressor": str(MODELS / "regressor")}}
    by_key = {}
    for s in test_split["shards"]:
        rows = run_infer_shard(layout, s, config, MODELS / "localizer", MODELS / "regressor")
        done = rows[rows["status"] == "done"]
        assert (done["regression_slice_floor"] == regressor.slice_floor).all()
        by_key.update({k: regression_totals(json.loads(raw), dz, test_split["convention"], floor)[0]
                       for k, raw, dz, floor in zip(done["series_key"], done["regression_raw"],
                                                    done["regression_spacing_z_mm"], done["regression_slice_floor"])})
    for rec, p in zip(crops, pred[:, 0]):
        assert float(by_key[rec.series.series_key]) == pytest.approx(p, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("model", ["unetpp", "unet", "lstm", "patch3d"])
def test_segmenter_reproduces_its_card(splits, crops, model):
    """The shipped U-Net++ (and the plain U-Net it is compared with), conv-LSTM and 3D patch U-Net on the
    regenerated test split: the card's Dice, lesion detection and agreement figures (models/README.md says which
    targets they miss)."""
    test_split, crops = splits(model), crops(model)
    card = read_card(MODELS / model)
    seg = load_mask_scorer(MODELS / model, torch.device("cpu"))
    assert seg.kind == card["kind"]
    counts, rows = ts.evaluate_records(seg, crops, test_split["convention"])
    got, want = ts.segmentation_metrics(counts, rows), card["metrics"]["test"]
    assert got["agatston"]["n"] == want["agatston"]["n"] == card["split_sizes"]["test"]["series"]
    assert got["calcium_dice"] == pytest.approx(want["calcium_dice"], abs=5e-3)
    for vessel, rate in want["lesion_detection_rate"].items():
        assert got["lesion_detection_rate"][vessel] == (None if rate is None else pytest.approx(rate, abs=0.02))
    assert got["agatston"]["icc"] == pytest.approx(want["agatston"]["icc"], abs=2e-3)
    for key in ("five_class_accuracy", "five_class_kappa"):
        assert got["agatston"][key] == pytest.approx(want["agatston"][key], abs=1.01 / len(crops)), key


def test_level_model_reproduces_its_card(splits):
    """The shipped calcification level model on the regenerated test pairs: level Dice, and the robust and classic
    scores of the sharp series against the soft reference, as in its card."""
    test_split = splits("levels")
    card = read_card(MODELS / "levels")
    localizer = HeartLocalizer.load(MODELS / "localizer", "cpu")
    model = LevelPredictor.load(MODELS / "levels", torch.device("cpu"))
    pairs = tcl.load_pairs(test_split["series"], localizer, test_split["grid"], test_split["convention"])
    counts, rows = tcl.evaluate_pairs(model, pairs, test_split["convention"])
    got, want = tcl.level_metrics(counts, rows), card["metrics"]["test"]
    assert len(pairs) == card["pairs"]["test"]
    for key in ("mean_level", "calcium"):
        assert got["dice"][key] == pytest.approx(want["dice"][key], abs=5e-3), key
    for method in ("robust_sharp_vs_soft_reference", "classic_sharp_vs_soft_reference"):
        assert got[method]["icc"] == pytest.approx(want[method]["icc"], abs=2e-3), method
        assert got[method]["five_class_accuracy"] == pytest.approx(want[method]["five_class_accuracy"],
                                                                   abs=1.01 / len(pairs)), method
