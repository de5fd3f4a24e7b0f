"""The one training loop every cacflow network is trained with.

:class:`Engine` runs epochs of optimisation steps on batches from an iterator, judges each epoch with a
:class:`Validation`, keeps the state of the best epoch (early stopping after ``patience`` epochs without
improvement) and calls its hooks after every epoch. What differs between models is passed in: the network and its
forward call, the loss, the optimiser, the learning-rate schedule, the batches and the validation figure. The shape
follows MONAI's ``SupervisedTrainer`` and Lightning's ``fit``: one loop, the model's parts and event hooks around it.

A batch is ``(inputs, target)``; ``inputs`` is one tensor or a tuple of tensors (the regressor's slices and voxel
sizes), moved to the device and handed to ``forward(net, *inputs)``. The forward pass runs under
:func:`~cacflow.training.common.train_autocast`; the loss is computed on float32 outputs.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from cacflow.training.common import to_device, train_autocast

log = logging.getLogger(__name__)

#: Learning-rate schedules: "cosine" anneals the rate to 0 over ``max_epochs * steps_per_epoch`` steps (stepped
#: per optimisation step); "constant" keeps it.
SCHEDULES: tuple[str, ...] = ("cosine", "constant")


@dataclass(frozen=True)
class Validation:
    """How an epoch is judged: ``score()`` computes the figure on the validation data (the network is in eval mode
    while it runs), named ``metric`` in the history (e.g. ``val_dice``); ``higher_is_better`` says its direction."""

    score: Callable[[], float]
    metric: str
    higher_is_better: bool


@dataclass(frozen=True)
class EpochResult:
    """What a hook sees after an epoch: its number (-1: the starting weights of a continued run, scored before any
    step), mean training loss (NaN for epoch -1), validation figure, seconds since the fit began, and whether it is
    the best epoch so far."""

    label: str
    epoch: int
    train_loss: float
    metric: str
    value: float
    seconds: float
    improved: bool


#: A hook: called with each epoch's result, in order.
Hook = Callable[[EpochResult], None]


def log_progress(result: EpochResult) -> None:
    """The default hook: one progress line per epoch in the run's log."""
    if result.epoch < 0:
        log.info("%s start: %s %.4f", result.label, result.metric, result.value)
    else:
        log.info("%s epoch %d: train loss %.5f, %s %.4f (%.0f s)%s", result.label, result.epoch, result.train_loss,
                 result.metric, result.value, result.seconds, " best" if result.improved else "")


def call_net(net: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """The default forward: the network called on the batch's inputs."""
    return net(*inputs)


def batches_from(make: Callable[[], tuple]) -> Iterator[tuple]:
    """An endless iterator of ``make()`` batches (for batches drawn in the training process)."""
    return (make() for _ in itertools.count())


@dataclass
class BestState:
    """The best epoch so far (by a figure where lower is better) and a copy of its state dict; the history of every
    epoch, each with the wall-clock seconds since the fit began (``seconds``), so a model card shows the time an
    epoch took on its device."""

    best: float = float("inf")
    best_epoch: int = -1
    state: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def record(self, entry: dict, loss_like: float, net: torch.nn.Module) -> bool:
        """Append ``entry`` to the history; True (and the state copied) when ``loss_like`` beats the best."""
        self.history.append(entry)
        if loss_like < self.best:
            self.best, self.best_epoch = float(loss_like), int(entry["epoch"])
            self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return True
        return False


def epoch_seconds(history: list[dict]) -> list[float]:
    """Seconds each epoch took, from an :class:`Engine` history's cumulative clock (``seconds``); epoch -1, the
    scored start of a continued run, is not an epoch of training."""
    timed = [h for h in history if "seconds" in h]
    clock = [h["seconds"] for h in timed]
    spans = [b - a for a, b in zip(clock, clock[1:])]
    return spans if not timed or timed[0]["epoch"] < 0 else [clock[0], *spans]


@dataclass
class Engine:
    """Trains ``net`` with ``optimizer`` on ``loss_fn(outputs, target)``; see the module docstring."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device
    forward: Callable[..., torch.Tensor] = call_net
    schedule: str = "cosine"
    hooks: Sequence[Hook] = (log_progress,)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"learning-rate schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")

    def _step(self, batch: tuple, scheduler) -> float:
        inputs, target = batch
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        with train_autocast(self.device):
            out = self.forward(self.net, *(to_device(x, self.device) for x in inputs))
        loss = self.loss_fn(out.float(), target.to(self.device, non_blocking=True))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return float(loss.item())

    def _validate(self, validation: Validation) -> float:
        self.net.eval()
        try:
            return float(validation.score())
        finally:
            self.net.train()

    def fit(self, batches: Iterable[tuple], steps_per_epoch: int, max_epochs: int, patience: int,
            validation: Validation, label: str, score_start: bool = False) -> tuple[torch.nn.Module, dict]:
        """Up to ``max_epochs`` epochs of ``steps_per_epoch`` steps, each followed by the validation; stops after
        ``patience`` epochs without a better figure. ``score_start``: the starting weights (a continued run) are
        validated first as epoch -1, so a continued run never ends worse on validation than it began.

        Returns the network in eval mode with the best epoch's state, and the record for the model card:
        ``best_epoch``, ``best_<metric>`` and ``history`` (per epoch: ``epoch``, ``train``, ``<metric>``,
        ``seconds``)."""
        if steps_per_epoch < 1 or max_epochs < 1 or patience < 1:
            raise ValueError(f"{label}: steps per epoch ({steps_per_epoch}), max_epochs ({max_epochs}) and patience "
                             f"({patience}) must each be at least 1")
        sign = -1.0 if validation.higher_is_better else 1.0
        scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max_epochs * steps_per_epoch)
                     if self.schedule == "cosine" else None)
        best = BestState()
        started = time.perf_counter()
        stream = iter(batches)

        def end_epoch(epoch: int, train_loss: float) -> None:
            value = self._validate(validation)
            seconds = round(time.perf_counter() - started, 2)
            entry = {"epoch": epoch, **({} if epoch < 0 else {"train": train_loss}), validation.metric: value,
                     "seconds": seconds}
            improved = best.record(entry, sign * value, self.net)
            for hook in self.hooks:
                hook(EpochResult(label, epoch, train_loss, validation.metric, value, seconds, improved))

        self.net.train()
        if score_start:
            end_epoch(-1, float("nan"))
        for epoch in range(max_epochs):
            losses = [self._step(next(stream), scheduler) for _ in range(steps_per_epoch)]
            end_epoch(epoch, sum(losses) / len(losses))
            if epoch - best.best_epoch >= patience:
                break
        self.net.load_state_dict(best.state)
        return self.net.eval(), {"best_epoch": best.best_epoch, f"best_{validation.metric}": sign * best.best,
                                 "history": best.history}
