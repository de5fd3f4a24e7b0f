"""Training runs as the workflow calls them: labelled cohort in, model directory (weights + model card) out."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cacflow.config import grids
from cacflow.evaluation.agreement import agreement, agreement_table
from cacflow.imaging.resample import ZGrid
from cacflow.models.checkpoint import (
    load_checkpoint,
    read_card,
    save_checkpoint,
    software_versions,
    update_card,
)
from cacflow.models.lesion_filter import FEATURES as LESION_FEATURES
from cacflow.models.lesion_filter import LesionFilter
from cacflow.models.localizer import CANVAS_MM, CANVAS_SIZE, PLANES
from cacflow.models.mask_scorers import load_mask_scorer, mask_scorer_from_payload
from cacflow.models.predict import HeartLocalizer, SliceRegressor, pick_device
from cacflow.pipeline.layout import CohortLayout
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.strata import SCHEMES
from cacflow.training import calcium_levels as tcl
from cacflow.training import conv_lstm as tlstm
from cacflow.training import localizer as tl
from cacflow.training import patch_unet3d as tp3
from cacflow.training import regressor as tr
from cacflow.training import segmentation as ts
from cacflow.training.common import Timer, best_by_strata, hyper_dict, recorded_hyper, seed_everything
from cacflow.training.data import SPLITS, LabelledSeries, data_hash, labelled_series

log = logging.getLogger(__name__)


def _setup(layout: CohortLayout, root: Path, labels_dir: Path, config: dict
           ) -> tuple[list[LabelledSeries], ZGrid, AgatstonConvention, dict]:
    tcfg = config["training"]
    grid_name = config["scoring"]["grid"]
    series = labelled_series(layout, root, labels_dir, grid_name, int(tcfg["split"]["seed"]),
                             tuple(tcfg["split"]["fractions"]))
    if not series:
        raise ValueError(f"cohort {layout.cohort}: no preprocessed series with a label map in {labels_dir}; "
                         "a training cohort needs <SeriesInstanceUID>.nii.gz labels (see docs/training.md)")
    by_split = {k: [s for s in series if s.split == k] for k in SPLITS}
    for k, v in by_split.items():
        if not v:
            raise ValueError(f"cohort {layout.cohort}: the {k} split is empty ({len(series)} labelled series); "
                             "add participants or change training.split.fractions")
    synthetic = config["cohorts"].get(layout.cohort, {}).get("synthetic")
    info = {"cohort": layout.cohort, "data_sha256": data_hash(series), "grid": grid_name,
            # the generated cohort's phantom anatomy and size, so that its test split can be generated again
            "anatomy": None if synthetic is None else int(synthetic["anatomy"]),
            "cohort_participants": None if synthetic is None else int(synthetic["n"]),
            "split_seed": int(tcfg["split"]["seed"]), "split_fractions": list(tcfg["split"]["fractions"]),
            "split_sizes": {k: {"series": len(v), "participants": len({s.participant for s in v})}
                            for k, v in by_split.items()}}
    return series, grids(config)[grid_name], AgatstonConvention.from_dict(config["scoring"]["convention"]), info


def _trained_on(layout: CohortLayout, config: dict) -> str:
    """The model card's ``trained_on``: 'synthetic' for a generated training cohort."""
    return "synthetic" if "synthetic" in config["cohorts"].get(layout.cohort, {}) else "labelled cohort"


def _hyper(cls, overrides: dict):
    hp = cls()
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(hp, **kw)


