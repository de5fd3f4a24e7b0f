"""HU arrays as stored: every volume the pipeline writes (native and scoring grid) holds int16 HU.

:func:`hu_to_int16` is the one conversion from computed HU (rescaled DICOM pixels, resampled slab means) to the
stored type, so that a converted volume and a resampled one round the same way.
"""

from __future__ import annotations

import numpy as np


def hu_to_int16(hu: np.ndarray) -> np.ndarray:
    """Round HU to integers, half to even (``np.rint``: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2), and clip to the int16
    range [-32768, 32767]; nothing else is clipped (values below -1024 HU are kept)."""
    return np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
