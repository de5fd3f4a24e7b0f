"""What every training run shares: seeding, the device and its precision, starting checkpoints, card fields.
The training loop itself is :mod:`cacflow.training.engine`."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from cacflow.models.checkpoint import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; returns the NumPy generator the run draws its samples from."""
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions in hardware (oneDNN's bf16 support: AVX-512 or AMX).

    On such CPUs bf16 autocast made training 2.3x faster than float32. An AVX2-only CPU has no bf16 instructions
    and emulates them: a training step of the localizer and of the regressor was 6.0x and 4.7x slower under bf16
    than in float32 there (an AVX2 AMD EPYC, 2 threads; ``benchmarks/cpu_precision.py``). A hardware fact, so
    cached for the process.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: no fast bf16 either
        return False


def train_autocast(device: torch.device):
    """bf16 autocast for training: on CUDA always, on the CPU only where it has bf16 hardware
    (:func:`cpu_has_fast_bf16`); float32 otherwise."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch; 4-D image batches use channels_last on the CPU."""
    x = x.to(device, non_blocking=True)
    if x.ndim == 4 and device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def starting_checkpoint(init_from: str, kind: str, setting: str) -> tuple[dict, dict]:
    """The payload of the ``kind`` checkpoint a run starts from (``init_from``, its directory) and its provenance
    for the model card's ``initialised_from``: directory, weights and data SHA-256, and the checkpoint's own start
    (so a chain of continued runs keeps its whole lineage). A checkpoint that cannot be read is refused naming the
    config ``setting`` (e.g. ``training.regressor.init_from``)."""
    directory = Path(init_from)
    try:
        payload, card = load_checkpoint(directory, kind)
    except CheckpointError as exc:
        raise CheckpointError(f"{setting}: {exc} (or set init_from to '' to train from scratch)") from exc
    return payload, {"directory": str(directory), "weights_sha256": card.get("weights_sha256"),
                     "data_sha256": card.get("data_sha256"), "initialised_from": card.get("initialised_from")}


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def hyper_dict(hp) -> dict:
    """A hyper-parameter dataclass as a JSON-ready dict (tuples as lists), for model cards."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(hp).items()}


#: Settings of removed options that older model cards record, with the value that is now the only behaviour
#: (``docs/decisions/unadopted-options.md``); the shipped level model's card records ``full_resolution: false``.
RETIRED_HYPER: dict[str, object] = {"full_resolution": False}


def recorded_hyper(card: dict) -> dict:
    """A model card's hyper-parameters without the retired settings that hold their one remaining value."""
    return {k: v for k, v in card["hyper_parameters"].items() if not (k in RETIRED_HYPER and RETIRED_HYPER[k] == v)}


def best_by_strata(rows: list[dict], tie_break: Callable[[dict], float]) -> dict:
    """The validation row with the highest five-class linearly weighted κ (``five_class_kappa``; NaN counts
    lowest), then the highest five-class accuracy, then the highest ``tie_break(row)``; the first such row."""

    def rank(row: dict) -> tuple[float, float, float]:
        kappa = row["five_class_kappa"]
        return (-np.inf if np.isnan(kappa) else kappa, row["five_class_accuracy"], tie_break(row))

    return max(rows, key=rank)