def train_localizer_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, out_dir: Path) -> dict:
    """Train the three plane networks, evaluate boxes on validation and test series, write weights + card."""
    timer = Timer()
    series, grid, convention, info = _setup(layout, root, labels_dir, config)
    hp = _hyper(tl.LocalizerHyper, config["training"]["localizer"])
    device = pick_device(config["training"]["device"])
    rng = seed_everything(hp.seed)
    records = {k: tl.load_canvases([s for s in series if s.split == k], grid, convention) for k in ("train", "val")}
    log.info("localizer: %d train, %d val canvases loaded in %.0f s", len(records["train"]), len(records["val"]),
             timer())
    nets, histories = {}, {}
    for plane in PLANES:
        nets[plane], histories[plane] = tl.train_plane(plane, records["train"], records["val"], hp, device, rng)
    payload = {"arch": {"widths": list(hp.widths), "hidden": hp.hidden},
               "state": {p: {k: v.cpu() for k, v in nets[p].state_dict().items()} for p in PLANES}}
    # weights first (card marked unevaluated), so an evaluation failure never loses a finished training
    save_checkpoint(out_dir, payload, {"kind": "localizer", "evaluated": False, **info})
    localizer = HeartLocalizer(nets, {"kind": "localizer", "weights_sha256": "unsaved"}, device)
    margin, margin_table = tl.choose_margin(localizer, [s for s in series if s.split == "val"], grid, convention)
    localizer.margin_mm = payload["box_margin_mm"] = margin
    log.info("localizer: box margin %.1f mm chosen on validation: %s", margin, margin_table)
    test_canvases: list[tl.CanvasRecord] = []
    rows = {k: tl.evaluate_localizer(localizer, [s for s in series if s.split == k], grid, convention,
                                     test_canvases if k == "test" else None)
            for k in ("val", "test")}
    probe = tl.nodule_probe(localizer, test_canvases)
    log.info("localizer: nodule probe on the test split (share of heart-free slices called heart): %s", probe)
    card = {
        "kind": "localizer", "name": "cacflow heart localizer (three plane ConvNets)",
        "trained_on": _trained_on(layout, config),
        "method": "de Vos et al. (seed 003 ref. [3]): per-slice heart presence in axial, coronal and sagittal "
                  "slices of a 3 mm canvas; the runs of p > 0.5 give the box",
        "canvas": {"voxel_mm": CANVAS_MM, "size": CANVAS_SIZE}, **info,
        "hyper_parameters": hyper_dict(hp), "box_margin_mm": margin, "margin_selection": margin_table,
        "device": str(device), "training_seconds": round(timer(), 1),
        "training": histories,
        "metrics": {k: tl.summarise_localizer(v) for k, v in rows.items()},
        "nodule_probe": {"split": "test", **probe},
        "test_series": rows["test"], "software": software_versions(), "evaluated": True,
    }
    card = save_checkpoint(out_dir, payload, card)
    log.info("localizer written to %s: test %s", out_dir, card["metrics"]["test"])
    return card


def regression_metrics(pred: np.ndarray, records: list[tr.CropRecord]) -> dict:
    """Agreement of predicted Agatston (and volume) totals with the reference, overall, per kernel, kVp, stratum."""
    ref = np.array([[r.reference_agatston, r.reference_volume] for r in records]).reshape(-1, 2)
    frame = pd.DataFrame({
        "method_score": pred[:, 0], "reference_score": ref[:, 0],
        "kernel_class": [r.series.kernel_class for r in records], "kvp": [f"{r.series.kvp:g}" for r in records],
        "reference_stratum": [SCHEMES["five_class"].label(v) for v in ref[:, 0]]})
    overall = agreement(pred[:, 0], ref[:, 0])
    return {"agatston": overall,
            "volume": {k: v for k, v in agreement(pred[:, 1], ref[:, 1]).items() if k.startswith("icc") or k == "n"},
            "table": agreement_table(frame, ["kernel_class", "kvp", "reference_stratum"]).to_dict(orient="records")}


