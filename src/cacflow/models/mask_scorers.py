"""Loading the models whose output is a label map on the scoring grid (the segmentation scorers of the inference
stage), whatever their kind: the model card says which class reads the checkpoint.

Every class has ``kind``, ``id``, ``card``, ``predict_box(hu, box_zyx)`` -> labels (z, y, x) on the whole grid, and
``predict_in_box(hu, box_zyx)`` -> the same labels inside the box only, with the box clipped to the grid.
What the labels mean, and so how the score stage scores them, depends on the kind (:mod:`cacflow.scoring.masks`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from cacflow.models.calcium_levels import KIND as LEVELS
from cacflow.models.calcium_levels import LevelPredictor
from cacflow.models.checkpoint import CheckpointError, read_card
from cacflow.models.conv_lstm import KIND as LSTM
from cacflow.models.conv_lstm import CalciumLSTM
from cacflow.models.patch_unet3d import KIND as PATCH3D
from cacflow.models.patch_unet3d import PatchSegmenter
from cacflow.models.segmentation import KIND as VESSELS
from cacflow.models.segmentation import BoxLabeller, VesselSegmenter

MaskScorer = BoxLabeller
_CLASSES = {VESSELS: VesselSegmenter, LEVELS: LevelPredictor, LSTM: CalciumLSTM, PATCH3D: PatchSegmenter}


def _scorer_class(kind: str | None, where: str) -> type[BoxLabeller]:
    if kind not in _CLASSES:
        raise CheckpointError(f"{where}: a {kind!r} model is not a segmentation scorer; models.segmentation "
                              f"takes models of kind {sorted(_CLASSES)}")
    return _CLASSES[kind]


def load_mask_scorer(directory: Path, device: torch.device, batch_size: int | None = None) -> MaskScorer:
    """The segmentation scorer in ``directory`` (any kind of :data:`_CLASSES`); ``batch_size``: slices (or 3-D
    patches) per forward pass, None for the class's default."""
    return _scorer_class(read_card(directory).get("kind"), str(directory)).load(Path(directory), device, batch_size)


def mask_scorer_from_payload(payload: dict, card: dict, device: torch.device) -> MaskScorer:
    """The segmentation scorer of an in-memory checkpoint payload whose card (at least ``kind``) is ``card``:
    what a training run evaluates, built exactly as :func:`load_mask_scorer` builds the saved one."""
    return _scorer_class(card.get("kind"), "checkpoint payload").load_payload(payload, card, device)
