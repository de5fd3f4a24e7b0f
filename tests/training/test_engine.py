"""The one training loop (cacflow.training.engine): real optimisation steps on small networks; the best epoch's
state is kept, early stopping counts from it, a continued run's start is epoch -1, hooks see every epoch, and the
learning-rate schedules do what they say."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cacflow.training.engine import Engine, Validation, batches_from, epoch_seconds


def _line_batches(seed: int = 0, n: int = 32):
    """Batches of y = 2x + 1 with x in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)

    def make():
        x = torch.rand(n, 1, generator=g) * 2 - 1
        return x, 2 * x + 1

    return batches_from(make)


def _mse_on_line(net: nn.Module) -> float:
    x = torch.linspace(-1, 1, 21)[:, None]
    with torch.no_grad():
        return float(nn.functional.mse_loss(net(x), 2 * x + 1))


def test_the_engine_fits_a_line_and_keeps_the_best_epoch():
    torch.manual_seed(0)
    net = nn.Linear(1, 1)
    start = _mse_on_line(net)
    seen = []
    engine = Engine(net, torch.optim.Adam(net.parameters(), lr=0.05), nn.functional.mse_loss, torch.device("cpu"),
                    schedule="constant", hooks=(seen.append,))
    fitted, record = engine.fit(_line_batches(), steps_per_epoch=20, max_epochs=8, patience=8,
                                validation=Validation(lambda: _mse_on_line(net), "val_mse", False), label="line")
    assert fitted is net and not net.training  # returned in eval mode
    history = record["history"]
    assert [h["epoch"] for h in history] == list(range(8)) == [r.epoch for r in seen]
    values = [h["val_mse"] for h in history]
    assert values[-1] < start / 10  # it learned
    assert record["best_epoch"] == values.index(min(values)) and record["best_val_mse"] == min(values)
    assert _mse_on_line(net) == pytest.approx(min(values))  # the best epoch's weights are loaded
    assert all(h["train"] >= 0 for h in history)
    assert [r.improved for r in seen] == [v < min(values[:k], default=math.inf) for k, v in enumerate(values)]
    spans = epoch_seconds(history)
    assert len(spans) == 8 and all(s >= 0 for s in spans)


def test_early_stopping_counts_patience_from_the_best_epoch_and_keeps_its_weights():
    net = nn.Linear(1, 1, bias=False)
    scores = iter([3.0, 1.0, 2.0, 1.5, 0.5])  # best at epoch 1; epochs 2 and 3 do not beat it
    weights_at_epoch = []

    def score() -> float:
        weights_at_epoch.append(net.weight.item())
        return next(scores)

    engine = Engine(net, torch.optim.SGD(net.parameters(), lr=0.1), nn.functional.mse_loss, torch.device("cpu"),
                    schedule="constant", hooks=())
    _, record = engine.fit(_line_batches(), 3, 10, 2, Validation(score, "val_loss", False), "stop")
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2, 3]  # stopped after two epochs without improvement
    assert (record["best_epoch"], record["best_val_loss"]) == (1, 1.0)
    assert net.weight.item() == weights_at_epoch[1] != weights_at_epoch[3]


def test_higher_is_better_figures_keep_the_highest():
    net = nn.Linear(1, 1)
    scores = iter([0.2, 0.7, 0.5])
    engine = Engine(net, torch.optim.SGD(net.parameters(), lr=0.1), nn.functional.mse_loss, torch.device("cpu"),
                    hooks=())
    _, record = engine.fit(_line_batches(), 2, 3, 5, Validation(lambda: next(scores), "val_dice", True), "dice")
    assert (record["best_epoch"], record["best_val_dice"]) == (1, 0.7)


def test_a_continued_run_never_ends_worse_than_its_start():
    torch.manual_seed(1)
    net = nn.Linear(1, 1)
    start_state = {k: v.clone() for k, v in net.state_dict().items()}
    # a validation where the start is best: no trained epoch beats it, so the start's weights come back
    scores = iter([0.1, 0.5, 0.4])
    engine = Engine(net, torch.optim.SGD(net.parameters(), lr=0.1), nn.functional.mse_loss, torch.device("cpu"),
                    hooks=())
    _, record = engine.fit(_line_batches(), 2, 2, 5, Validation(lambda: next(scores), "val_loss", False), "warm",
                           score_start=True)
    assert [h["epoch"] for h in record["history"]] == [-1, 0, 1]
    assert "train" not in record["history"][0]  # no step was taken before the start was scored
    assert record["best_epoch"] == -1
    assert all(torch.equal(net.state_dict()[k], v) for k, v in start_state.items())
    assert epoch_seconds(record["history"]) and len(epoch_seconds(record["history"])) == 2


def test_tuple_inputs_reach_the_forward_call():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(1, 1), nn.Linear(1, 1)

        def forward(self, x, z):
            return self.a(x) + self.b(z)

    net = TwoInputs()
    g = torch.Generator().manual_seed(0)

    def make():
        x, z = torch.rand(16, 1, generator=g), torch.rand(16, 1, generator=g)
        return (x, z), 3 * x - z

    def val() -> float:
        x = torch.rand(64, 1, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return float(nn.functional.mse_loss(net(x, x), 2 * x))

    engine = Engine(net, torch.optim.Adam(net.parameters(), lr=0.05), nn.functional.mse_loss, torch.device("cpu"),
                    hooks=())
    before = val()
    _, record = engine.fit(batches_from(make), 30, 4, 4, Validation(val, "val_mse", False), "two inputs")
    assert record["best_val_mse"] < before


@pytest.mark.parametrize("schedule, last_lr", [("cosine", 0.0), ("constant", 0.1)])
def test_the_learning_rate_schedules(schedule, last_lr):
    net = nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    rates = []
    engine = Engine(net, opt, nn.functional.mse_loss, torch.device("cpu"), schedule=schedule,
                    hooks=(lambda r: rates.append(opt.param_groups[0]["lr"]),))
    engine.fit(_line_batches(), 5, 4, 10, Validation(lambda: 1.0, "val_loss", False), schedule)
    assert rates[-1] == pytest.approx(last_lr, abs=1e-12)
    if schedule == "cosine":  # annealed per step over max_epochs * steps: half-way after two of four epochs
        assert rates[1] == pytest.approx(0.05 * (1 + math.cos(math.pi * 10 / 20)))


def test_bad_settings_are_refused_naming_them():
    net = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="'step'.*cosine, constant"):
        Engine(net, torch.optim.SGD(net.parameters(), lr=0.1), nn.functional.mse_loss, torch.device("cpu"),
               schedule="step")
    engine = Engine(net, torch.optim.SGD(net.parameters(), lr=0.1), nn.functional.mse_loss, torch.device("cpu"))
    with pytest.raises(ValueError, match="zero: .*patience \\(0\\)"):
        engine.fit(_line_batches(), 1, 1, 0, Validation(lambda: 1.0, "v", False), "zero")
