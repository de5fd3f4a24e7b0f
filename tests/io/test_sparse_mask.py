"""Sparse label-map text: exact round trip, compact for calcium-sized masks, clear errors for what it cannot hold."""

from __future__ import annotations

import numpy as np
import pytest

from cacflow.io.sparse_mask import decode_mask, encode_box_mask, encode_mask


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


def test_box_encoding_is_the_whole_map_encoding():
    rng = np.random.default_rng(1)
    labels = np.zeros((20, 30, 40), dtype=np.uint8)
    box = (3, 17, 5, 21, 11, 37)
    block = rng.integers(0, 5, (14, 16, 26)).astype(np.uint8) * (rng.random((14, 16, 26)) < 0.05)
    labels[3:17, 5:21, 11:37] = block
    text = encode_box_mask(block, box, labels.shape)
    assert text == encode_mask(labels)
    np.testing.assert_array_equal(decode_mask(text), labels)
    assert encode_box_mask(np.zeros((0, 16, 26), np.uint8), (3, 3, 5, 21, 11, 37), labels.shape) == \
        encode_mask(np.zeros_like(labels))


@pytest.mark.parametrize("box", [(3, 17, 5, 21, 11, 36), (-1, 13, 5, 21, 11, 37), (10, 24, 5, 21, 11, 37)])
def test_box_encoding_refuses_a_block_that_does_not_fit(box):
    with pytest.raises(ValueError, match="does not fill box"):
        encode_box_mask(np.zeros((14, 16, 26), np.uint8), box, (20, 30, 40))
