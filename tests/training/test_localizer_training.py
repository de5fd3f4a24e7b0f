"""Localizer training: its batches and networks do not depend on how many processes build the batches."""

from __future__ import annotations

import numpy as np
import torch
from test_appearance import _hp, _record

from cacflow.training.batches import batch_stream
from cacflow.training.localizer import CanvasRecord, train_plane, training_batch

#: every augmentation the localizer's training applies, as the shipped localizer was trained
ALL_CHANGES = {"appearance_probability": 0.5, "batch_size": 8, "shift_voxels": 4}


def test_a_training_batch_is_the_same_built_in_a_worker():
    hp = _hp(**ALL_CHANGES)
    batches = {}
    for workers in (0, 2):
        records = [_record(), _record()]

        def make(index: int, records=records):
            return training_batch(records, 1, hp, 1234, index)

        with batch_stream(make, 5, workers) as it:
            batches[workers] = list(it)
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert x0.shape == (8, 1, 64, 64)
    assert not torch.equal(batches[0][0][0], batches[0][1][0])
    assert len({float(y.sum()) for _, y in batches[0]}) > 1  # the picks differ between batches


def _full_size_record() -> CanvasRecord:
    """The hand-built record at the networks' canvas size, 128^3 (each voxel doubled along every axis)."""
    small = _record()
    canvas = small.canvas.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    return CanvasRecord(None, canvas, small.targets.repeat(2, 1))  # type: ignore[arg-type]


def test_a_plane_network_trains_to_the_same_weights_with_batch_workers():
    states = {}
    for workers in (0, 2):
        hp = _hp(**ALL_CHANGES, widths=(4, 4, 8, 8, 8), hidden=8, max_epochs=2, patience=2,
                 samples_per_epoch=16, workers=workers)
        torch.manual_seed(0)
        net, history = train_plane("coronal", [_full_size_record(), _full_size_record()], [_full_size_record()], hp,
                                   torch.device("cpu"), np.random.default_rng(0))
        assert history["batch_workers"] == workers
        assert [h["epoch"] for h in history["history"]] == [0, 1]
        states[workers] = net.state_dict()
    for name, value in states[0].items():
        assert torch.equal(value, states[2][name]), name
