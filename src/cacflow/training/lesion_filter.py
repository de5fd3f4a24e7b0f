"""Fitting a segmentation scorer's lesion filter (:mod:`cacflow.models.lesion_filter`) after its network.

The network predicts its own training boxes; each predicted lesion is stored with its features and whether it is
spurious (fewer than half of its voxels on reference calcium). The threshold on the spurious share of a lesion's
nearest training lesions is chosen on the validation scans (:func:`choose_threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cacflow.models.lesion_filter import FEATURES, is_spurious, lesion_features
from cacflow.training.common import best_by_strata

#: Thresholds of the spurious share tried on the validation scans (None: no lesion removed).
LESION_FILTER_THRESHOLDS: tuple[float | None, ...] = (None, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def box_lesions(calcium: np.ndarray, calcium_probability: np.ndarray, reference: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 4) float32 and spurious flags (n,) of the predicted lesions of one box: ``calcium`` (bool
    (z, y, x)), the network's calcium probability at its voxels (``np.nonzero`` order), ``reference`` calcium
    (> 0, same shape)."""
    components, features = lesion_features(calcium, calcium_probability)
    return features.astype(np.float32), is_spurious(components, len(features), reference)


def stack_lesions(lesions: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The boxes' lesions of :func:`box_lesions` in one features array (n, 4) and one flag array (n,)."""
    features = [np.zeros((0, len(FEATURES)), np.float32)] + [f for f, _ in lesions]
    spurious = [np.zeros(0, bool)] + [s for _, s in lesions]
    return np.concatenate(features), np.concatenate(spurious)


def choose_threshold(evaluate: Callable[[float], dict],
                     candidates: tuple[float | None, ...] = LESION_FILTER_THRESHOLDS
                     ) -> tuple[float | None, list[dict]]:
    """The threshold whose validation figures are best: ``evaluate(threshold)`` gives them (at least
    ``five_class_kappa`` and ``five_class_accuracy``; ``math.inf`` for no filter). Best is the highest five-class κ,
    then accuracy; among equals the candidate removing the fewest lesions (no filter first, then the highest
    threshold). Returns the threshold (None: no filter) and one row per candidate for the model card."""
    rows = [{"threshold": t, **evaluate(math.inf if t is None else t)} for t in candidates]
    best = best_by_strata(rows, lambda row: 2.0 if row["threshold"] is None else row["threshold"])
    return best["threshold"], rows
