"""The lesion filter: lesion features, the spurious rule, the k-nearest share and the removal, on hand-made boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cacflow.models.lesion_filter import (
    FEATURES,
    LesionFilter,
    is_spurious,
    lesion_features,
    nearest_share,
)


def _box() -> tuple[np.ndarray, np.ndarray]:
    """A 4 x 4 x 4 box with two lesions: A, two voxels at the front-top-right corner (calcium probabilities 0.9 and
    0.7), and B, one voxel at the opposite corner (0.6)."""
    calcium = np.zeros((4, 4, 4), bool)
    calcium[0, 0, 0] = calcium[0, 0, 1] = True  # A
    calcium[3, 3, 3] = True  # B
    return calcium, np.array([0.9, 0.7, 0.6])  # np.nonzero order: (0,0,0), (0,0,1), (3,3,3)


def test_lesion_features_by_hand():
    calcium, probability = _box()
    components, features = lesion_features(calcium, probability)
    assert components.max() == 2 and components[0, 0, 0] == components[0, 0, 1] == 1 and components[3, 3, 3] == 2
    # box positions: 2 (i + 0.5) / 4 - 1 -> -0.75, -0.25, 0.25, 0.75
    np.testing.assert_allclose(features, [[-0.75, -0.75, -0.5, 0.8], [0.75, 0.75, 0.75, 0.6]], atol=1e-6)
    assert len(FEATURES) == features.shape[1] == 4


def test_spurious_means_under_half_on_the_reference():
    calcium, _ = _box()
    components, _ = lesion_features(calcium, np.ones(3))
    reference = np.zeros((4, 4, 4), np.uint8)
    reference[0, 0, 1] = 2  # half of A on reference calcium: not spurious; B off it: spurious
    np.testing.assert_array_equal(is_spurious(components, 2, reference), [False, True])
    np.testing.assert_array_equal(is_spurious(components, 2, np.zeros_like(reference)), [True, True])


def _filter(threshold: float = 0.5) -> LesionFilter:
    # training lesions on a line along x: two spurious near x = 0.9, three coronary near x = -0.9
    features = np.array([[0, 0, 0.9, 0.7], [0, 0, 0.8, 0.7], [0, 0, -0.9, 0.8], [0, 0, -0.8, 0.8],
                         [0, 0, -0.7, 0.8]], np.float32)
    return LesionFilter(features, np.array([True, True, False, False, False]), 3, threshold)


def test_spurious_share_of_the_k_nearest_by_hand():
    f = _filter()
    # at x = 0.85 the nearest three are the two spurious and the coronary at -0.7: share 2/3
    # at x = -0.85: the three coronary: 0; at x = 0 (equidistant 0.7 and 0.8 from either side): the coronary
    # at -0.7 (0.7 away), then spurious 0.8 and coronary -0.8 (both 0.8 away; the first stored wins): 1/3
    share = f.spurious_share(np.array([[0, 0, 0.85, 0.7], [0, 0, -0.85, 0.8], [0, 0, 0.0, 0.7]]))
    np.testing.assert_allclose(share, [2 / 3, 0.0, 1 / 3])
    # fewer training lesions than k: all of them
    small = LesionFilter(f.features[:2], f.spurious[:2], 5, 0.5)
    np.testing.assert_allclose(small.spurious_share(np.zeros((1, 4))), [1.0])
    empty = LesionFilter(np.zeros((0, 4), np.float32), np.zeros(0, bool), 3, 0.5)
    np.testing.assert_allclose(empty.spurious_share(np.zeros((2, 4))), [0.0, 0.0])


def test_kept_calcium_removes_the_rejected_lesions_whole():
    # lesion A sits at x -0.5 (near the coronary training lesions), B at x 0.75 (near the spurious ones)
    calcium, probability = _box()
    f = _filter(threshold=0.6)
    kept = f.kept_calcium(calcium, probability)
    assert kept[0, 0, 0] and kept[0, 0, 1] and not kept[3, 3, 3] and kept.sum() == 2
    # B's share is 2/3: kept at a threshold above it, and at infinity nothing is removed
    assert f.kept_calcium(calcium, probability, threshold=0.7).sum() == 3
    assert f.kept_calcium(calcium, probability, threshold=math.inf).sum() == 3
    assert not f.kept_calcium(np.zeros((2, 2, 2), bool), np.zeros(0)).any()


def test_payload_round_trip_is_weights_only_loadable(tmp_path):
    f = _filter(0.8)
    path = tmp_path / "p.pt"
    torch.save({"lesion_filter": f.to_payload()}, path)
    back = LesionFilter.from_payload(torch.load(path, weights_only=True)["lesion_filter"])
    np.testing.assert_array_equal(back.features, f.features)
    np.testing.assert_array_equal(back.spurious, f.spurious)
    assert (back.k, back.threshold) == (3, pytest.approx(0.8))


def test_share_is_the_same_in_blocks_of_queries():
    rng = np.random.default_rng(0)
    f = LesionFilter(rng.uniform(-1, 1, (50, 4)).astype(np.float32), rng.random(50) < 0.3, 7, 0.5)
    queries = rng.uniform(-1, 1, (600, 4))  # more than one block
    np.testing.assert_array_equal(f.spurious_share(queries),
                                  np.concatenate([f.spurious_share(queries[i:i + 1]) for i in range(600)]))


def _stable_sort_share(f: LesionFilter, queries: np.ndarray) -> np.ndarray:
    """The definition, written out: sort every training lesion by squared distance (stable), take the first k."""
    d2 = ((np.asarray(queries, np.float64)[:, None, :] - f.features.astype(np.float64)[None]) ** 2).sum(axis=2)
    return f.spurious[np.argsort(d2, axis=1, kind="stable")[:, :min(f.k, len(f.features))]].mean(axis=1)


def test_share_is_the_stable_sorts_also_with_ties_at_the_kth_neighbour():
    rng = np.random.default_rng(4)
    for _ in range(100):  # features on a coarse lattice: many equal distances, duplicates, k above and below n
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 20))
        f = LesionFilter((rng.integers(0, 3, (n, 4)) / 2).astype(np.float32), rng.random(n) < 0.4, k, 0.5)
        queries = rng.integers(0, 3, (30, 4)) / 2
        np.testing.assert_array_equal(f.spurious_share(queries), _stable_sort_share(f, queries))
    f = LesionFilter(rng.uniform(-1, 1, (3000, 4)).astype(np.float32), rng.random(3000) < 0.5, 15, 0.5)
    queries = np.concatenate([rng.uniform(-1, 1, (200, 4)), f.features[:50]])  # continuous, and exact duplicates
    np.testing.assert_array_equal(f.spurious_share(queries), _stable_sort_share(f, queries))


def test_nearest_share_takes_the_lower_index_among_ties():
    d2 = np.array([[1.0, 0.0, 1.0, 1.0, 2.0]])
    flag = np.array([True, False, False, True, True])
    # k = 2: column 1 (0.0), then the first of the three tied at 1.0 (column 0, flagged): 1/2
    np.testing.assert_allclose(nearest_share(d2, flag, 2), [0.5])
    # k = 3: columns 1, 0, 2: 1/3; k = 4 adds column 3: 2/4
    np.testing.assert_allclose(nearest_share(d2, flag, 3), [1 / 3])
    np.testing.assert_allclose(nearest_share(d2, flag, 4), [0.5])
