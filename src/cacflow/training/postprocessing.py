"""What a segmentation scorer's run fits on its trained network before the evaluation, stored in the checkpoint: the
lesion filter (:mod:`cacflow.models.lesion_filter`; :func:`fit_lesion_filter`, from the lesions and thresholds of
:mod:`cacflow.training.lesion_filter`) and, for a vessel segmenter, the calcium probability chosen together with it
(:func:`vessel_lesion_filter`). Used by the training runs and by the maintenance runs that refit a checkpoint."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from cacflow.models.lesion_filter import FEATURES as LESION_FEATURES
from cacflow.models.lesion_filter import LesionFilter
from cacflow.models.mask_scorers import mask_scorer_from_payload
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.training import calcium_levels as tcl
from cacflow.training import segmentation as ts
from cacflow.training.common import best_by_strata

log = logging.getLogger(__name__)


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


def vessel_lesion_filter(payload: dict, crops: dict, convention: AgatstonConvention, device,
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


def level_lesion_filter(payload: dict, pairs: dict, convention: AgatstonConvention, device, k: int
                        ) -> tuple[dict, dict]:
    """:func:`fit_lesion_filter` of a calcification level model on its soft/sharp pairs."""
    return fit_lesion_filter(payload, "calcium_levels", k, device,
                             lambda model: tcl.training_lesions(model, pairs["train"]),
                             lambda model: tcl.choose_lesion_threshold(model, pairs["val"], convention))