def train_regressor_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                        out_dir: Path) -> dict:
    """Train the regression ConvNet with each target transform, keep the better one by validation, write it."""
    timer = Timer()
    series, grid, convention, info = _setup(layout, root, labels_dir, config)
    hp, init_state, init_origin = tr.initial_state(_hyper(tr.RegressorHyper, config["training"]["regressor"]))
    device = pick_device(config["training"]["device"])
    localizer = HeartLocalizer.load(localizer_dir, device)
    crops = _split_crops(series, localizer, grid, convention, hp.jitter_mm)
    log.info("regressor: crops loaded in %.0f s (%s)", timer(), {k: len(v) for k, v in crops.items()})
    candidates = {}
    for transform in hp.transforms:
        rng = seed_everything(hp.seed)
        net, hist = tr.train_one(crops["train"], crops["val"], hp, transform, device, rng, convention, init_state)
        candidates[transform] = (net, hist)
    chosen = min(candidates, key=lambda t: candidates[t][1]["best_val_log_mae"])
    net = candidates[chosen][0]
    # the validation and test scans are predicted once: the floor is chosen on, and the metrics computed from,
    # these raw outputs
    regressor = SliceRegressor(net, {"kind": "regressor", "weights_sha256": "unsaved"}, chosen, device)
    raws = {k: tr.raw_predictions(regressor, crops[k]) for k in ("val", "test")}
    floor, floor_table = tr.choose_slice_floor(
        raws["val"], [r.spacing_zyx[0] for r in crops["val"]],
        np.array([r.reference_agatston for r in crops["val"]]), convention)
    log.info("regressor: per-slice floor %.2f AU chosen on the validation scans", floor)
    payload = {"arch": {"widths": list(hp.widths), "hidden": list(hp.hidden)}, "transform": chosen,
               "slice_floor_agatston": floor, "state": {k: v.cpu() for k, v in net.state_dict().items()}}
    save_checkpoint(out_dir, payload, {"kind": "regressor", "evaluated": False, "target_transform": chosen, **info})
    metrics = {k: regression_metrics(tr.scan_totals(raws[k], crops[k], convention, floor), crops[k])
               for k in ("val", "test")}
    card = {
        "kind": "regressor", "name": "cacflow regression ConvNet (per-slice Agatston and volume)",
        "trained_on": _trained_on(layout, config),
        "method": "de Vos et al. (seed 003): axial slices of the scoring grid cropped to the heart box, zero-padded "
                  "to 256 x 256; six conv-BN-ELU-maxpool layers, two FC layers (voxel size appended), outputs "
                  "Agatston and volume per slice; scan score = sum over slices, a slice counting 0 below the "
                  "larger of the convention's minimum and a per-slice floor chosen on the validation scans",
        "target_transform": chosen, **info, "localizer": localizer.id,
        "hyper_parameters": hyper_dict(hp), "device": str(device), "training_seconds": round(timer(), 1),
        "initialised_from": init_origin,
        "training": {t: h for t, (_, h) in candidates.items()},
        "selection": {t: h["best_val_log_mae"] for t, (_, h) in candidates.items()},
        "slice_floor": {"agatston": floor, "chosen_on": "val", "candidates": floor_table},
        "metrics": metrics, "convention": convention.as_dict(), "software": software_versions(),
        "test_series": _regressor_test_rows(crops["test"]),
    }
    card = save_checkpoint(out_dir, {**payload}, {**card, "evaluated": True})
    log.info("regressor (%s target) written to %s: test ICC %.3f", chosen, out_dir,
             card["metrics"]["test"]["agatston"]["icc"])
    return card


def _regressor_test_rows(crops: list[tr.CropRecord]) -> list[dict]:
    """The regressor card's per-scan test rows."""
    return [{"series_key": r.series.series_key, "kernel_class": r.series.kernel_class, "kvp": r.series.kvp,
             "reference_agatston": r.reference_agatston, "box": r.box_method} for r in crops]


@dataclass
class MaskModelSpec:
    """How one segmentation scorer is trained on the heart-box crops and how its card describes it."""

    kind: str
    name: str
    method: str
    hp: object  # the run's hyper-parameter dataclass
    fit: Callable  # (train, val, hp, device, rng, convention, prepared) -> (net, history)
    arch: dict  # the payload's "arch": what the loader needs to rebuild the network
    payload_extra: dict = field(default_factory=dict)
    prepare: Callable | None = None  # (train crops) -> what is fitted before the network (e.g. the vessel prior)
    prepared_payload: Callable | None = None  # (prepared) -> payload entries that store it
    card_fields: dict = field(default_factory=dict)  # fixed card entries beside the kind, e.g. the architecture
    card_extra: Callable | None = None  # (net, crops) -> extra card entries, e.g. timings
    # (payload, crops, convention, device) -> (payload, card entries): fitted on the trained network before the
    # evaluation, e.g. the lesion filter
    post_fit: Callable | None = None


#: In-plane margin (mm) of the segmentation scorers' crops around the heart box.
MASK_CROP_MARGIN_MM = 8.0


def _split_crops(series: list[LabelledSeries], localizer: HeartLocalizer, grid: ZGrid,
                 convention: AgatstonConvention, margin_mm: float, splits: tuple[str, ...] = SPLITS) -> dict:
    """The labelled series of each split cropped to their pipeline heart boxes widened by ``margin_mm``."""
    return {k: tr.load_crops([s for s in series if s.split == k], localizer, grid, convention, margin_mm)
            for k in splits}


def _heart_box_crops(series: list[LabelledSeries], localizer_dir: Path, device, grid: ZGrid,
                     convention: AgatstonConvention) -> tuple[HeartLocalizer, dict]:
    """The localizer and the labelled series of each split cropped to their pipeline heart boxes
    (:data:`MASK_CROP_MARGIN_MM`)."""
    localizer = HeartLocalizer.load(localizer_dir, device)
    return localizer, _split_crops(series, localizer, grid, convention, MASK_CROP_MARGIN_MM)


