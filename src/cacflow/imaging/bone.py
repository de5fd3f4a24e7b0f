"""Bone by its size: the anatomy guard every method's calcium passes before it is counted.

At the calcium threshold (130 HU) the skeleton in a chest CT forms large connected structures: the spine with the
ribs joined to it measures hundreds of millilitres, a rib, the sternum or a scapula tens. Coronary calcium forms
small ones: a coronary artery is 2–5 mm wide, so even a calcified segment 40 mm long fills well under 1 mL (1000 mm³). A
3-D component (26-connected) of voxels at or above :data:`BONE_HU` whose volume reaches :data:`MIN_BONE_ML` is
bone; no coronary lesion comes near that size, so the guard removes no coronary calcium. What it does not catch:
bone fragments smaller than that (a rib tip cut by the field of view, sternal segments, calcified costal
cartilage); the heart region and the models' own training keep most of those out.

Measured on the real NRRD chest CT with heavy coronary calcium (``lung2``, scoring grid): the spine and ribs form one
component of 869 mL and the other skeletal parts 20–113 mL, while the largest component in the heart is 2.0 mL.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Voxels that can be bone or calcium: the Agatston threshold.
BONE_HU = 130.0
#: Volume (mL) from which a connected structure at or above :data:`BONE_HU` is bone: ten times a coronary segment
#: calcified over 40 mm (under 1 mL), and half the smallest skeletal structure measured on real chest CT (20 mL).
MIN_BONE_ML = 10.0
#: 26-connectivity: voxels touching by a face, an edge or a corner are one structure.
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def bone_mask(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float]) -> np.ndarray:
    """Voxels (bool, (z, y, x)) of the 3-D structures at or above :data:`BONE_HU` whose volume reaches
    :data:`MIN_BONE_ML` on a HU volume with voxel size ``spacing_zyx_mm`` (mm)."""
    dense = hu >= BONE_HU
    labels, n = ndimage.label(dense, structure=_CONNECTIVITY)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    voxel_ml = float(np.prod(spacing_zyx_mm)) / 1000.0
    sizes_ml = np.bincount(labels.ravel(), minlength=n + 1) * voxel_ml
    sizes_ml[0] = 0.0
    return (sizes_ml >= MIN_BONE_ML)[labels]
