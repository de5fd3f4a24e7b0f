"""Turning a regression ConvNet's per-slice outputs into a scan score under a scoring convention.

A regression output is never exactly zero, so a rule decides which slices hold countable calcium: a slice
predicted below the smallest contribution one lesion could make under the convention (minimum area x density
weight 1 x slice normalisation factor) counts 0. On the 3 mm / 1.5 mm scoring grid with a 1 mm² minimum area that
is 1 x 1 x 0.5 = 0.5 Agatston units. Pure NumPy: the score stage applies it without loading the networks.

A trained regressor may carry a higher per-slice floor, chosen on its validation scans by the training run
(:func:`cacflow.training.regressor.choose_slice_floor`) because small non-zero outputs on calcium-free slices add up
over a scan: then a slice counts 0 below the larger of the two. The floor is a property of the weights (stored in
the checkpoint, recorded by the inference stage beside the raw outputs), not of the scoring convention.
"""

from __future__ import annotations

import numpy as np

from cacflow.scoring.agatston import AgatstonConvention


def min_slice_agatston(min_area_mm2: float, slice_factor: float) -> float:
    """The smallest Agatston contribution a slice with any calcium can have: one lesion of the minimum area with
    density weight 1, times the slice factor (0.5 on the 3 mm / 1.5 mm grid with 1 mm² minimum area)."""
    return float(min_area_mm2) * 1.0 * float(slice_factor)


def zero_below_minimum(per_slice: np.ndarray, minimum_agatston: float) -> np.ndarray:
    """Per-slice predictions (n, 2) with slices below the smallest possible Agatston contribution set to zero.

    A regression output is never exactly zero; a slice predicted below what one minimum-size lesion would score
    holds no countable calcium, so both its Agatston and volume become 0 (this is what lets the method say "0").
    """
    out = np.array(per_slice, dtype=np.float64, copy=True)
    out[out[:, 0] < minimum_agatston] = 0.0
    return out


def counted_slices(raw_per_slice: np.ndarray, spacing_z_mm: float, convention: AgatstonConvention,
                   floor_agatston: float = 0.0) -> np.ndarray:
    """Raw per-slice predictions (n, 2) [Agatston, volume mm³] on a grid of ``spacing_z_mm`` slice spacing, with
    slices below the convention's smallest possible contribution, or below the model's ``floor_agatston`` where
    that is larger, set to 0 (:func:`zero_below_minimum`)."""
    raw = np.asarray(raw_per_slice, dtype=np.float64).reshape(-1, 2)
    minimum = min_slice_agatston(convention.min_area_mm2, convention.slice_factor(float(spacing_z_mm)))
    return zero_below_minimum(raw, max(minimum, float(floor_agatston)))


def regression_totals(raw_per_slice: np.ndarray, spacing_z_mm: float, convention: AgatstonConvention,
                      floor_agatston: float = 0.0) -> tuple[float, float]:
    """A scan's regression (Agatston, volume mm³): the sums of :func:`counted_slices`."""
    kept = counted_slices(raw_per_slice, spacing_z_mm, convention, floor_agatston)
    return float(kept[:, 0].sum()), float(kept[:, 1].sum())
