"""What a score means at the tube voltage it was acquired with.

The Agatston convention (Agatston et al., J Am Coll Cardiol 1990) fixes its 130 HU threshold and its density weights
(130, 200, 300, 400 HU) for 120 kVp. Calcium attenuates less at higher tube voltage, so the same plaque reads lower
in HU at 140 kVp: fewer voxels pass 130 HU and peaks fall into lower weight bands, and scores at 140 kVp run lower
than at 120 kVp (phantom and patient studies report on the order of 10-25 % lower totals; e.g. Nakazato et al.,
J Cardiovasc Comput Tomogr 2009; Willemink et al., Eur Radiol 2014). NLST acquired at 120 and 140 kVp. cacflow applies
no kVp correction (none is standard); it records the kVp on every score row and flags every scan not acquired at
the reference voltage, so analyses can stratify or adjust by it.
"""

from __future__ import annotations

import math

#: The tube voltage (kVp) the Agatston threshold and weights are defined at.
REFERENCE_KVP = 120.0


def kvp_note(kvp: float | None) -> str | None:
    """A note for a score acquired at ``kvp``: None at the reference 120 kVp (within 0.5 kVp), a warning otherwise,
    including an unknown tube voltage."""
    if kvp is None or (isinstance(kvp, float) and math.isnan(kvp)):
        return "tube voltage unknown: the Agatston threshold (130 HU) and weights are defined at 120 kVp"
    if abs(float(kvp) - REFERENCE_KVP) <= 0.5:
        return None
    direction = "lower" if kvp > REFERENCE_KVP else "higher"
    return (f"acquired at {float(kvp):g} kVp: the Agatston threshold (130 HU) and weights are defined at 120 kVp; "
            f"calcium reads {direction} in HU, so this score tends to be {direction} than at 120 kVp (no correction "
            "applied)")