def _train_mask_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                    spec: MaskModelSpec, out_dir: Path) -> dict:
    """Train a segmentation scorer on the labelled series' heart-box crops, evaluate it on the validation and test
    scans as the pipeline predicts (calcium Dice, lesion detection, ICC and strata), write weights + card."""
    timer = Timer()
    series, grid, convention, info = _setup(layout, root, labels_dir, config)
    device = pick_device(config["training"]["device"])
    localizer, crops = _heart_box_crops(series, localizer_dir, device, grid, convention)
    log.info("%s: crops loaded in %.0f s (%s)", spec.kind, timer(), {k: len(v) for k, v in crops.items()})
    rng = seed_everything(spec.hp.seed)
    prepared = spec.prepare(crops["train"]) if spec.prepare else None
    net, history = spec.fit(crops["train"], crops["val"], spec.hp, device, rng, convention, prepared)
    payload = {"arch": spec.arch, **spec.payload_extra,
               **(spec.prepared_payload(prepared) if spec.prepared_payload else {}),
               "state": {k: v.cpu() for k, v in net.state_dict().items()}}
    post_fitted = {}
    if spec.post_fit:
        payload, post_fitted = spec.post_fit(payload, crops, convention, device)
    save_checkpoint(out_dir, payload, {"kind": spec.kind, "evaluated": False, **info})
    scorer = mask_scorer_from_payload(payload, {"kind": spec.kind, "weights_sha256": "unsaved"}, device)
    metrics, test_rows = _evaluate_mask_scorer(scorer, crops, convention)
    card = {
        "kind": spec.kind, **spec.card_fields, "name": spec.name, "trained_on": _trained_on(layout, config),
        "method": spec.method,
        **info, "localizer": localizer.id, "hyper_parameters": hyper_dict(spec.hp), "device": str(device),
        "training_seconds": round(timer(), 1), "training": history, "metrics": metrics,
        **(spec.card_extra(net, crops) if spec.card_extra else {}), **post_fitted,
        "convention": convention.as_dict(), "software": software_versions(), "test_series": test_rows,
        "evaluated": True,
    }
    card = save_checkpoint(out_dir, payload, card)
    test = card["metrics"]["test"]
    log.info("%s written to %s: test calcium Dice %.3f, ICC %.3f", spec.kind, out_dir, test["calcium_dice"],
             test["agatston"]["icc"])
    return card


def _val_test_metrics(evaluate: Callable, summarise: Callable) -> tuple[dict, list[dict]]:
    """Metrics of the validation and test splits and the test split's per-scan rows: ``evaluate(split)`` gives
    (pooled counts, rows), ``summarise(counts, rows)`` the split's metrics."""
    metrics, test_rows = {}, []
    for k in ("val", "test"):
        counts, rows = evaluate(k)
        metrics[k] = summarise(counts, rows)
        test_rows = rows if k == "test" else test_rows
    return metrics, test_rows


def _evaluate_mask_scorer(scorer, crops: dict, convention: AgatstonConvention) -> tuple[dict, list[dict]]:
    """Validation and test metrics of a segmentation scorer and its per-scan test rows."""
    return _val_test_metrics(lambda k: ts.evaluate_records(scorer, crops[k], convention), ts.segmentation_metrics)


def fit_lesion_filter(payload: dict, kind: str, k: int, device, training_lesions: Callable,
                      choose_threshold: Callable) -> tuple[dict, dict]:
    """Fit the lesion filter (:mod:`cacflow.models.lesion_filter`) of a trained segmentation scorer's payload.

    ``training_lesions(scorer)`` gives the network's lesions on the training boxes (features, spurious flags);
    ``choose_threshold(scorer)`` the threshold chosen on the validation scans and each candidate's row, with the
    scorer's filter in place. Returns the payload with the filter (none when ``k`` is 0 or when keeping every
    lesion wins) and the card's ``lesion_filter`` entry (None when ``k`` is 0)."""
    payload = {key: v for key, v in payload.items() if key != "lesion_filter"}
    if not k:
        return payload, {"lesion_filter": None}
    scorer = mask_scorer_from_payload(payload, {"kind": kind, "weights_sha256": "unsaved"}, device)
    features, spurious = training_lesions(scorer)
    scorer.lesion_filter = LesionFilter(features, spurious, k, math.inf)
    threshold, rows = choose_threshold(scorer)
    entry = {"k": k, "features": list(LESION_FEATURES), "threshold": threshold,
             "training_lesions": len(spurious), "training_spurious": int(spurious.sum()),
             "validation_candidates": rows}
    if threshold is not None:
        payload["lesion_filter"] = LesionFilter(features, spurious, k, threshold).to_payload()
    log.info("%s lesion filter: %d training lesions (%d spurious), threshold %s", kind, len(spurious),
             spurious.sum(), threshold)
    return payload, {"lesion_filter": entry}


