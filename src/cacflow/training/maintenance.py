"""Runs on a trained checkpoint, behind the ``cacflow`` maintenance commands (:mod:`cacflow.cli`): fit the
post-processing that a checkpoint trained before it existed lacks (:func:`refit_vessel_postprocessing_run`,
:func:`refit_level_filter_run`), or re-evaluate a scorer on another localizer's heart boxes (:func:`reevaluate_run`).
Each reads the labelled cohort and split the checkpoint was trained on, keeps the network's weights and rewrites the
checkpoint's directory in place."""

from __future__ import annotations

import logging
from pathlib import Path

from cacflow.models.checkpoint import load_checkpoint, read_card, save_checkpoint, software_versions, update_card
from cacflow.models.mask_scorers import load_mask_scorer, mask_scorer_from_payload
from cacflow.models.predict import HeartLocalizer, SliceRegressor, pick_device
from cacflow.pipeline.layout import CohortLayout
from cacflow.training import calcium_levels as tcl
from cacflow.training import regressor as tr
from cacflow.training import segmentation as ts
from cacflow.training.cards import (
    evaluate_level_model,
    evaluate_mask_scorer,
    level_filter_method,
    regression_metrics,
    regressor_test_rows,
    vessel_method,
)
from cacflow.training.common import Timer, hyper_dict, recorded_hyper
from cacflow.training.data import SPLITS
from cacflow.training.inputs import MASK_CROP_MARGIN_MM, cohort_setup, heart_box_crops, hyper_from_config, split_crops
from cacflow.training.postprocessing import level_lesion_filter, vessel_lesion_filter

log = logging.getLogger(__name__)


def _refit_setup(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, model_dir: Path, kind: str,
                 hyper_cls: type) -> tuple:
    """What fitting post-processing to a trained checkpoint of ``kind`` needs: its payload and card, the labelled
    series, grid and convention, the hyper-parameters (the card's, overridden by the model's config section under
    ``training``) and the device. Refused when the cohort or split is not the one the network was trained
    on."""
    payload, card = load_checkpoint(model_dir, kind)
    series, grid, convention, info = cohort_setup(layout, root, labels_dir, config)
    if info["data_sha256"] != card.get("data_sha256") or info["split_seed"] != card.get("split_seed"):
        raise ValueError(f"{model_dir}: its card was trained on other data (data_sha256 or split seed differ from "
                         f"cohort {layout.cohort}); fit on the cohort and split the network was trained on")
    # a vessel segmenter's settings are those of its architecture's section (the U-Net comparison has its own)
    section = ts.VESSEL_SECTIONS[payload["arch"]["arch"]][0] if kind == "vessel_segmentation" else kind
    hp = hyper_from_config(hyper_cls, {**recorded_hyper(card), **config["training"][section]})
    return payload, card, series, grid, convention, hp, pick_device(config["training"]["device"])


def refit_vessel_postprocessing_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict,
                                    localizer_dir: Path, model_dir: Path) -> dict:
    """Fit the vessel prior and the lesion filter of a trained vessel segmenter (settings: the card's, overridden by
    ``training.vessel_segmentation``, or ``training.unet_comparison`` for a plain U-Net) on its training split (the
    filter's threshold on its validation split), store them in the checkpoint and re-evaluate the validation and
    test scans; the network's weights and its training record are kept, the
    card's metrics, method, prior and filter entries are replaced.

    For a checkpoint trained before the prior or the filter existed: the network is not retrained (the prior only
    changes which vessel a predicted lesion gets, the filter which predicted lesions are kept), and the card records
    that they were fitted afterwards."""
    timer = Timer()
    payload, card, series, grid, convention, hp, device = _refit_setup(
        layout, root, labels_dir, config, model_dir, "vessel_segmentation", ts.VesselSegHyper)
    localizer, crops = heart_box_crops(series, localizer_dir, device, grid, convention)
    prior = ts.fit_prior(crops["train"], hp)
    payload = {k: v for k, v in payload.items() if k != "vessel_prior"}
    if prior is not None:
        payload["vessel_prior"] = prior.to_payload()
    payload, filter_entry = vessel_lesion_filter(payload, crops, convention, device, hp)
    scorer = mask_scorer_from_payload(payload, {"kind": "vessel_segmentation", "weights_sha256": "unsaved"},
                                      device)
    metrics, test_rows = evaluate_mask_scorer(scorer, crops, convention)
    prior_fields = {k: getattr(hp, k) for k in ("prior_bins", "prior_sigma_bins", "prior_weight")}
    fitted = {"fitted_after_training": True, "software": software_versions()}
    card = {**card, "metrics": metrics, "test_series": test_rows, "method": vessel_method(hp),
            "localizer": localizer.id,
            "hyper_parameters": hyper_dict(hp),
            "vessel_prior": {**prior_fields, **fitted},
            "lesion_filter": None if filter_entry["lesion_filter"] is None else {**filter_entry["lesion_filter"],
                                                                                  **fitted},
            "calcium_probability": {**filter_entry["calcium_probability"], **fitted},
            "postprocessing_seconds": round(timer(), 1)}
    card = save_checkpoint(model_dir, payload, card)
    test = card["metrics"]["test"]
    log.info("vessel prior and lesion filter fitted in %s: test vessel Dice %.3f, detection %s, kappa %.3f",
             model_dir, test["vessel_dice"], test["lesion_detection_rate"], test["agatston"]["five_class_kappa"])
    return card


