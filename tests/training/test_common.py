"""Shared training pieces: early stopping, tail weight averaging and batch-normalisation recalibration
(cacflow.training.common)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cacflow.training.common import EarlyStopping, WeightAverage, recalibrate_batch_norm


def test_early_stopping_keeps_the_best_state_and_times_each_epoch():
    net = nn.Linear(1, 1, bias=False)
    stop = EarlyStopping(patience=2)
    said = []
    for epoch, (score, value) in enumerate([(3.0, 1.0), (1.0, 2.0), (2.0, 3.0), (1.5, 4.0)]):
        with torch.no_grad():
            net.weight.fill_(value)
        said.append(stop.update(epoch, score, net, train=score * 2))
    assert said == [False, False, False, True]  # two epochs without beating epoch 1
    assert (stop.best, stop.best_epoch) == (1.0, 1)
    assert float(stop.best_state["weight"]) == 2.0  # a copy, not the live weights (now 4.0)
    assert [h["train"] for h in stop.history] == [6.0, 2.0, 4.0, 3.0]
    seconds = [h["seconds"] for h in stop.history]
    assert all(s >= 0.0 for s in seconds) and seconds == sorted(seconds)


def test_weight_average_is_the_mean_of_the_snapshots():
    net = nn.Linear(3, 2)
    average = WeightAverage()
    with pytest.raises(ValueError, match="no snapshot"):
        average.load_into(net)
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            net.weight.fill_(value)
            net.bias.fill_(-value)
        average.add(net)
    average.load_into(net)
    assert average.count == 3
    torch.testing.assert_close(net.weight, torch.full((2, 3), 3.0))
    torch.testing.assert_close(net.bias, torch.full((2,), -3.0))


def test_batch_norm_statistics_are_recomputed_as_a_plain_average():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
    net.eval()
    net[1].running_mean.fill_(100.0)  # stale statistics from other weights
    batches = [torch.randn(64, 2) + torch.tensor([float(i), -2.0 * i]) for i in range(4)]
    calls = iter(batches)
    recalibrate_batch_norm(net, lambda: net(next(calls)), batches=4)
    expected = torch.stack([b.mean(0) for b in batches]).mean(0)
    torch.testing.assert_close(net[1].running_mean, expected)
    assert not net.training and net[1].momentum == 0.1  # mode and momentum restored


def test_cpu_training_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    from cacflow.training import common

    assert common.cpu_has_fast_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    cpu = torch.device("cpu")
    for fast in (True, False):
        monkeypatch.setattr(common, "cpu_has_fast_bf16", lambda fast=fast: fast)
        with common.train_autocast(cpu):
            y = nn.Linear(4, 4)(torch.ones(2, 4))
        assert y.dtype == (torch.bfloat16 if fast else torch.float32)
    with common.train_autocast(torch.device("meta")):  # any other device: plain float32
        assert not torch.is_autocast_enabled("cpu")
