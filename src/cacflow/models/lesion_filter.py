"""Second-stage rejection of predicted calcium lesions that are not coronary: k nearest training lesions.

Why: the vessel networks read 96-pixel windows of the heart box and call some non-coronary calcium coronary, most
of it at two recurring places of the box: the aortic root (aortic valve calcium: upper box, middle rows, patient's
right) and the descending aorta's wall (lower box, posterior, patient's left). On the shipped U-Net++'s test split
these false lesions put two of the four calcium-free scans and most 1-10 scans in higher strata. A lesion's place
in the heart box and the network's own calcium probability over it separate them well (on the validation lesions
of the shipped U-Net++: area under the ROC curve 0.985, against 0.95 for the place alone), as the position features of
classic coronary-calcium classifiers do.

A lesion is a 26-connected 3-D component of the predicted calcium mask of one nominal heart box. It is described
by :data:`FEATURES`: its voxels' mean place in the box along z, y and x (-1..1,
:func:`cacflow.models.vessel_prior.box_positions`; rows anterior to posterior, columns right to left of the
patient, LPS) and its voxels' mean network calcium probability (1 - P(background), 0..1). The four are on
comparable scales, so plain Euclidean distance is used.

The filter stores the lesions the network predicted on its own training boxes, each marked spurious when fewer
than half of its voxels lie on reference calcium labels (:func:`is_spurious`). A new lesion's *spurious share* is
the fraction of its ``k`` nearest training lesions that were spurious; the lesion is removed when the share is at
least ``threshold`` (chosen on the validation scans by the training run). Removed voxels become background; the
remaining lesions keep their vessels as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from cacflow.models.vessel_prior import box_positions

#: Lesion features, in the order of :attr:`LesionFilter.features`' columns.
FEATURES: tuple[str, ...] = ("z", "y", "x", "calcium_probability")
_CONNECTIVITY_3D = np.ones((3, 3, 3), dtype=bool)
#: Query lesions per exact distance block (a noisy scan may have thousands of candidate lesions).
_QUERY_CHUNK = 256


def lesion_components(calcium: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components (int32 labels 1..n, 0 off calcium) of a box's calcium mask (bool (z, y, x)) and n."""
    components, n = ndimage.label(calcium, _CONNECTIVITY_3D)
    return components, int(n)


def lesion_features(calcium: np.ndarray, calcium_probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-lesion features of a nominal heart box.

    ``calcium``: predicted calcium (bool (z, y, x)); ``calcium_probability``: the network's calcium probability
    (m,) at its voxels in ``np.nonzero`` order. Returns the component labels (z, y, x) and the features (n, 4)
    float64 of lesions 1..n in :data:`FEATURES` order."""
    components, n = lesion_components(calcium)
    index = np.nonzero(calcium)
    ids = components[index]
    size = np.bincount(ids, minlength=n + 1)[1:].astype(np.float64)
    columns = [box_positions(index, calcium.shape)[:, k] for k in range(3)] + [np.asarray(calcium_probability)]
    features = np.stack([np.bincount(ids, c.astype(np.float64), minlength=n + 1)[1:] for c in columns], axis=1)
    return components, features / np.maximum(size, 1.0)[:, None]


def is_spurious(components: np.ndarray, n: int, reference: np.ndarray) -> np.ndarray:
    """(n,) bool: lesion i + 1 has fewer than half of its voxels on reference calcium (``reference`` > 0, same
    shape as ``components``)."""
    inside = components > 0
    ids = components[inside]
    size = np.bincount(ids, minlength=n + 1)[1:]
    on_reference = np.bincount(ids, (reference[inside] > 0).astype(np.float64), minlength=n + 1)[1:]
    return on_reference < 0.5 * size


def nearest_share(d2: np.ndarray, flag: np.ndarray, k: int) -> np.ndarray:
    """(m,) share of ``flag`` (n,) bool among the ``k`` smallest entries of each row of the distances ``d2``
    (m, n), ties going to the lower column index: the order a stable sort gives, in linear time per row (a
    partition instead of a sort)."""
    kth = np.partition(d2, k - 1, axis=1)[:, k - 1:k]
    closer = d2 < kth
    tied = d2 == kth
    room = k - closer.sum(axis=1, keepdims=True)
    chosen = closer | (tied & (np.cumsum(tied, axis=1) <= room))
    return (chosen & flag[None, :]).sum(axis=1) / k


@dataclass(frozen=True)
class LesionFilter:
    """The network's training lesions (features (n, 4), spurious (n,)), the neighbour count and the threshold."""

    features: np.ndarray
    spurious: np.ndarray
    k: int
    threshold: float

    def spurious_share(self, features: np.ndarray) -> np.ndarray:
        """(m,) share of spurious lesions among the ``k`` nearest training lesions of each query lesion (m, 4);
        ties in distance go to the training lesion stored first. Without training lesions: 0 (keep everything).

        A k-d tree finds the k + 1 nearest; where the k-th and the (k + 1)-th are apart, the k nearest are one set
        whatever the order and the share is read off it. Rows with a tie at that boundary (within rounding) are
        recomputed from exact squared distances by :func:`nearest_share`, so the result is the stable sort's."""
        features = np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURES))
        n = len(self.features)
        if not n or not len(features):
            return np.zeros(len(features))
        k = min(self.k, n)
        distance, index = self._tree.query(features, k=np.arange(1, min(k + 1, n) + 1))
        share = self.spurious[index[:, :k]].mean(axis=1)
        if n > k:
            tied = np.flatnonzero(distance[:, k] - distance[:, k - 1] <= 1e-9 * (1.0 + distance[:, k]))
            train = self.features.astype(np.float64)
            for i in range(0, len(tied), _QUERY_CHUNK):  # bounded memory for scans with many tied lesions
                rows = tied[i:i + _QUERY_CHUNK]
                d2 = ((features[rows, None, :] - train[None, :, :]) ** 2).sum(axis=2)
                share[rows] = nearest_share(d2, self.spurious, k)
        return share

    @cached_property
    def _tree(self) -> cKDTree:
        """k-d tree of the training lesions' features (float64), built on first use."""
        return cKDTree(self.features.astype(np.float64))

    def kept_calcium(self, calcium: np.ndarray, calcium_probability: np.ndarray,
                     threshold: float | None = None) -> np.ndarray:
        """The calcium mask (bool (z, y, x)) without the lesions whose spurious share is at least ``threshold``
        (the filter's own when None)."""
        threshold = self.threshold if threshold is None else threshold
        components, features = lesion_features(calcium, calcium_probability)
        drop = np.concatenate([[False], self.spurious_share(features) >= threshold])
        return calcium & ~drop[components]

    def to_payload(self) -> dict:
        """Checkpoint entries (tensors and numbers: loadable with ``weights_only``)."""
        return {"features": torch.from_numpy(np.ascontiguousarray(self.features, dtype=np.float32)),
                "spurious": torch.from_numpy(np.ascontiguousarray(self.spurious, dtype=bool)),
                "k": int(self.k), "threshold": float(self.threshold)}

    @classmethod
    def from_payload(cls, entry: dict) -> LesionFilter:
        return cls(entry["features"].numpy().astype(np.float32), entry["spurious"].numpy().astype(bool),
                   int(entry["k"]), float(entry["threshold"]))