def _vessel_lesion_filter(payload: dict, crops: dict, convention: AgatstonConvention, device,
                          hp: ts.VesselSegHyper) -> tuple[dict, dict]:
    """The calcium probability (:func:`cacflow.models.segmentation.select_calcium`) and the lesion filter
    (:func:`fit_lesion_filter`) of a vessel segmenter, chosen together on its heart-box crops.

    The network runs once per training and validation box; for each candidate of ``hp.calcium_probabilities`` the
    filter is fitted on the training lesions at that probability and its threshold chosen on validation. The
    candidate whose chosen row is best wins: κ, then accuracy (:func:`best_by_strata`), then calcium Dice; among
    equals the first candidate (the argmax alone first). Returns the payload and the card's ``lesion_filter`` and
    ``calcium_probability`` entries."""
    scorer = mask_scorer_from_payload(payload, {"kind": "vessel_segmentation", "weights_sha256": "unsaved"}, device)
    outputs = {k: [ts.box_outputs(scorer, rec) for rec in crops[k]] for k in ("train", "val")}
    fits = []
    for c in hp.calcium_probabilities:
        candidate = {key: v for key, v in payload.items() if key != "calcium_probability"}
        if c is not None:
            candidate["calcium_probability"] = float(c)
        fitted, entry = fit_lesion_filter(
            candidate, "vessel_segmentation", hp.lesion_filter_k, device,
            lambda seg: ts.training_lesions(seg, crops["train"], outputs["train"]),
            lambda seg: ts.choose_lesion_threshold(seg, crops["val"], convention, outputs["val"]))
        if entry["lesion_filter"] is not None:  # the chosen threshold's validation row (None: no filter won)
            chosen = entry["lesion_filter"]["threshold"]
            row = next(r for r in entry["lesion_filter"]["validation_candidates"] if r["threshold"] == chosen)
        else:  # lesion_filter_k 0: the candidate's validation figures without a filter
            seg = mask_scorer_from_payload(fitted, {"kind": "vessel_segmentation", "weights_sha256": "unsaved"},
                                           device)
            row = {"threshold": None, **ts.validation_figures(seg, crops["val"], convention, outputs["val"])(None)}
        fits.append((c, fitted, entry, row))
        log.info("calcium probability %s: validation kappa %.3f, accuracy %.3f, Dice %.3f", c,
                 row["five_class_kappa"], row["five_class_accuracy"], row["calcium_dice"])
    ranked = [{**row, "index": i} for i, (_, _, _, row) in enumerate(fits)]
    best = best_by_strata(ranked, lambda row: (row["calcium_dice"], -row["index"]))
    c, fitted, entry, _ = fits[best["index"]]
    table = [{"calcium_probability": cand, "lesion_filter_threshold": row.get("threshold"),
              **{key: row[key] for key in ("five_class_kappa", "five_class_accuracy", "calcium_dice",
                                           "lesion_detection_rate")}} for cand, _, _, row in fits]
    return fitted, {**entry, "calcium_probability": {"chosen": c, "chosen_on": "val", "candidates": table}}


def _level_lesion_filter(payload: dict, pairs: dict, convention: AgatstonConvention, device, k: int
                         ) -> tuple[dict, dict]:
    """:func:`fit_lesion_filter` of a calcification level model on its soft/sharp pairs."""
    return fit_lesion_filter(payload, "calcium_levels", k, device,
                             lambda model: tcl.training_lesions(model, pairs["train"]),
                             lambda model: tcl.choose_lesion_threshold(model, pairs["val"], convention))


def _refit_setup(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, model_dir: Path, kind: str,
                 hyper_cls: type) -> tuple:
    """What fitting post-processing to a trained checkpoint of ``kind`` needs: its payload and card, the labelled
    series, grid and convention, the hyper-parameters (the card's, overridden by the config section
    ``training.<kind>``) and the device. Refused when the cohort or split is not the one the network was trained
    on."""
    payload, card = load_checkpoint(model_dir, kind)
    series, grid, convention, info = _setup(layout, root, labels_dir, config)
    if info["data_sha256"] != card.get("data_sha256") or info["split_seed"] != card.get("split_seed"):
        raise ValueError(f"{model_dir}: its card was trained on other data (data_sha256 or split seed differ from "
                         f"cohort {layout.cohort}); fit on the cohort and split the network was trained on")
    hp = _hyper(hyper_cls, {**recorded_hyper(card), **config["training"][kind]})
    return payload, card, series, grid, convention, hp, pick_device(config["training"]["device"])


