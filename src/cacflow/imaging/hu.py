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


#: The highest lowest value (HU) a CT volume in Hounsfield units can have. Every chest CT holds air outside the body
#: (about -1000 HU) or lung (about -850 HU); a volume whose lowest value lies above -500 HU holds neither, so its
#: numbers are not HU: unsigned stored values 0-4095 without their -1024 HU offset, a mask, a label map or an MR
#: image. A lowest value of exactly -500 HU still counts as HU.
MAX_LOWEST_HU = -500.0


def lowest_is_hu(lowest: float) -> bool:
    """Whether a volume whose smallest value is ``lowest`` can be a CT in HU (``lowest <= MAX_LOWEST_HU``)."""
    return float(lowest) <= MAX_LOWEST_HU
