"""Sparse label-map text: exact round trip, compact for calcium-sized masks, clear errors for what it cannot hold."""

from __future__ import annotations

import numpy as np
import pytest

from cacflow.io.sparse_mask import decode_mask, encode_mask


def test_round_trip_is_exact_and_compact():
    rng = np.random.default_rng(0)
    labels = np.zeros((80, 256, 256), dtype=np.uint8)
    idx = rng.choice(labels.size, 3000, replace=False)
    labels.ravel()[idx] = rng.integers(1, 5, idx.size)
    text = encode_mask(labels)
    back = decode_mask(text)
    assert back.dtype == np.uint8 and back.shape == labels.shape
    np.testing.assert_array_equal(back, labels)
    assert len(text) < 40_000  # 3000 voxels: a few bytes each, not the 5 MB volume


def test_empty_mask_keeps_its_shape():
    back = decode_mask(encode_mask(np.zeros((3, 4, 5), dtype=np.uint8)))
    assert back.shape == (3, 4, 5) and not back.any()


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.full((2, 2, 2), 300, np.int32),
                                 np.full((2, 2, 2), -1, np.int32)])
def test_refuses_what_it_cannot_hold(bad):
    with pytest.raises(ValueError):
        encode_mask(bad)
