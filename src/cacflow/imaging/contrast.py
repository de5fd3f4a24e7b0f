"""Intravenous contrast recognised from the image: the heart's blood pool far above unenhanced blood.

A calcium score is only defined on non-contrast CT: iodinated blood (200–500 HU in an arterial phase) reaches the
130 HU threshold, and the coronary lumen then counts as calcium. The header's ContrastBolusAgent is often absent
(the shared real CT angiography carries no contrast tag at all), so the score stage also reads the image.

Unenhanced blood and myocardium measure 30–60 HU (blood 40 ± 10 HU at normal haematocrit; sharp-kernel noise adds
an SD of 30–40 HU but leaves the median in place). In an arterial-phase CT angiography the chambers measure
about 450–490 HU (the shared TotalSegmentator example: heart median 466 HU); a venous-phase chest CT 120–200 HU. The
figure read is the median HU of the voxels between :data:`BLOOD_POOL_RANGE_HU` in the core of the heart's box (its
central half along each axis, where the chambers are), so that fat, lung, dense calcium and metal do not move it.
A scan is contrast enhanced when that median is at least :data:`CONTRAST_BLOOD_POOL_HU`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Median blood-pool HU from which a scan counts as contrast enhanced: 2.5 times the densest unenhanced blood
#: (60 HU), below any arterial (≥ 200 HU) and most venous (≥ 150 HU) phase.
CONTRAST_BLOOD_POOL_HU = 150.0
#: HU range of the voxels the blood-pool median is taken over: soft tissue and blood, enhanced or not; fat (below
#: 0 HU), lung and air are left out, and so are dense calcium, bone cortex and metal (above 800 HU).
BLOOD_POOL_RANGE_HU: tuple[float, float] = (0.0, 800.0)
#: Fewest voxels in range for a reading; a core with fewer (a box in the lung, a tiny box) gives none.
MIN_CORE_VOXELS = 200


@dataclass(frozen=True)
class BloodPool:
    """The blood-pool reading of one scan: median HU in the heart box's core and the voxels it was taken over."""

    median_hu: float
    voxels: int

    @property
    def contrast_enhanced(self) -> bool:
        """Whether the median reaches :data:`CONTRAST_BLOOD_POOL_HU`."""
        return self.median_hu >= CONTRAST_BLOOD_POOL_HU


def core_box(box_zyx: tuple[int, int, int, int, int, int]) -> tuple[int, int, int, int, int, int]:
    """The central half of a box (z0, z1, y0, y1, x0, x1; voxel indices, end exclusive) along each axis; each side at
    least one voxel."""
    out = []
    for lo, hi in zip(box_zyx[0::2], box_zyx[1::2]):
        quarter = (hi - lo) // 4
        a, b = lo + quarter, hi - quarter
        out += [a, max(b, a + 1)]
    return tuple(int(v) for v in out)  # type: ignore[return-value]


def blood_pool(hu: np.ndarray, box_zyx: tuple[int, int, int, int, int, int]) -> BloodPool | None:
    """The blood-pool reading of a volume (HU, (z, y, x)) in the core of its heart box (voxel indices, end
    exclusive; clipped to the volume); None when the core holds fewer than :data:`MIN_CORE_VOXELS` voxels in
    :data:`BLOOD_POOL_RANGE_HU`."""
    z0, z1, y0, y1, x0, x1 = core_box(box_zyx)
    core = hu[max(z0, 0):max(z1, 0), max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    lo, hi = BLOOD_POOL_RANGE_HU
    values = core[(core >= lo) & (core <= hi)]
    if values.size < MIN_CORE_VOXELS:
        return None
    return BloodPool(float(np.median(values)), int(values.size))
