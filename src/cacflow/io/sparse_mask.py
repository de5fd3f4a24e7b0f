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
    if labels.ndim != 3 or labels.size >= 2**32:
        raise ValueError(f"label map must be 3-D with fewer than 2**32 voxels, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("label values must lie in 0..255")
    flat = labels.ravel()
    index = np.flatnonzero(flat).astype(np.uint32)
    buf = io.BytesIO()
    np.savez_compressed(buf, shape=np.asarray(labels.shape, dtype=np.int64), index=index,
                        value=flat[index].astype(np.uint8))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_mask(text: str) -> np.ndarray:
    """The label map (z, y, x; uint8) of :func:`encode_mask`'s text."""
    with np.load(io.BytesIO(base64.b64decode(text.encode("ascii"))), allow_pickle=False) as z:
        shape = tuple(int(v) for v in z["shape"])
        labels = np.zeros(int(np.prod(shape)), dtype=np.uint8)
        labels[z["index"]] = z["value"]
    return labels.reshape(shape)
