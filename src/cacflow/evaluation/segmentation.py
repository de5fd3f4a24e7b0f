"""Voxel and lesion agreement of predicted calcium label maps with reference label maps (seed 001's measures).

Both maps are first reduced to the voxels the scoring library counts (:func:`scored_voxels`: at or above the
threshold, in 2-D components of at least the minimum area), so the figures judge the calcium that enters a score,
not the sub-threshold halo of a hand drawing.

- Calcium Dice: 2|P ∩ R| / (|P| + |R|) over the scored voxels of any vessel, pooled over the scans of a split
  (sums of counts, not a mean of per-scan Dice, so clean scans do not count as perfect or undefined).
- Vessel Dice: the same ratio with a true positive only where the predicted vessel is the reference's,
  2|P ∩ R, same vessel| / (|P| + |R|): 1 only when every calcium voxel is found and given its own vessel (the
  vessel-aware models are selected by it, so a model that finds calcium but not its vessel is not preferred).
- Lesion detection rate per vessel: a reference lesion (a 3-D 26-connected component of one vessel's scored
  voxels) is detected when at least one of its voxels is predicted as calcium of the same vessel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cacflow.scoring.agatston import AgatstonConvention, agatston_score
from cacflow.scoring.masks import CORONARY_KINDS, VESSEL_KINDS
from cacflow.scoring.scan import VESSELS

_CONNECTIVITY_3D = np.ones((3, 3, 3), dtype=bool)


def scored_voxels(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], labels: np.ndarray,
                  convention: AgatstonConvention) -> np.ndarray:
    """``labels`` (z, y, x) restricted to the voxels the scoring library counts (uint8; 0 elsewhere)."""
    labels = np.asarray(labels)
    if not labels.any():
        return np.zeros(labels.shape, dtype=np.uint8)
    res = agatston_score(hu, spacing_zyx_mm, mask=labels, convention=convention)
    return np.where(res.lesion_labels > 0, labels, 0).astype(np.uint8)


@dataclass
class SegmentationCounts:
    """Counts of one or more scans: scored voxels (true/false positive, false negative) and reference lesions
    found per vessel name."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tp_vessel: int = 0  # true positives whose predicted vessel is the reference vessel
    lesions: dict[str, int] = field(default_factory=lambda: {v: 0 for v in VESSELS.values()})
    detected: dict[str, int] = field(default_factory=lambda: {v: 0 for v in VESSELS.values()})

    def add(self, other: SegmentationCounts) -> SegmentationCounts:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tp_vessel += other.tp_vessel
        for v in VESSELS.values():
            self.lesions[v] += other.lesions[v]
            self.detected[v] += other.detected[v]
        return self

    @property
    def dice(self) -> float:
        """Calcium Dice over the pooled counts (1.0 when neither map has any scored voxel)."""
        denom = 2 * self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else 2 * self.tp / denom

    @property
    def vessel_dice(self) -> float:
        """Dice counting a voxel as found only when its vessel is right (1.0 when both maps are empty)."""
        denom = 2 * self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else 2 * self.tp_vessel / denom

    def detection_rate(self) -> dict[str, float | None]:
        """Share of reference lesions detected, per vessel (None for a vessel without reference lesions)."""
        return {v: (self.detected[v] / self.lesions[v] if self.lesions[v] else None) for v in VESSELS.values()}


def compare_masks(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], predicted: np.ndarray,
                  reference: np.ndarray, convention: AgatstonConvention, vessel_aware: bool = True
                  ) -> SegmentationCounts:
    """Counts of one scan: predicted and reference vessel label maps (z, y, x) on the grid of ``hu``.

    ``vessel_aware`` False is for models that mark coronary calcium without a vessel (``predicted`` > 0 is
    calcium): a reference lesion then counts as detected when any of its voxels is predicted as calcium, and the
    rate is still reported per vessel of the reference."""
    pred = scored_voxels(hu, spacing_zyx_mm, predicted, convention)
    ref = scored_voxels(hu, spacing_zyx_mm, reference, convention)
    p, r = pred > 0, ref > 0
    out = SegmentationCounts(tp=int((p & r).sum()), fp=int((p & ~r).sum()), fn=int((~p & r).sum()),
                             tp_vessel=int((r & (pred == ref)).sum()) if vessel_aware else 0)
    for code, name in VESSELS.items():
        comps, n = ndimage.label(ref == code, structure=_CONNECTIVITY_3D)
        if n == 0:
            continue
        hit = np.unique(comps[(comps > 0) & ((pred == code) if vessel_aware else (pred > 0))])
        out.lesions[name] += n
        out.detected[name] += int(hit.size)
    return out


def stored_mask_counts(kind: str, labels: np.ndarray, hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float],
                       reference: np.ndarray, convention: AgatstonConvention) -> SegmentationCounts | None:
    """Counts of a map a segmentation scorer stored for the pipeline (its labels as :mod:`cacflow.scoring.masks`
    defines them per kind) against the reference vessel labels, all (z, y, x) on the grid of ``hu``.

    A vessel map is judged vessel-aware; a coronary map by its coronary label only (label 1; non-coronary calcium is
    not a finding), so its vessel Dice is 0 by construction. A level map returns None: its levels replace HU, so it
    is judged against the soft kernel's levels (the training card, the evaluation's ``kernels.parquet``), not here.
    """
    if kind in VESSEL_KINDS:
        predicted, aware = labels, True
    elif kind in CORONARY_KINDS:
        predicted, aware = (labels == 1).astype(np.uint8), False
    else:
        return None
    # the counts only see voxels of either map, so the bounding box of both gives the same figures, faster
    found = np.nonzero((predicted > 0) | (reference > 0))
    if not found[0].size:
        return SegmentationCounts()
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in found)
    return compare_masks(hu[box], spacing_zyx_mm, predicted[box], reference[box], convention, vessel_aware=aware)