def refit_vessel_postprocessing_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict,
                                    localizer_dir: Path, model_dir: Path) -> dict:
    """Fit the vessel prior and the lesion filter (``training.vessel_segmentation`` settings) of a trained vessel
    segmenter on its training split (the filter's threshold on its validation split), store them in the checkpoint
    and re-evaluate the validation and test scans; the network's weights and its training record are kept, the
    card's metrics, method, prior and filter entries are replaced.

    For a checkpoint trained before the prior or the filter existed: the network is not retrained (the prior only
    changes which vessel a predicted lesion gets, the filter which predicted lesions are kept), and the card records
    that they were fitted afterwards."""
    timer = Timer()
    payload, card, series, grid, convention, hp, device = _refit_setup(
        layout, root, labels_dir, config, model_dir, "vessel_segmentation", ts.VesselSegHyper)
    localizer, crops = _heart_box_crops(series, localizer_dir, device, grid, convention)
    prior = ts.fit_prior(crops["train"], hp)
    payload = {k: v for k, v in payload.items() if k != "vessel_prior"}
    if prior is not None:
        payload["vessel_prior"] = prior.to_payload()
    payload, filter_entry = _vessel_lesion_filter(payload, crops, convention, device, hp)
    scorer = mask_scorer_from_payload(payload, {"kind": "vessel_segmentation", "weights_sha256": "unsaved"},
                                      device)
    metrics, test_rows = _evaluate_mask_scorer(scorer, crops, convention)
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
    series, grid, convention, info = _setup(layout, root, labels_dir, config)
    if info["data_sha256"] != card.get("data_sha256") or info["split_seed"] != card.get("split_seed"):
        raise ValueError(f"{model_dir}: its card was trained on other data (data_sha256 or split seed differ from "
                         f"cohort {layout.cohort}); re-evaluate on the cohort and split it was trained on")
    device = pick_device(config["training"]["device"])
    localizer = HeartLocalizer.load(localizer_dir, device)
    held_out = ("val", "test")
    if kind == "regressor":
        regressor = SliceRegressor.load(model_dir, device)
        crops = _split_crops(series, localizer, grid, convention, card["hyper_parameters"]["jitter_mm"], held_out)
        metrics = {k: regression_metrics(tr.scan_predictions(regressor, crops[k], convention), crops[k])
                   for k in held_out}
        rows = _regressor_test_rows(crops["test"])
    elif kind == "calcium_levels":
        payload, _ = load_checkpoint(model_dir, kind)
        pairs = {k: tcl.load_pairs([s for s in series if s.split == k], localizer, grid, convention)
                 for k in held_out}
        metrics, rows = _evaluate_level_model(payload, pairs, convention, device)
    else:
        crops = _split_crops(series, localizer, grid, convention, MASK_CROP_MARGIN_MM, held_out)
        metrics, rows = _evaluate_mask_scorer(load_mask_scorer(model_dir, device), crops, convention)
    previous = {"localizer": card.get("localizer"), "test_metrics": card["metrics"]["test"]}
    card = {**card, "metrics": metrics, _RESULT_ROWS.get(kind, "test_series"): rows, "localizer": localizer.id,
            "reevaluated": {"previous": previous, "software": software_versions(),
                            "seconds": round(timer(), 1)}}
    card = update_card(model_dir, card)
    log.info("%s re-evaluated with %s in %.0f s", model_dir, localizer.id, timer())
    return card


def vessel_method(hp: ts.VesselSegHyper) -> str:
    """The model card's ``method`` of a vessel segmentation run."""
    position = " and three box-position channels (z, y, x in the heart box, -1..1)" if hp.position else ""
    prior = (f"; each 3-D lesion takes the vessel of the highest summed network log-probability plus "
             f"{hp.prior_weight:g} x log P(vessel | box position) (a {hp.prior_bins}^3-cell prior fitted on the "
             "training labels, cacflow.models.vessel_prior)" if hp.prior_bins else "")
    lesion_filter = (f"; a lesion is removed when at least a threshold share (chosen on validation, see "
                     f"lesion_filter) of its {hp.lesion_filter_k} nearest training lesions by box place and mean "
                     "calcium probability were not coronary (cacflow.models.lesion_filter)" if hp.lesion_filter_k
                     else "")
    calcium = ("; a voxel is calcium when its argmax class is not background or its calcium probability "
               "1 - P(background) reaches a value chosen on validation (see calcium_probability; "
               "cacflow.models.segmentation.select_calcium)" if any(c is not None for c in hp.calcium_probabilities)
               else "")
    return ("seed 001: axial slices of the scoring grid inside the heart box, two input channels (HU and the "
            f">= 130 HU binary image){position}, {hp.norm} normalisation, five classes (background, LM, LAD, CX, "
            "RCA), focal loss (alpha 0.5, gamma 3), balanced sampling of slices with and without calcium; predicted "
            f"labels gated at 130 HU{calcium}{lesion_filter}{prior}; scored by the scoring library (2-D components "
            "under 1 mm2 dropped)")


