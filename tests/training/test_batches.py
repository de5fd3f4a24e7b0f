"""Training batches built by worker processes: the same batches, in order, as in the training process."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

from cacflow.training.batches import MAX_AUTO_WORKERS, batch_rng, batch_stream, resolve_workers


def _make(index: int) -> tuple[torch.Tensor, int]:
    """A batch drawn from its own generator, tagged with the process that built it."""
    rng = batch_rng(99, index)
    return torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32)), multiprocessing.current_process().pid


def test_workers_give_the_batches_of_the_training_process_in_order():
    with batch_stream(_make, 7, 0) as it:
        here = list(it)
    with batch_stream(_make, 7, 2) as it:
        there = list(it)
    assert len(here) == len(there) == 7
    for (a, _), (b, _) in zip(here, there):
        assert torch.equal(a, b)
    assert not torch.equal(here[0][0], here[1][0])  # each index its own draw
    me = multiprocessing.current_process().pid
    assert {pid for _, pid in here} == {me}
    assert me not in {pid for _, pid in there}  # built elsewhere


def test_the_global_torch_random_state_is_left_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with batch_stream(_make, 3, 2) as it:
        next(it)
    assert torch.equal(torch.rand(3), expected)


def test_stopping_early_stops_the_workers():
    with batch_stream(_make, 1000, 2) as it:
        next(it)
        assert multiprocessing.active_children()
    assert not multiprocessing.active_children()


def test_a_failing_batch_names_its_error_in_the_training_process():
    def broken(index: int):
        if index == 2:
            raise ValueError("batch 2 cannot be built")
        return torch.zeros(1)

    with pytest.raises(ValueError, match="batch 2 cannot be built"):
        with batch_stream(broken, 5, 2) as it:
            list(it)
    assert not multiprocessing.active_children()


def test_worker_count_auto_uses_the_cpus_beside_the_training_process_on_cuda_only(monkeypatch):
    assert resolve_workers(3, torch.device("cpu")) == 3
    assert resolve_workers(0, torch.device("cuda")) == 0
    assert resolve_workers(-1, torch.device("cpu")) == 0
    monkeypatch.setattr("cacflow.training.batches.available_cpus", lambda: 4)
    assert resolve_workers(-1, torch.device("cuda")) == 3
    monkeypatch.setattr("cacflow.training.batches.available_cpus", lambda: 64)
    assert resolve_workers(-1, torch.device("cuda")) == MAX_AUTO_WORKERS
    monkeypatch.setattr("cacflow.training.batches.available_cpus", lambda: 1)
    assert resolve_workers(-1, torch.device("cuda")) == 0
    with pytest.raises(ValueError, match="-1 \\(auto\\)"):
        resolve_workers(-2, torch.device("cpu"))
