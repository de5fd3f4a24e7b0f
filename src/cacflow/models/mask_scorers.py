"""Loading the models whose output is a label map on the scoring grid (the segmentation scorers of the inference
stage), whatever their kind: the model card says which class reads the checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from cacflow.models.calcium_levels import KIND as LEVELS
from cacflow.models.calcium_levels import LevelPredictor
from cacflow.models.checkpoint import CheckpointError, read_card
from cacflow.models.segmentation import KIND as VESSELS
from cacflow.models.segmentation import SliceLabeller, VesselSegmenter

MaskScorer = SliceLabeller
_CLASSES = {VESSELS: VesselSegmenter, LEVELS: LevelPredictor}


def load_mask_scorer(directory: Path, device: torch.device) -> MaskScorer:
    """The segmentation scorer in ``directory`` (a vessel segmentation or a calcification level model)."""
    kind = read_card(directory).get("kind")
    if kind not in _CLASSES:
        raise CheckpointError(f"{directory}: a {kind!r} model is not a segmentation scorer; models.segmentation "
                              f"takes models of kind {sorted(_CLASSES)}")
    return _CLASSES[kind].load(Path(directory), device)
