"""Shared training pieces: the CPU's precision and retired settings of old model cards
(cacflow.training.common)."""

from __future__ import annotations

import torch
from torch import nn

from cacflow.training.common import RETIRED_HYPER, recorded_hyper


def test_a_card_is_read_without_retired_settings_that_hold_their_one_remaining_value():
    card = {"hyper_parameters": {"patch": 96, "full_resolution": False}}
    assert RETIRED_HYPER == {"full_resolution": False}
    assert recorded_hyper(card) == {"patch": 96}
    # a card that used the removed option keeps it, and the dataclass then refuses it
    assert recorded_hyper({"hyper_parameters": {"full_resolution": True}}) == {"full_resolution": True}


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
