"""Training runs as the workflow calls them: labelled cohort in, model directory (weights + model card) out.

What a run reads first is in :mod:`cacflow.training.inputs`, its card's metrics and method sentences in
:mod:`cacflow.training.cards`, what it fits after the network in :mod:`cacflow.training.postprocessing`; the runs on
an already trained checkpoint (``cacflow`` maintenance commands) are in :mod:`cacflow.training.maintenance`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cacflow.models.checkpoint import save_checkpoint, software_versions
from cacflow.models.localizer import CANVAS_MM, CANVAS_SIZE, PLANES
from cacflow.models.mask_scorers import mask_scorer_from_payload
from cacflow.models.predict import HeartLocalizer, SliceRegressor, pick_device
from cacflow.models.regression import TARGET_TRANSFORM
from cacflow.pipeline.layout import CohortLayout
from cacflow.training import calcium_levels as tcl
from cacflow.training import conv_lstm as tlstm
from cacflow.training import localizer as tl
from cacflow.training import patch_unet3d as tp3
from cacflow.training import regressor as tr
from cacflow.training import segmentation as ts
from cacflow.training.cards import (
    evaluate_level_model,
    evaluate_mask_scorer,
    level_filter_method,
    regression_metrics,
    regressor_test_rows,
    trained_on,
    vessel_method,
)
from cacflow.training.common import Timer, hyper_dict, seed_everything
from cacflow.training.data import SPLITS
from cacflow.training.inputs import cohort_setup, heart_box_crops, hyper_from_config, split_crops
from cacflow.training.postprocessing import level_lesion_filter, vessel_lesion_filter

log = logging.getLogger(__name__)


def train_localizer_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, out_dir: Path) -> dict:
    """Train the three plane networks, evaluate boxes on validation and test series, write weights + card."""
    timer = Timer()
    series, grid, convention, info = cohort_setup(layout, root, labels_dir, config)
    hp = hyper_from_config(tl.LocalizerHyper, config["training"]["localizer"])
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
        "trained_on": trained_on(layout, config),
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


def train_regressor_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                        out_dir: Path) -> dict:
    """Train the regression ConvNet through its stages (each continuing from the one before), choose the
    per-slice floor on the validation scans, evaluate, write weights + card."""
    timer = Timer()
    series, grid, convention, info = cohort_setup(layout, root, labels_dir, config)
    hp, state, init_origin = tr.initial_state(hyper_from_config(tr.RegressorHyper, config["training"]["regressor"]))
    device = pick_device(config["training"]["device"])
    localizer = HeartLocalizer.load(localizer_dir, device)
    crops = split_crops(series, localizer, grid, convention, hp.jitter_mm)
    log.info("regressor: crops loaded in %.0f s (%s)", timer(), {k: len(v) for k, v in crops.items()})
    stages = []
    for stage in hp.stages:
        rng = seed_everything(hp.seed)
        net, history = tr.train_stage(crops["train"], crops["val"], hp, stage, device, rng, convention, state)
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        stages.append({**asdict(stage), **history})
    # the validation and test scans are predicted once: the floor is chosen on, and the metrics computed from,
    # these raw outputs
    regressor = SliceRegressor(net, {"kind": "regressor", "weights_sha256": "unsaved"}, device)
    raws = {k: tr.raw_predictions(regressor, crops[k]) for k in ("val", "test")}
    floor, floor_table = tr.choose_slice_floor(
        raws["val"], [r.spacing_zyx[0] for r in crops["val"]],
        np.array([r.reference_agatston for r in crops["val"]]), convention)
    log.info("regressor: per-slice floor %.2f AU chosen on the validation scans", floor)
    payload = {"arch": {"widths": list(hp.widths), "hidden": list(hp.hidden)}, "transform": TARGET_TRANSFORM,
               "slice_floor_agatston": floor, "state": {k: v.cpu() for k, v in net.state_dict().items()}}
    save_checkpoint(out_dir, payload, {"kind": "regressor", "evaluated": False, "target_transform": TARGET_TRANSFORM,
                                       **info})
    metrics = {k: regression_metrics(tr.scan_totals(raws[k], crops[k], convention, floor), crops[k])
               for k in ("val", "test")}
    card = {
        "kind": "regressor", "name": "cacflow regression ConvNet (per-slice Agatston and volume)",
        "trained_on": trained_on(layout, config),
        "method": "de Vos et al. (seed 003): axial slices of the scoring grid cropped to the heart box, zero-padded "
                  "to 256 x 256; six conv-BN-ELU-maxpool layers, two FC layers (voxel size appended), outputs "
                  "Agatston and volume per slice; scan score = sum over slices, a slice counting 0 below the "
                  "larger of the convention's minimum and a per-slice floor chosen on the validation scans",
        "target_transform": TARGET_TRANSFORM, **info, "localizer": localizer.id,
        "hyper_parameters": hyper_dict(hp), "device": str(device), "training_seconds": round(timer(), 1),
        "initialised_from": init_origin,
        "training": {"stages": stages},
        "slice_floor": {"agatston": floor, "chosen_on": "val", "candidates": floor_table},
        "metrics": metrics, "convention": convention.as_dict(), "software": software_versions(),
        "test_series": regressor_test_rows(crops["test"]),
    }
    card = save_checkpoint(out_dir, {**payload}, {**card, "evaluated": True})
    log.info("regressor written to %s: test ICC %.3f", out_dir,
             card["metrics"]["test"]["agatston"]["icc"])
    return card


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


def _train_mask_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                    spec: MaskModelSpec, out_dir: Path) -> dict:
    """Train a segmentation scorer on the labelled series' heart-box crops, evaluate it on the validation and test
    scans as the pipeline predicts (calcium Dice, lesion detection, ICC and strata), write weights + card."""
    timer = Timer()
    series, grid, convention, info = cohort_setup(layout, root, labels_dir, config)
    device = pick_device(config["training"]["device"])
    localizer, crops = heart_box_crops(series, localizer_dir, device, grid, convention)
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
    metrics, test_rows = evaluate_mask_scorer(scorer, crops, convention)
    card = {
        "kind": spec.kind, **spec.card_fields, "name": spec.name, "trained_on": trained_on(layout, config),
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


def train_vessel_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                     arch: str, out_dir: Path) -> dict:
    """Train a vessel-specific calcium segmentation ConvNet (``arch`` 'unetpp' or 'unet'), evaluate on the
    validation and test scans, write weights + card."""
    section, defaults = ts.VESSEL_SECTIONS[arch]
    hp = hyper_from_config(ts.VesselSegHyper, config["training"][section], defaults)
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
        post_fit=lambda payload, crops, conv, device: vessel_lesion_filter(payload, crops, conv, device, hp))
    return _train_mask_run(layout, root, labels_dir, config, localizer_dir, spec, out_dir)


def train_lstm_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                   out_dir: Path) -> dict:
    """Train the 2.5D conv-LSTM (seed 002), evaluate it, time it against the 2-D U-Net on the CPU, write it."""
    hp = hyper_from_config(tlstm.LSTMHyper, config["training"]["conv_lstm"])
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
    hp = hyper_from_config(tp3.PatchHyper, config["training"]["patch_unet3d"])
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


def train_levels_run(layout: CohortLayout, root: Path, labels_dir: Path, config: dict, localizer_dir: Path,
                     out_dir: Path) -> dict:
    """Train the kernel-robust calcification level model on the soft/sharp pairs, evaluate on the validation and
    test pairs (sharp series against the soft reference, classic baseline beside it), write weights + card."""
    timer = Timer()
    series, grid, convention, info = cohort_setup(layout, root, labels_dir, config)
    hp, init_state, init_origin = tcl.initial_state(
        hyper_from_config(tcl.LevelHyper, config["training"]["calcium_levels"]))
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
    payload, filter_entry = level_lesion_filter(payload, pairs, convention, device, hp.lesion_filter_k)
    save_checkpoint(out_dir, payload, {"kind": "calcium_levels", "evaluated": False, **info})
    metrics, test_rows = evaluate_level_model(payload, pairs, convention, device)
    card = {
        "kind": "calcium_levels", "name": f"cacflow kernel-robust calcification levels ({hp.backbone})",
        "trained_on": trained_on(layout, config),
        "method": "seed 000 (robust Agatston score): per-pixel calcification level 0-4 predicted from a slice of "
                  "any kernel, trained on sharp (and soft) slices against the soft reconstruction's levels inside "
                  "the reference labels; loss cross-entropy + Dice + information gain; score: 2-D components of "
                  "level >= 1, area >= 1 mm2, density factor = highest level of the component, slice factor "
                  "increment / 3 mm (cacflow.scoring.robust_agatston)" + level_filter_method(hp),
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
