"""Training smoke test: every training target (localizer, regressor, U-Net++ and U-Net vessel segmentation,
calcification levels, conv-LSTM, 3D patch U-Net) runs a few real optimisation steps on a small labelled cohort and
writes weights with a model card; the inference stage then scores every scan of the shard with those models and the
score stage turns the masks into table rows.

The trainings and the inference shard run on the CPU; ``CACFLOW_TEST_DEVICE=cuda`` runs them on a GPU instead
(``benchmarks/gpu_training.sh`` does so on a GPU node). Most checks load the weights back on the CPU; the mask
check runs the scorers on the device the inference shard ran on.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cacflow import config as cfg
from cacflow.imaging.bone import bone_mask
from cacflow.io.sparse_mask import decode_mask
from cacflow.io.zarr_store import read_volume
from cacflow.models.checkpoint import CheckpointError, load_checkpoint, read_card
from cacflow.models.mask_scorers import load_mask_scorer
from cacflow.models.segmentation import VesselSegmenter
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.infer import INFER_COLUMNS, run_infer_shard
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard, shard_options
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.regression_rule import regression_totals
from cacflow.scoring.robust_agatston import robust_score
from cacflow.scoring.scan import score_scan
from cacflow.synth.cohort import _participant_id
from cacflow.training.calcium_levels import LevelHyper
from cacflow.training.data import split_of
from cacflow.training.lesion_filter import LESION_FILTER_THRESHOLDS
from cacflow.training.maintenance import reevaluate_run, refit_level_filter_run, refit_vessel_postprocessing_run
from cacflow.training.regressor import RegressorHyper
from cacflow.training.regressor import initial_state as tr_initial_state
from cacflow.training.run import train_levels_run, train_localizer_run, train_regressor_run, train_segmenter_run

SHIPPED = Path(__file__).resolve().parents[2] / "models"
pytestmark = pytest.mark.slow  # trains every model kind: minutes; make test-fast leaves it out
DEVICE = os.environ.get("CACFLOW_TEST_DEVICE", "cpu")


def _seed_with_every_split(n: int, fractions: tuple[float, float, float]) -> int:
    """A split seed that puts a soft/sharp pair (the generator pairs odd participants) in every split."""
    paired = [_participant_id(i) for i in range(n) if i % 2 == 1]
    for seed in range(2000):
        if {split_of(p, seed, fractions) for p in paired} == {"train", "val", "test"}:
            return seed
    raise AssertionError("no seed splits the paired participants three ways")


@pytest.fixture(scope="module")
def trained(small_cohort, tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    root = small_cohort / "dicom"
    fractions = (0.34, 0.33, 0.33)
    config = cfg.validate({
        "cohorts": {"t": {"root": str(root), "selection": {"reconstructions": "all"}}},
        "training": {"cohort": "t", "split": {"seed": _seed_with_every_split(6, fractions),
                                              "fractions": list(fractions)},
                     "device": DEVICE,
                     # the shipped recipe (appearance changes at 0.5), scaled down
                     "localizer": {"max_epochs": 2, "patience": 2, "samples_per_epoch": 32, "batch_size": 16},
                     # the shipped two-stage recipe, the second stage continuing the first
                     "regressor": {"stages": [{"learning_rate": 2e-3, "max_epochs": 2, "patience": 2},
                                              {"learning_rate": 1e-3, "max_epochs": 1, "patience": 1}],
                                   "samples_per_epoch": 16, "batch_size": 8},
                     "vessel_segmentation": {"max_epochs": 2, "patience": 2, "samples_per_epoch": 8, "batch_size": 4,
                                             "patch": 32, "features": [4, 4, 8, 8, 16, 4], "val_series": 1},
                     "unet_comparison": {"max_epochs": 2, "patience": 2, "samples_per_epoch": 8, "batch_size": 4,
                                         "patch": 32, "features": [4, 4, 8, 8, 16, 4], "val_series": 1},
                     "calcium_levels": {"max_epochs": 2, "patience": 2, "samples_per_epoch": 8, "batch_size": 4,
                                        "patch": 32, "channels": [4, 8, 8, 16, 16], "val_pairs": 1},
                     "conv_lstm": {"max_epochs": 2, "patience": 2, "samples_per_epoch": 8, "batch_size": 4,
                                   "patch": 32, "widths": [4, 8, 8], "val_series": 1},
                     "patch_unet3d": {"max_epochs": 2, "patience": 2, "samples_per_epoch": 4, "batch_size": 2,
                                      "channels": [4, 8, 8], "val_series": 1}},
        "inference": {"device": DEVICE}})
    layout = CohortLayout(base / "results", "t")
    run_discover(root, layout, cfg.cohort_config(config, "t"), workers=2)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    for s in shards:
        run_shard(layout, s, root, workers=2, **shard_options(config))
    labels = small_cohort / "truth" / "labels"
    loc = train_localizer_run(layout, root, labels, config, base / "models" / "localizer")
    reg = train_regressor_run(layout, root, labels, config, base / "models" / "localizer",
                              base / "models" / "regressor")
    segs = {arch: train_segmenter_run(layout, root, labels, config, base / "models" / "localizer", arch,
                                      base / "models" / arch) for arch in ("unetpp", "unet", "lstm", "patch3d")}
    # the level model needs a heart box on one pair per split: the shipped localizer finds them on this small
    # cohort where the two-epoch localizer above does not (its own training is smoke-tested above)
    levels = train_levels_run(layout, root, labels, config, SHIPPED / "localizer", base / "models" / "levels")
    config = {**config, "models": {"segmentation": {m: str(base / "models" / m)
                                                    for m in ("unetpp", "levels", "lstm", "patch3d")}}}
    return {"base": base, "layout": layout, "shards": shards, "config": config, "cards": (loc, reg), "segs": segs,
            "levels": levels}


def test_training_writes_weights_and_model_cards(trained):
    loc, reg = trained["cards"]
    for card, kind in ((loc, "localizer"), (reg, "regressor")):
        payload, on_disk = load_checkpoint(trained["base"] / "models" / kind, kind)
        assert json.dumps(on_disk, sort_keys=True) == json.dumps(card, sort_keys=True, default=float)
        for key in ("data_sha256", "split_sizes", "hyper_parameters", "metrics", "software", "trained_on"):
            assert key in card, key
        assert set(card["split_sizes"]) == {"train", "val", "test"}
        # a cohort given by its folder, not generated: nothing to regenerate its test split from
        assert card["anatomy"] is None and card["cohort_participants"] is None
        assert card["software"]["torch"]
        assert card["device"].startswith(DEVICE)  # the device it trained on (cuda: "cuda" or "cuda:0")
    assert reg["target_transform"] == "log"
    first, second = reg["training"]["stages"]
    assert [h["epoch"] for h in first["history"]] == [0, 1]
    # the second stage starts from the first one's best weights, scored as its epoch -1
    assert second["history"][0]["epoch"] == -1
    assert second["history"][0]["val_log_mae"] == pytest.approx(first["best_val_log_mae"], rel=1e-5)
    assert second["learning_rate"] == 1e-3 and reg["hyper_parameters"]["stages"][1]["learning_rate"] == 1e-3
    # the per-slice floor was chosen on the validation scans among the candidates, and stored with the weights
    floors = [row["floor_agatston"] for row in reg["slice_floor"]["candidates"]]
    assert reg["slice_floor"]["chosen_on"] == "val" and reg["slice_floor"]["agatston"] in floors
    assert load_checkpoint(trained["base"] / "models" / "regressor", "regressor")[0]["slice_floor_agatston"] == \
        reg["slice_floor"]["agatston"]
    assert set(loc["metrics"]) == {"val", "test"} and loc["metrics"]["test"]["n"] >= 1
    # the nodule probe: per plane, the share of probed heart-free test slices called heart, per disc radius
    probe = loc["nodule_probe"]
    assert probe["split"] == "test" and {"axial", "coronal", "sagittal"} <= set(probe)
    for plane in ("axial", "coronal", "sagittal"):
        shares = [v for k, v in probe[plane].items() if k.startswith("radius_")]
        assert len(shares) == 3 and probe[plane]["n_slices"] >= 0
        assert all(0.0 <= v <= 1.0 for v in shares) or probe[plane]["n_slices"] == 0
    # one network per plane, stored as the shipped localizer's is, each with its training history
    loc_payload = load_checkpoint(trained["base"] / "models" / "localizer", "localizer")[0]
    assert loc_payload["state"].keys() == load_checkpoint(SHIPPED / "localizer", "localizer")[0]["state"].keys()
    for p in ("axial", "coronal", "sagittal"):
        assert isinstance(loc_payload["state"][p], dict)
        assert [h["epoch"] for h in loc["training"][p]["history"]] == [0, 1]
    assert loc["hyper_parameters"]["appearance_probability"] == 0.5
    test = reg["metrics"]["test"]["agatston"]
    assert test["n"] == len(reg["test_series"]) and 0.0 <= test["five_class_accuracy"] <= 1.0


def test_regressor_training_can_start_from_a_checkpoint(trained, small_cohort, tmp_path):
    """init_from: the run starts from the checkpoint's weights, keeps its architecture (whatever the run's own
    settings say), and the card names the weights it started from."""
    models = trained["base"] / "models"
    start_payload, start_card = load_checkpoint(models / "regressor", "regressor")
    config = trained["config"]
    config = {**config, "training": {**config["training"], "regressor": {
        **config["training"]["regressor"], "stages": [{"learning_rate": 1e-3, "max_epochs": 1, "patience": 1}],
        "widths": [4, 4, 4, 4, 4, 4], "init_from": str(models / "regressor")}}}
    card = train_regressor_run(trained["layout"], small_cohort / "dicom", small_cohort / "truth" / "labels", config,
                               models / "localizer", tmp_path / "warm")
    payload, _ = load_checkpoint(tmp_path / "warm", "regressor")
    assert card["initialised_from"]["weights_sha256"] == start_card["weights_sha256"]
    assert card["initialised_from"]["initialised_from"] is None  # the start was trained from scratch
    assert payload["arch"] == start_payload["arch"]
    assert card["hyper_parameters"]["widths"] == start_payload["arch"]["widths"]
    # the start is scored on validation as epoch -1 and kept when no trained epoch beats it
    (run,) = card["training"]["stages"]
    assert [h["epoch"] for h in run["history"]] == [-1, 0]
    assert run["best_val_log_mae"] == min(h["val_log_mae"] for h in run["history"])
    unchanged = all(torch.equal(payload["state"][k], v) for k, v in start_payload["state"].items())
    assert unchanged == (run["best_epoch"] == -1)
    assert trained["cards"][1]["initialised_from"] is None  # from scratch by default
    with pytest.raises(CheckpointError, match="init_from"):
        tr_initial_state(replace(RegressorHyper(), init_from=str(tmp_path / "missing")))


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
                # the trained regressor's floor, chosen on its validation scan, travels with the raw outputs
                assert inf["regression_slice_floor"] == load_checkpoint(
                    trained["base"] / "models" / "regressor", "regressor")[0]["slice_floor_agatston"]
                expected = regression_totals(json.loads(inf["regression_raw"]), inf["regression_spacing_z_mm"],
                                             AgatstonConvention.from_dict(config["scoring"]["convention"]),
                                             inf["regression_slice_floor"])
                assert row["status"] == "scored" and row["agatston"] == pytest.approx(expected[0])
                assert row["region"] == inf["heart_box_method"] and row["five_class"] is not pd.NA
                assert regions.loc[key, "heart_box_method"] == inf["heart_box_method"]
                assert regions.loc[key, "heart_box_min_z_mm"] == pytest.approx(inf["box_min_z_mm"])
            else:
                assert row["status"] != "scored" and pd.isna(row["agatston"])
        classic = scores[(scores["method"] == "classic_heart_region") & (scores["status"] == "scored")]
        assert set(classic["region"]) <= {"heuristic", "heuristic_in_localizer_box"}


def test_vessel_segmentation_cards_hold_every_acceptance_figure(trained):
    for arch in ("unetpp", "unet"):
        card = trained["segs"][arch]
        payload, on_disk = load_checkpoint(trained["base"] / "models" / arch, "vessel_segmentation")
        assert payload["arch"]["arch"] == arch and on_disk["arch"] == arch
        test = card["metrics"]["test"]
        assert 0.0 <= test["calcium_dice"] <= 1.0
        assert set(test["lesion_detection_rate"]) == {"LM", "LAD", "CX", "RCA"}
        assert set(test["vessel_icc"]) == {"LM", "LAD", "CX", "RCA"}
        assert test["agatston"]["n"] == len(card["test_series"]) >= 1
        assert {"icc", "five_class_kappa", "five_class_accuracy"} <= set(test["agatston"])
        assert card["hyper_parameters"]["focal_gamma"] == 3.0 and card["hyper_parameters"]["focal_alpha"] == 0.5
        # the lesion filter: fitted on the network's own training lesions, its threshold chosen on validation
        lf = card["lesion_filter"]
        assert lf["k"] == card["hyper_parameters"]["lesion_filter_k"] == 15
        assert [r["threshold"] for r in lf["validation_candidates"]] == list(LESION_FILTER_THRESHOLDS)
        assert lf["threshold"] in LESION_FILTER_THRESHOLDS and 0 <= lf["training_spurious"] <= lf["training_lesions"]
        assert ("lesion_filter" in payload) == (lf["threshold"] is not None)
        if lf["threshold"] is not None:
            assert len(payload["lesion_filter"]["spurious"]) == lf["training_lesions"]
            assert payload["lesion_filter"]["threshold"] == pytest.approx(lf["threshold"])
        # the calcium probability, chosen on validation together with the filter's threshold
        cp = card["calcium_probability"]
        candidates = card["hyper_parameters"]["calcium_probabilities"]
        assert [r["calcium_probability"] for r in cp["candidates"]] == candidates and cp["chosen"] in candidates
        assert payload.get("calcium_probability") == cp["chosen"]
        best = max((r["five_class_kappa"], r["five_class_accuracy"]) for r in cp["candidates"])
        assert best == next((r["five_class_kappa"], r["five_class_accuracy"]) for r in cp["candidates"]
                            if r["calcium_probability"] == cp["chosen"])


def test_vessel_prior_is_shipped_with_the_weights_and_can_be_refitted(trained, small_cohort, tmp_path):
    models = trained["base"] / "models"
    payload, card = load_checkpoint(models / "unetpp", "vessel_segmentation")
    assert payload["vessel_prior"]["log_prob"].shape == (4, 12, 12, 12)
    assert card["hyper_parameters"]["prior_bins"] == 12 and "vessel_prior" not in card  # not refitted
    assert VesselSegmenter.load(models / "unetpp", torch.device("cpu")).prior.bins == 12
    # refitting a trained segmenter's prior keeps its weights and training record, replaces the prior and metrics
    copy = tmp_path / "unet"
    shutil.copytree(models / "unet", copy)
    config = trained["config"]
    # a plain U-Net's settings are those of training.unet_comparison
    config = {**config, "training": {**config["training"], "unet_comparison": {
        **config["training"]["unet_comparison"], "prior_bins": 4, "prior_weight": 2.0, "lesion_filter_k": 3}}}
    refit = refit_vessel_postprocessing_run(trained["layout"], small_cohort / "dicom",
                                            small_cohort / "truth" / "labels", config, models / "localizer", copy)
    after, on_disk = load_checkpoint(copy, "vessel_segmentation")
    assert after["vessel_prior"]["log_prob"].shape == (4, 4, 4, 4) and after["vessel_prior"]["weight"] == 2.0
    for k, v in load_checkpoint(models / "unet", "vessel_segmentation")[0]["state"].items():
        assert torch.equal(after["state"][k], v), k
    assert on_disk["vessel_prior"]["fitted_after_training"] and on_disk["hyper_parameters"]["prior_bins"] == 4
    assert on_disk["training"] == trained["segs"]["unet"]["training"]
    assert on_disk["metrics"]["test"]["agatston"]["n"] == refit["metrics"]["test"]["agatston"]["n"] >= 1
    assert "prior fitted on the training labels" in on_disk["method"]
    assert on_disk["lesion_filter"]["k"] == 3 and on_disk["lesion_filter"]["fitted_after_training"]
    assert ("lesion_filter" in after) == (on_disk["lesion_filter"]["threshold"] is not None)
    assert on_disk["calcium_probability"]["fitted_after_training"]
    assert after.get("calcium_probability") == on_disk["calcium_probability"]["chosen"]


@pytest.mark.parametrize("model, kind", [("lstm", "conv_lstm"), ("patch3d", "patch_unet3d")])
def test_coronary_segmenter_cards_hold_their_figures(trained, model, kind):
    card = trained["segs"][model]
    payload, on_disk = load_checkpoint(trained["base"] / "models" / model, kind)
    assert on_disk["kind"] == card["kind"] == kind
    test = card["metrics"]["test"]
    assert 0.0 <= test["calcium_dice"] <= 1.0 and test["vessel_icc"] is None
    assert set(test["lesion_detection_rate"]) == {"LM", "LAD", "CX", "RCA"}
    assert test["agatston"]["n"] == len(card["test_series"]) >= 1
    assert {"icc", "five_class_kappa", "five_class_accuracy"} <= set(test["agatston"])
    if model == "lstm":  # the seed's CPU comparison with the 2-D U-Net, measured on the test boxes
        t = card["cpu_time"]
        assert t["conv_lstm_s_per_scan"] > 0 and t["unet_s_per_scan"] > 0 and t["scans"] >= 1
    else:
        assert payload["threshold"] == 0.95 and card["hyper_parameters"]["lambda_dice"] == 0.5


def test_segmentation_masks_flow_from_inference_to_score_rows(trained, small_cohort):
    from cacflow.pipeline.score import run_score_shard

    layout, config = trained["layout"], trained["config"]
    models = trained["base"] / "models"
    convention = AgatstonConvention.from_dict(config["scoring"]["convention"])
    # on the device the shard ran on: a GPU and the CPU may differ in a few voxels at the probability threshold
    scorers = {m: load_mask_scorer(models / m, torch.device(DEVICE)) for m in ("unetpp", "levels", "lstm", "patch3d")}
    for shard in trained["shards"]:
        infer = run_infer_shard(layout, shard, config, models / "localizer", models / "regressor",
                                {m: models / m for m in scorers}).set_index("series_key")
        frames = run_score_shard(layout, shard, small_cohort / "dicom", config,
                                 labels_dir=small_cohort / "truth" / "labels", workers=1)
        scores = frames["scores"]
        seg = scores[scores["method"] == "unetpp"].set_index("series_key")
        assert set(seg.index) == set(infer.index)
        for key, row in seg.iterrows():
            inf = infer.loc[key]
            if inf["status"] != "done":
                assert row["status"] != "scored" and pd.isna(row["agatston"])
                continue
            entry = json.loads(inf["segmentation"])["unetpp"]
            labels = decode_mask(entry["mask"])
            volume = read_volume(layout.volume(key, config["scoring"]["grid"]))
            assert labels.shape == volume.hu.shape and not labels[volume.hu < 130].any()
            # the stored map (the heart box labelled alone, encoded from the box) is each scorer's whole-grid map
            box = tuple(int(inf[f"box_{a}{e}"]) for a in "zyx" for e in "01")
            for name, scorer in scorers.items():
                np.testing.assert_array_equal(decode_mask(json.loads(inf["segmentation"])[name]["mask"]),
                                              scorer.predict_box(volume.hu, box))
            # every method's calcium passes the bone guard: what lies in bone is not counted
            bone = bone_mask(volume.hu, volume.spacing_zyx)
            expected = score_scan(volume.hu, volume.spacing_zyx, np.asarray(volume.origin), volume.direction,
                                  np.where(bone, 0, labels), vessel_labels=True, convention=convention)
            assert row["status"] == "scored" and row["model"] == entry["model"]
            assert row["agatston"] == pytest.approx(expected.total.agatston)
            v = frames["vessels"].query("series_key == @key and method == 'unetpp'").set_index("vessel")
            assert set(v.index) == {"LM", "LAD", "CX", "RCA"}
            for name, rs in expected.vessels.items():
                assert v.loc[name, "agatston"] == pytest.approx(rs.agatston)
            # the level model: its levels are scored without the scan's HU
            entry = json.loads(inf["segmentation"])["levels"]
            assert entry["kind"] == "calcium_levels"
            lev = decode_mask(entry["mask"])
            robust = robust_score(np.where(bone, 0, lev), volume.spacing_zyx, np.asarray(volume.origin),
                                  volume.direction, convention)
            lrow = scores.query("series_key == @key and method == 'levels'").iloc[0]
            assert lrow["status"] == "scored" and lrow["agatston"] == pytest.approx(robust.total.agatston)
            assert pd.isna(lrow["mass_mg"])
            # the coronary segmenters: label 1 of their gated maps, no vessel rows, lesion rows without a vessel
            for method, kind in (("lstm", "conv_lstm"), ("patch3d", "patch_unet3d")):
                entry = json.loads(inf["segmentation"])[method]
                assert entry["kind"] == kind
                cor = decode_mask(entry["mask"])
                assert not cor[volume.hu < 130].any() and set(np.unique(cor)) <= {0, 1, 2}
                expected = score_scan(volume.hu, volume.spacing_zyx, np.asarray(volume.origin), volume.direction,
                                      (cor == 1) & ~bone, convention=convention)
                crow = scores.query("series_key == @key and method == @method").iloc[0]
                assert crow["status"] == "scored" and crow["agatston"] == pytest.approx(expected.total.agatston)
                assert frames["vessels"].query("series_key == @key and method == @method").empty
                les = frames["lesions"].query("series_key == @key and method == @method")
                counted = les[les["guard"].isna()]
                assert len(counted) == expected.total.n_lesions and les["vessel"].isna().all()
                # what the guard removed is listed, marked, and was in bone
                assert set(les["guard"].dropna()) <= {"bone"}
                if (les["guard"] == "bone").any():
                    assert ((cor == 1) & bone).any()
        # the second-reader flag: automatic methods' strata, the same on every row of a scan
        for key, g in scores.groupby("series_key"):
            auto = g[(g["status"] == "scored") & (g["method"] != "reference")]
            flags = set(g["second_reader"].dropna())
            if len(auto) >= 2:
                apart = auto["five_class_index"].max() - auto["five_class_index"].min() >= 1
                assert flags == {bool(apart)}, key
            else:
                assert not flags


def test_level_model_card_holds_the_sharp_kernel_comparison(trained):
    card = trained["levels"]
    payload, _ = load_checkpoint(trained["base"] / "models" / "levels", "calcium_levels")
    assert payload["arch"]["backbone"] == card["hyper_parameters"]["backbone"] == LevelHyper().backbone
    assert card["initialised_from"] is None  # from scratch by default
    test = card["metrics"]["test"]
    assert set(test["dice"]) >= {"mean_level", "calcium", "level_1", "level_4"}
    for key in ("robust_sharp_vs_soft_reference", "classic_sharp_vs_soft_reference"):
        assert test[key]["n"] == card["pairs"]["test"] >= 1 and 0 <= test[key]["five_class_accuracy"] <= 1
    lf = card["lesion_filter"]  # fitted on the model's training lesions, threshold chosen on the validation pairs
    assert lf["k"] == card["hyper_parameters"]["lesion_filter_k"] == 15
    assert [r["threshold"] for r in lf["validation_candidates"]] == list(LESION_FILTER_THRESHOLDS)
    assert ("lesion_filter" in payload) == (lf["threshold"] is not None)
    assert "nearest training lesions" in card["method"]


def test_level_model_lesion_filter_can_be_refitted(trained, small_cohort, tmp_path):
    models = trained["base"] / "models"
    copy = tmp_path / "levels"
    shutil.copytree(models / "levels", copy)
    config = trained["config"]
    config = {**config, "training": {**config["training"], "calcium_levels": {
        **config["training"]["calcium_levels"], "lesion_filter_k": 3}}}
    refit = refit_level_filter_run(trained["layout"], small_cohort / "dicom", small_cohort / "truth" / "labels",
                                   config, models / "localizer", copy)
    after, on_disk = load_checkpoint(copy, "calcium_levels")
    for k, v in load_checkpoint(models / "levels", "calcium_levels")[0]["state"].items():
        assert torch.equal(after["state"][k], v), k
    assert on_disk["lesion_filter"]["k"] == 3 and on_disk["lesion_filter"]["fitted_after_training"]
    assert ("lesion_filter" in after) == (on_disk["lesion_filter"]["threshold"] is not None)
    assert on_disk["training"] == trained["levels"]["training"]
    assert on_disk["method"].count("nearest training lesions") == 1 and "3 nearest" in on_disk["method"]
    assert refit["metrics"]["test"]["robust_sharp_vs_soft_reference"]["n"] == trained["levels"]["pairs"]["test"]


def _numbers(tree) -> list[float]:
    """Every number of a JSON-like tree, in a fixed order (None as nan)."""
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _numbers(tree[k])]
    if isinstance(tree, list):
        return [x for v in tree for x in _numbers(v)]
    if tree is None:
        return [float("nan")]
    return [float(tree)] if isinstance(tree, (int, float)) else []


@pytest.mark.parametrize("model, rows", [("regressor", "test_series"), ("lstm", "test_series"),
                                         ("levels", "test_pairs")])
def test_a_scorer_is_reevaluated_on_another_localizers_boxes(trained, small_cohort, tmp_path, model, rows):
    """A changed localizer changes every scorer's card figures: re-evaluation recomputes them on the localizer's
    boxes and keeps the weights; on the localizer the model was evaluated with, it reproduces the card."""
    models = trained["base"] / "models"
    copy = tmp_path / model
    shutil.copytree(models / model, copy)
    before = read_card(copy)
    args = (trained["layout"], small_cohort / "dicom", small_cohort / "truth" / "labels", trained["config"])
    own = SHIPPED / "localizer" if model == "levels" else models / "localizer"  # the fixture's choice
    card = reevaluate_run(*args, own, copy)
    assert _numbers(card["metrics"]) == pytest.approx(_numbers(before["metrics"]), abs=1e-6, nan_ok=True)
    key = "sharp_series" if rows == "test_pairs" else "series_key"  # a level model's rows are soft/sharp pairs
    assert [r[key] for r in card[rows]] == [r[key] for r in before[rows]]
    assert card["reevaluated"]["previous"]["localizer"] == before["localizer"] == card["localizer"]
    assert card["reevaluated"]["previous"]["test_metrics"] == before["metrics"]["test"]
    assert (copy / "weights.pt").read_bytes() == (models / model / "weights.pt").read_bytes()
    assert read_card(copy) == json.loads(json.dumps(card, default=float))
    load_checkpoint(copy, before["kind"])  # the card still matches its weights
    if model == "regressor":  # another localizer's boxes: its id replaces the old one
        other = reevaluate_run(*args, SHIPPED / "localizer", copy)
        assert other["localizer"].startswith("localizer-") and other["localizer"] != before["localizer"]
        assert other["reevaluated"]["previous"]["localizer"] == before["localizer"]
        assert other["metrics"]["test"]["agatston"]["n"] == before["metrics"]["test"]["agatston"]["n"]
    with pytest.raises(ValueError, match="not a scorer"):  # a localizer is evaluated by its own training
        reevaluate_run(*args, own, models / "localizer")
