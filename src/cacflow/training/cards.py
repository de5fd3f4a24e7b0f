"""What a run writes in its model card beside the weights: where its data came from (:func:`trained_on`), its method
sentences, and its validation and test metrics with the test split's per-scan rows, computed as the pipeline
predicts (:func:`regression_metrics`, :func:`evaluate_mask_scorer`, :func:`evaluate_level_model`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from cacflow.evaluation.agreement import agreement, agreement_table
from cacflow.models.mask_scorers import mask_scorer_from_payload
from cacflow.pipeline.layout import CohortLayout
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.strata import SCHEMES
from cacflow.training import calcium_levels as tcl
from cacflow.training import regressor as tr
from cacflow.training import segmentation as ts


def trained_on(layout: CohortLayout, config: dict) -> str:
    """The model card's ``trained_on``: 'synthetic' for a generated training cohort."""
    return "synthetic" if "synthetic" in config["cohorts"].get(layout.cohort, {}) else "labelled cohort"


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


def level_filter_method(hp: tcl.LevelHyper) -> str:
    """The level model card's ``method`` sentence on its lesion filter."""
    return (f"; a lesion (3-D component of level >= 1) is set to level 0 when at least a threshold share (chosen "
            f"on validation, see lesion_filter) of its {hp.lesion_filter_k} nearest training lesions by box place "
            "and mean calcium probability were not coronary (cacflow.models.lesion_filter)"
            if hp.lesion_filter_k else "")


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


def regressor_test_rows(crops: list[tr.CropRecord]) -> list[dict]:
    """The regressor card's per-scan test rows."""
    return [{"series_key": r.series.series_key, "kernel_class": r.series.kernel_class, "kvp": r.series.kvp,
             "reference_agatston": r.reference_agatston, "box": r.box_method} for r in crops]


def val_test_metrics(evaluate: Callable, summarise: Callable) -> tuple[dict, list[dict]]:
    """Metrics of the validation and test splits and the test split's per-scan rows: ``evaluate(split)`` gives
    (pooled counts, rows), ``summarise(counts, rows)`` the split's metrics."""
    metrics, test_rows = {}, []
    for k in ("val", "test"):
        counts, rows = evaluate(k)
        metrics[k] = summarise(counts, rows)
        test_rows = rows if k == "test" else test_rows
    return metrics, test_rows


def evaluate_mask_scorer(scorer, crops: dict, convention: AgatstonConvention) -> tuple[dict, list[dict]]:
    """Validation and test metrics of a segmentation scorer and its per-scan test rows."""
    return val_test_metrics(lambda k: ts.evaluate_records(scorer, crops[k], convention), ts.segmentation_metrics)


def evaluate_level_model(payload: dict, pairs: dict, convention: AgatstonConvention, device
                         ) -> tuple[dict, list[dict]]:
    """Validation and test metrics of a level model's payload (built as the pipeline loads it) and its test rows."""
    model = mask_scorer_from_payload(payload, {"kind": "calcium_levels", "weights_sha256": "unsaved"}, device)
    return val_test_metrics(lambda k: tcl.evaluate_pairs(model, pairs[k], convention), tcl.level_metrics)