def train_vessel_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                     arch: str, out_dir: Path) -> dict:
    """Train a vessel-specific calcium segmentation ConvNet (``arch`` 'unetpp' or 'unet'), evaluate on the
    validation and test scans, write weights + card."""
    hp = _hyper(ts.VesselSegHyper, config["training"]["vessel_segmentation"])
    names = {"unetpp": "U-Net++", "unet": "U-Net"}
    spec = MaskModelSpec(
        kind="vessel_segmentation", name=f"cacflow vessel-specific calcium {names[arch]} (LM, LAD, CX, RCA)",
        method=vessel_method(hp),
        hp=hp, fit=lambda train, val, hp_, device, rng, conv, prior_: ts.train_vessel_net(
            arch, train, val, hp_, device, rng, conv, prior_),
        arch={"arch": arch, "features": list(hp.features), "position": hp.position, "norm": hp.norm},
        card_fields={"arch": arch},
        prepare=lambda train: ts.fit_prior(train, hp),
        prepared_payload=lambda prior_: {} if prior_ is None else {"vessel_prior": prior_.to_payload()},
        post_fit=lambda payload, crops, conv, device: _vessel_lesion_filter(payload, crops, conv, device, hp))
    return _train_mask_run(layout, root, labels_dir, config, localizer_dir, spec, out_dir)


def train_lstm_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                   out_dir: Path) -> dict:
    """Train the 2.5D conv-LSTM (seed 002), evaluate it, time it against the 2-D U-Net on the CPU, write it."""
    hp = _hyper(tlstm.LSTMHyper, config["training"]["conv_lstm"])
    spec = MaskModelSpec(
        kind="conv_lstm", name="cacflow 2.5D conv-LSTM calcium segmenter (coronary / non-coronary)",
        method="seed 002: three adjacent axial slices (HU window -800..1200) through a shared encoder, a "
               "convolutional LSTM over the slices' coarse features whose last state weights the centre slice "
               "(attention), decoder with the centre's skips; three classes (background, coronary calcium, "
               "non-coronary calcium); focal loss; heart box applied (nothing predicted outside it); class 1 gated "
               "at 130 HU and scored by the scoring library",
        hp=hp, fit=lambda train, val, hp_, device, rng, conv, _: tlstm.train_lstm_net(train, val, hp_, device, rng,
                                                                                     conv),
        arch={"widths": list(hp.widths)},
        card_extra=lambda net, crops: {"cpu_time": tlstm.cpu_time_against_unet(net, hp, crops["test"])})
    return _train_mask_run(layout, root, labels_dir, config, localizer_dir, spec, out_dir)


def train_patch3d_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                      out_dir: Path) -> dict:
    """Train the 3D patch U-Net (seed 004), evaluate its stitched, thresholded predictions, write it."""
    hp = _hyper(tp3.PatchHyper, config["training"]["patch_unet3d"])
    spec = MaskModelSpec(
        kind="patch_unet3d", name="cacflow 3D patch U-Net calcium segmenter",
        method="seed 004: 48 x 48 x 32 voxel blocks (32 slices) of the scoring grid inside the heart box, a 3-D "
               "U-Net with one sigmoid output, Dice + focal loss (0.5 each); overlapping patches stitched by "
               "sliding-window inference (overlap 0.5, Gaussian weights), probability threshold 0.95, gated at "
               "130 HU and scored by the scoring library",
        hp=hp, fit=lambda train, val, hp_, device, rng, conv, _: tp3.train_patch_net(train, val, hp_, device, rng,
                                                                                    conv),
        arch={"channels": list(hp.channels)}, payload_extra={"threshold": hp.threshold})
    return _train_mask_run(layout, root, labels_dir, config, localizer_dir, spec, out_dir)


def _level_filter_method(hp) -> str:
    """The level model card's ``method`` sentence on its lesion filter."""
    return (f"; a lesion (3-D component of level >= 1) is set to level 0 when at least a threshold share (chosen "
            f"on validation, see lesion_filter) of its {hp.lesion_filter_k} nearest training lesions by box place "
            "and mean calcium probability were not coronary (cacflow.models.lesion_filter)"
            if hp.lesion_filter_k else "")


