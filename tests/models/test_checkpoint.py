"""Checkpoints: weights and model card travel together; tampered or wrong-kind weights are refused."""

from __future__ import annotations

import pytest
import torch

from cacflow.models.checkpoint import CheckpointError, load_checkpoint, model_id, read_card, save_checkpoint


def test_round_trip_and_refusals(tmp_path):
    payload = {"arch": {"widths": [4]}, "state": {"w": torch.arange(6.0)}}
    card = save_checkpoint(tmp_path / "m", payload, {"kind": "localizer", "metrics": {"test": {"iou": 0.9}}})
    loaded, card2 = load_checkpoint(tmp_path / "m", "localizer")
    assert torch.equal(loaded["state"]["w"], torch.arange(6.0)) and card2 == card == read_card(tmp_path / "m")
    assert model_id(card).startswith("localizer-") and len(model_id(card)) == len("localizer-") + 12
    with pytest.raises(CheckpointError, match="'regressor' model is expected"):
        load_checkpoint(tmp_path / "m", "regressor")
    (tmp_path / "m" / "weights.pt").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tmp_path / "m", "localizer")
    with pytest.raises(CheckpointError, match="model_card.json"):
        load_checkpoint(tmp_path / "missing", "localizer")