def refit_level_filter_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                           model_dir: Path) -> dict:
    """Fit the lesion filter (``training.calcium_levels.lesion_filter_k``) of a trained level model on its training
    pairs (threshold on its validation pairs), store it in the checkpoint and re-evaluate; the network's weights
    and training record are kept, the card's metrics, method and filter entry replaced (``fitted_after_training``)."""
    timer = Timer()
    payload, card, series, grid, convention, hp, device = _refit_setup(
        layout, root, labels_dir, config, model_dir, "calcium_levels", tcl.LevelHyper)
    localizer = HeartLocalizer.load(localizer_dir, device)
    pairs = {k: tcl.load_pairs([s for s in series if s.split == k], localizer, grid, convention) for k in SPLITS}
    payload, filter_entry = level_lesion_filter(payload, pairs, convention, device, hp.lesion_filter_k)
    metrics, test_rows = evaluate_level_model(payload, pairs, convention, device)
    method = card["method"].split("; a lesion (3-D component")[0] + level_filter_method(hp)
    entry = filter_entry["lesion_filter"]
    card = {**card, "metrics": metrics, "test_pairs": test_rows, "method": method, "localizer": localizer.id,
            "hyper_parameters": hyper_dict(hp),
            "lesion_filter": None if entry is None else {**entry, "fitted_after_training": True,
                                                         "software": software_versions()},
            "postprocessing_seconds": round(timer(), 1)}
    card = save_checkpoint(model_dir, payload, card)
    m = card["metrics"]["test"]
    log.info("level lesion filter fitted in %s: test sharp stratum accuracy %.3f, kappa %.3f", model_dir,
             m["robust_sharp_vs_soft_reference"]["five_class_accuracy"],
             m["robust_sharp_vs_soft_reference"]["five_class_kappa"])
    return card


#: Card entries that hold evaluation results, per checkpoint kind (replaced by :func:`reevaluate_run`).
_RESULT_ROWS = {"regressor": "test_series", "calcium_levels": "test_pairs"}


def reevaluate_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                   model_dir: Path) -> dict:
    """Re-evaluate a trained regressor or segmentation scorer on the validation and test scans cropped to the heart
    boxes of the localizer in ``localizer_dir``, as a training run with that localizer would have evaluated it.

    For a new localizer: every scorer's card figures come from the boxes its localizer drew, so a changed localizer
    changes them. The weights and everything fitted after training (per-slice floor, vessel prior, lesion filter,
    calcium probability) are kept; the card's metrics, per-scan test rows and ``localizer`` are replaced, and
    ``reevaluated`` records the previous localizer and test metrics. Refused when the cohort or split is not the
    one the model was trained on."""
    timer = Timer()
    card = read_card(model_dir)
    kind = card.get("kind")
    if kind not in ("regressor", "vessel_segmentation", "conv_lstm", "patch_unet3d", "calcium_levels"):
        raise ValueError(f"{model_dir}: a {kind!r} checkpoint is not a scorer; re-evaluation takes a regressor or a "
                         "segmentation scorer (a localizer is evaluated by its own training)")
    series, grid, convention, info = cohort_setup(layout, root, labels_dir, config)
    if info["data_sha256"] != card.get("data_sha256") or info["split_seed"] != card.get("split_seed"):
        raise ValueError(f"{model_dir}: its card was trained on other data (data_sha256 or split seed differ from "
                         f"cohort {layout.cohort}); re-evaluate on the cohort and split it was trained on")
    device = pick_device(config["training"]["device"])
    localizer = HeartLocalizer.load(localizer_dir, device)
    held_out = ("val", "test")
    if kind == "regressor":
        regressor = SliceRegressor.load(model_dir, device)
        crops = split_crops(series, localizer, grid, convention, card["hyper_parameters"]["jitter_mm"], held_out)
        metrics = {k: regression_metrics(tr.scan_predictions(regressor, crops[k], convention), crops[k])
                   for k in held_out}
        rows = regressor_test_rows(crops["test"])
    elif kind == "calcium_levels":
        payload, _ = load_checkpoint(model_dir, kind)
        pairs = {k: tcl.load_pairs([s for s in series if s.split == k], localizer, grid, convention)
                 for k in held_out}
        metrics, rows = evaluate_level_model(payload, pairs, convention, device)
    else:
        crops = split_crops(series, localizer, grid, convention, MASK_CROP_MARGIN_MM, held_out)
        metrics, rows = evaluate_mask_scorer(load_mask_scorer(model_dir, device), crops, convention)
    previous = {"localizer": card.get("localizer"), "test_metrics": card["metrics"]["test"]}
    card = {**card, "metrics": metrics, _RESULT_ROWS.get(kind, "test_series"): rows, "localizer": localizer.id,
            "reevaluated": {"previous": previous, "software": software_versions(),
                            "seconds": round(timer(), 1)}}
    card = update_card(model_dir, card)
    log.info("%s re-evaluated with %s in %.0f s", model_dir, localizer.id, timer())
    return card