def _evaluate_level_model(payload: dict, pairs: dict, convention: AgatstonConvention, device
                          ) -> tuple[dict, list[dict]]:
    """Validation and test metrics of a level model's payload (built as the pipeline loads it) and its test rows."""
    model = mask_scorer_from_payload(payload, {"kind": "calcium_levels", "weights_sha256": "unsaved"}, device)
    return _val_test_metrics(lambda k: tcl.evaluate_pairs(model, pairs[k], convention), tcl.level_metrics)


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
    payload, filter_entry = _level_lesion_filter(payload, pairs, convention, device, hp.lesion_filter_k)
    metrics, test_rows = _evaluate_level_model(payload, pairs, convention, device)
    method = card["method"].split("; a lesion (3-D component")[0] + _level_filter_method(hp)
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


def train_levels_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                     out_dir: Path) -> dict:
    """Train the kernel-robust calcification level model on the soft/sharp pairs, evaluate on the validation and
    test pairs (sharp series against the soft reference, classic baseline beside it), write weights + card."""
    timer = Timer()
    series, grid, convention, info = _setup(layout, root, labels_dir, config)
    hp, init_state, init_origin = tcl.initial_state(_hyper(tcl.LevelHyper, config["training"]["calcium_levels"]))
    device = pick_device(config["training"]["device"])
    localizer = HeartLocalizer.load(localizer_dir, device)
    pairs = {k: tcl.load_pairs([s for s in series if s.split == k], localizer, grid, convention) for k in SPLITS}
    for k, v in pairs.items():
        if not v:
            raise ValueError(f"cohort {layout.cohort}: no soft/sharp pair of one acquisition in the {k} split; the "
                             "calcification level model needs paired reconstructions (selection reconstructions: all)")
    log.info("levels: pairs loaded in %.0f s (%s)", timer(), {k: len(v) for k, v in pairs.items()})
    rng = seed_everything(hp.seed)
    net, history = tcl.train_level_net(pairs["train"], pairs["val"], hp, device, rng, convention, init_state)
    arch = tcl.level_arch(hp)
    payload = {"arch": {**asdict(arch), "channels": list(arch.channels)},
               "state": {k: v.cpu() for k, v in net.state_dict().items()}}
    payload, filter_entry = _level_lesion_filter(payload, pairs, convention, device, hp.lesion_filter_k)
    save_checkpoint(out_dir, payload, {"kind": "calcium_levels", "evaluated": False, **info})
    metrics, test_rows = _evaluate_level_model(payload, pairs, convention, device)
    card = {
        "kind": "calcium_levels", "name": f"cacflow kernel-robust calcification levels ({hp.backbone})",
        "trained_on": _trained_on(layout, config),
        "method": "seed 000 (robust Agatston score): per-pixel calcification level 0-4 predicted from a slice of "
                  "any kernel, trained on sharp (and soft) slices against the soft reconstruction's levels inside "
                  "the reference labels; loss cross-entropy + Dice + information gain; score: 2-D components of "
                  "level >= 1, area >= 1 mm2, density factor = highest level of the component, slice factor "
                  "increment / 3 mm (cacflow.scoring.robust_agatston)" + _level_filter_method(hp),
        **info, "localizer": localizer.id, "hyper_parameters": hyper_dict(hp), "initialised_from": init_origin,
        **filter_entry,
        "pairs": {k: len(v) for k, v in pairs.items()}, "device": str(device),
        "training_seconds": round(timer(), 1), "training": history, "metrics": metrics,
        "convention": convention.as_dict(), "software": software_versions(), "test_pairs": test_rows,
        "evaluated": True,
    }
    card = save_checkpoint(out_dir, payload, card)
    m = card["metrics"]["test"]
    log.info("levels written to %s: test mean level Dice %.3f, sharp stratum accuracy %.3f (classic %.3f)", out_dir,
             m["dice"]["mean_level"], m["robust_sharp_vs_soft_reference"]["five_class_accuracy"],
             m["classic_sharp_vs_soft_reference"]["five_class_accuracy"])
    return card


def train_segmenter_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                        model: str, out_dir: Path) -> dict:
    """The segmentation scorer named by its training folder: 'unetpp' / 'unet' (vessel segmentation), 'levels'
    (calcification levels), 'lstm' (2.5D conv-LSTM) or 'patch3d' (3D patch U-Net)."""
    args = (layout, root, labels_dir, config, localizer_dir)
    if model in ("unetpp", "unet"):
        return train_vessel_run(*args, model, out_dir)
    runs = {"levels": train_levels_run, "lstm": train_lstm_run, "patch3d": train_patch3d_run}
    if model not in runs:
        raise ValueError(f"no training for segmentation scorer {model!r}; use unetpp, unet, {', '.join(runs)}")
    return runs[model](*args, out_dir)
