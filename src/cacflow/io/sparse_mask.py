"""Label maps that are almost all background, as short text: the inference stage stores predicted calcium masks
in its table rows this way (a few hundred bytes per scan instead of a volume).

Format: base64 of a compressed ``.npz`` with ``shape`` (z, y, x), ``index`` (flat C-order indices of the non-zero
voxels, uint32, ascending) and ``value`` (their labels, uint8).
"""

from __future__ import annotations

import base64
import io

import numpy as np


def encode_mask(labels: np.ndarray) -> str:
    """Text form of an integer label map (z, y, x) with values 0..255."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"label map must be 3-D with fewer than 2**32 voxels, got shape {labels.shape}")
    return encode_box_mask(labels, (0, labels.shape[0], 0, labels.shape[1], 0, labels.shape[2]), labels.shape)


def encode_box_mask(block: np.ndarray, box_zyx: tuple[int, int, int, int, int, int],
                    shape: tuple[int, int, int]) -> str:
    """:func:`encode_mask` of the label map of ``shape`` (z, y, x) that holds ``block`` inside ``box_zyx``
    (z0, z1, y0, y1, x0, x1; voxel indices, end exclusive) and 0 elsewhere, without building or scanning that
    whole map (a heart box is a few percent of a scan's voxels)."""
    block = np.asarray(block)
    z0, z1, y0, y1, x0, x1 = (int(v) for v in box_zyx)
    if len(shape) != 3 or int(np.prod(shape)) >= 2**32:
        raise ValueError(f"label map must be 3-D with fewer than 2**32 voxels, got shape {tuple(shape)}")
    if block.shape != (z1 - z0, y1 - y0, x1 - x0) or min(z0, y0, x0) < 0 or \
            any(e > n for e, n in zip((z1, y1, x1), shape)):
        raise ValueError(f"block of shape {block.shape} does not fill box {tuple(box_zyx)} inside a map of shape "
                         f"{tuple(shape)}")
    if block.size and (block.min() < 0 or block.max() > 255):
        raise ValueError("label values must lie in 0..255")
    zz, yy, xx = np.nonzero(block)  # C order of the block: ascending in the whole map too
    buf = io.BytesIO()
    np.savez_compressed(buf, shape=np.asarray(shape, dtype=np.int64),
                        index=np.ravel_multi_index((zz + z0, yy + y0, xx + x0), tuple(shape)).astype(np.uint32),
                        value=block[zz, yy, xx].astype(np.uint8))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_mask(text: str) -> np.ndarray:
    """The label map (z, y, x; uint8) of :func:`encode_mask`'s text."""
    with np.load(io.BytesIO(base64.b64decode(text.encode("ascii"))), allow_pickle=False) as z:
        shape = tuple(int(v) for v in z["shape"])
        labels = np.zeros(int(np.prod(shape)), dtype=np.uint8)
        labels[z["index"]] = z["value"]
    return labels.reshape(shape)
