"""Training smoke test: both training targets run a few real optimisation steps on a small labelled cohort, write
weights with model cards, and the inference stage then scores every scan of the shard with those models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cacflow import config as cfg
from cacflow.models.checkpoint import load_checkpoint
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.infer import INFER_COLUMNS, run_infer_shard
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard, shard_options
from cacflow.synth.cohort import _participant_id
from cacflow.training.data import split_of
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.regression_rule import regression_totals
from cacflow.training.run import train_localizer_run, train_regressor_run


def _seed_with_every_split(n: int, fractions: tuple[float, float, float]) -> int:
    ids = [_participant_id(i) for i in range(n)]
    for seed in range(200):
        if {split_of(p, seed, fractions) for p in ids} == {"train", "val", "test"}:
            return seed
    raise AssertionError("no seed splits 6 participants three ways")


@pytest.fixture(scope="module")
def trained(small_cohort, tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    root = small_cohort / "dicom"
    fractions = (0.34, 0.33, 0.33)
    config = cfg.validate({
        "cohorts": {"t": {"root": str(root), "selection": {"reconstructions": "all"}}},
        "training": {"cohort": "t", "split": {"seed": _seed_with_every_split(6, fractions),
                                              "fractions": list(fractions)},
                     "device": "cpu",
                     "localizer": {"max_epochs": 2, "patience": 2, "samples_per_epoch": 32, "batch_size": 16},
                     "regressor": {"max_epochs": 2, "patience": 2, "samples_per_epoch": 16, "batch_size": 8}},
        "inference": {"device": "cpu"}})
    layout = CohortLayout(base / "results", "t")
    run_discover(root, layout, cfg.cohort_config(config, "t"), workers=2)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    for s in shards:
        run_shard(layout, s, root, workers=2, **shard_options(config))
    labels = small_cohort / "truth" / "labels"
    loc = train_localizer_run(layout, root, labels, config, base / "models" / "localizer")
    reg = train_regressor_run(layout, root, labels, config, base / "models" / "localizer", base / "models" / "regressor")
    return {"base": base, "layout": layout, "shards": shards, "config": config, "cards": (loc, reg)}


def test_training_writes_weights_and_model_cards(trained):
    loc, reg = trained["cards"]
    for card, kind in ((loc, "localizer"), (reg, "regressor")):
        payload, on_disk = load_checkpoint(trained["base"] / "models" / kind, kind)
        assert json.dumps(on_disk, sort_keys=True) == json.dumps(card, sort_keys=True, default=float)
        for key in ("data_sha256", "split_sizes", "hyper_parameters", "metrics", "software", "trained_on"):
            assert key in card, key
        assert set(card["split_sizes"]) == {"train", "val", "test"}
        assert card["software"]["torch"]
    assert reg["target_transform"] in ("log", "raw") and set(reg["selection"]) == {"log", "raw"}
    assert set(loc["metrics"]) == {"val", "test"} and loc["metrics"]["test"]["n"] >= 1
    test = reg["metrics"]["test"]["agatston"]
    assert test["n"] == len(reg["test_series"]) and 0.0 <= test["five_class_accuracy"] <= 1.0


def test_inference_shard_scores_every_scan_with_the_trained_models(trained):
    layout, config = trained["layout"], trained["config"]
    models = trained["base"] / "models"
    for shard in trained["shards"]:
        rows = run_infer_shard(layout, shard, config, models / "localizer", models / "regressor")
        assert list(rows.columns) == list(INFER_COLUMNS)
        tasks = pd.read_parquet(layout.shard_tasks(shard))
        assert set(rows["series_key"]) == set(tasks["series_key"])
        done = rows[rows["status"] == "done"]
        assert len(done) >= 1
        raw = [np.asarray(json.loads(r)) for r in done["regression_raw"]]
        assert all(r.shape == (n, 2) for r, n in zip(raw, done["regression_slices"]))
        assert done["heart_box_method"].notna().all()
        assert np.all(done["box_z1"] > done["box_z0"])
        # a rerun with the same models and volumes infers nothing again
        again = run_infer_shard(layout, shard, config, models / "localizer", models / "regressor")
        pd.testing.assert_frame_equal(rows.reset_index(drop=True), again.reset_index(drop=True))


def test_score_stage_adds_regression_rows_and_the_chosen_box(trained, small_cohort):
    from cacflow.pipeline.score import REGRESSION, run_score_shard

    layout, config = trained["layout"], trained["config"]
    models = trained["base"] / "models"
    for shard in trained["shards"]:
        infer = run_infer_shard(layout, shard, config, models / "localizer", models / "regressor").set_index(
            "series_key")
        frames = run_score_shard(layout, shard, small_cohort / "dicom", config,
                                 labels_dir=small_cohort / "truth" / "labels", workers=1)
        scores, regions = frames["scores"], frames["regions"].set_index("series_key")
        reg = scores[scores["method"] == REGRESSION].set_index("series_key")
        assert set(reg.index) == set(infer.index)
        for key, row in reg.iterrows():
            inf = infer.loc[key]
            if inf["status"] == "done":
                expected = regression_totals(json.loads(inf["regression_raw"]), inf["regression_spacing_z_mm"],
                                             AgatstonConvention.from_dict(config["scoring"]["convention"]))
                assert row["status"] == "scored" and row["agatston"] == pytest.approx(expected[0])
                assert row["region"] == inf["heart_box_method"] and row["five_class"] is not pd.NA
                assert regions.loc[key, "heart_box_method"] == inf["heart_box_method"]
                assert regions.loc[key, "heart_box_min_z_mm"] == pytest.approx(inf["box_min_z_mm"])
            else:
                assert row["status"] != "scored" and pd.isna(row["agatston"])
        classic = scores[(scores["method"] == "classic_heart_region") & (scores["status"] == "scored")]
        assert set(classic["region"]) <= {"heuristic", "heuristic_in_localizer_box"}
