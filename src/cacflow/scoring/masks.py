"""What a segmentation scorer's label map means, by the kind of model that wrote it, and the region the scoring
library scores in it. Torch-free: the score stage reads the maps from the inference table.

| kind                    | labels on the grid (z, y, x)                      | scored as                           |
|-------------------------|---------------------------------------------------|-------------------------------------|
| ``vessel_segmentation`` | 0, 1 LM, 2 LAD, 3 CX, 4 RCA (gated at 130 HU)     | vessel label map (vessel scores)    |
| ``conv_lstm``           | 0, 1 coronary, 2 non-coronary calcium (gated)     | coronary mask = label 1             |
| ``patch_unet3d``        | 0, 1 coronary calcium (probability > 0.95, gated) | coronary mask = label 1             |
| ``calcium_levels``      | calcification level 0..4 (no HU)                  | :func:`~.robust_agatston.robust_score` |
"""

from __future__ import annotations

import numpy as np

#: Kinds whose map holds the coronary vessel codes of :data:`cacflow.scoring.scan.VESSELS`.
VESSEL_KINDS = frozenset({"vessel_segmentation"})
#: Kinds whose map marks coronary calcium with label 1 (other labels are not coronary).
CORONARY_KINDS = frozenset({"conv_lstm", "patch_unet3d"})
#: Kinds whose map holds calcification levels that replace HU.
LEVEL_KINDS = frozenset({"calcium_levels"})


def hu_region(kind: str, labels: np.ndarray) -> tuple[np.ndarray, bool]:
    """The region the HU-based scoring library scores in a label map, and whether it carries vessel labels.

    Raises ValueError for a level map (scored without HU) or an unknown kind."""
    if kind in VESSEL_KINDS:
        return labels, True
    if kind in CORONARY_KINDS:
        return labels == 1, False
    raise ValueError(f"a {kind!r} label map has no HU-scored region; known kinds: "
                     f"{sorted(VESSEL_KINDS | CORONARY_KINDS | LEVEL_KINDS)}")
