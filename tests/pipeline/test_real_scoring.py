"""The real CT folder of ../shared/data/real as one cohort, end to end: the real chest CT is scored inside a heart
box where the heart is, every other series ends as an exclusion with a reason, nothing crashes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cacflow import config as cfg
from cacflow.discovery.reasons import REASONS
from cacflow.pipeline.aggregate import TABLES, aggregate_cohort, table_path
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.infer import run_infer_shard
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.score import run_score_shard
from cacflow.pipeline.shard import run_shard, shard_options

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def real_run(real_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    config = cfg.validate({"cohorts": {"real": {"root": str(real_data)}}, "inference": {"device": "cpu"},
                           "models": {"localizer": str(MODELS / "localizer"), "regressor": str(MODELS / "regressor")}})
    layout = CohortLayout(base / "results", "real")
    run_discover(real_data, layout, config, workers=2)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    for s in shards:
        run_shard(layout, s, real_data, workers=2, **shard_options(config))
        run_infer_shard(layout, s, config, MODELS / "localizer", MODELS / "regressor")
        run_score_shard(layout, s, real_data, config, workers=2)
    aggregate_cohort(layout, base / "results" / "tables", shards, config)
    return {t: pd.read_parquet(table_path(base / "results" / "tables", t, "real")) for t in TABLES} | {"base": base}


def test_real_chest_ct_is_scored_inside_a_plausible_heart_box(real_run):
    series, scores = real_run["series"], real_run["scores"]
    chest = series[series["selected"] & (series["manufacturer"].str.contains("Philips", case=False))
                   & (series["n_slices"] == 141)]
    assert len(chest) == 1
    row = chest.iloc[0]
    assert row["heart_region_status"] == "found"
    extent = [row[f"heart_box_max_{a}_mm"] - row[f"heart_box_min_{a}_mm"] for a in "xyz"]
    # an adult heart with the heuristic's margins (12 mm per side): 8-21 cm across and front to back, 6-16 cm high
    assert 80 <= extent[0] <= 210 and 80 <= extent[1] <= 210 and 60 <= extent[2] <= 160, extent
    # the box lies in front of the spine and between the lungs: its centre is near the midline, anterior half
    assert abs((row["heart_box_min_x_mm"] + row["heart_box_max_x_mm"]) / 2) < 60
    score = scores[(scores["series_key"] == row["series_key"]) & (scores["method"] == "classic_heart_region")].iloc[0]
    assert score["status"] == "scored" and score["agatston"] >= 0
    # no obvious coronary calcium in this scan (README of the data): the threshold baseline, which counts noise
    # above 130 HU in the region, must still not call it high risk
    assert score["agatston"] < 400, score["agatston"]
    assert (real_run["base"] / "results" / row["qc_picture"]).is_file()
    # the box came from the localizer or, flagged with the localizer's reason, from the heuristic fallback; the
    # regression ConvNet scored the scan inside it
    assert row["heart_box_method"] in ("localizer", "heuristic_fallback")
    assert (row["heart_box_method"] == "localizer") == pd.isna(row["heart_box_flag"])
    regression = scores[(scores["series_key"] == row["series_key"]) & (scores["method"] == "regression")].iloc[0]
    assert regression["status"] == "scored" and regression["region"] == row["heart_box_method"]


def test_every_other_real_series_is_an_exclusion_with_a_reason(real_run):
    series, excl = real_run["series"], real_run["exclusions"]
    assert set(excl["reason"]) <= set(REASONS)
    not_selected = series[~series["selected"]]
    listed = set(excl.loc[excl["level"] == "series", "series_key"])
    assert set(not_selected["series_key"]) <= listed
    assert (excl["message"].str.len() > 10).all()
