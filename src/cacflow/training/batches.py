"""Training batches built by worker processes while the network trains on the ones before.

A batch here is a pure function of its index: ``make(k)`` draws everything it needs (which slices, their shifts,
their augmentation) from a generator seeded by the run's stream and ``k`` (:func:`batch_rng`). So the batches a
run sees are the same whether they are built in the training process or by any number of workers, and a run's
result does not depend on how many CPUs its node had.

Workers are forked (:class:`torch.utils.data.DataLoader`, ``multiprocessing_context="fork"``): they share the
parent's arrays (the training canvases) copy-on-write instead of receiving a pickled copy, and start in well under
a second. They never touch CUDA; batches come back through shared memory, pinned for the copy to the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

T = TypeVar("T")

#: Most batch workers a run starts on its own ("auto"); more rarely pays for a small network's batches.
MAX_AUTO_WORKERS = 8


def batch_rng(stream: int, index: int) -> np.random.Generator:
    """The generator batch ``index`` of a run's ``stream`` draws from (independent of every other batch's)."""
    return np.random.default_rng([int(stream), int(index)])


def available_cpus() -> int:
    """CPUs this process may run on (the SLURM allocation or cgroup, not the node's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(setting: int, device: torch.device) -> int:
    """Worker processes for a training run's batches: ``setting`` where it is 0 or more; for ``-1`` ("auto"),
    on CUDA every allocated CPU but one for the training process (at most :data:`MAX_AUTO_WORKERS`), on the CPU
    none, since there the workers would take cores from the network's own threads."""
    if setting >= 0:
        return int(setting)
    if setting != -1:
        raise ValueError(f"batch workers must be -1 (auto) or a count of 0 or more, not {setting}")
    if device.type != "cuda":
        return 0
    return max(0, min(MAX_AUTO_WORKERS, available_cpus() - 1))


class _IndexedBatches(Dataset):
    """Batch ``k`` is ``make(k)``: a map-style dataset whose items are whole batches."""

    def __init__(self, make: Callable[[int], T], count: int) -> None:
        self.make, self.count = make, int(count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> T:
        return self.make(int(index))


@contextmanager
def batch_stream(make: Callable[[int], T], count: int, workers: int,
                 pin_memory: bool = False) -> Iterator[Iterator[T]]:
    """The batches ``make(0) ... make(count - 1)`` in order, as an iterator: built in this process when
    ``workers`` is 0, otherwise by that many forked workers, each a few batches ahead of the consumer.

    Leaving the ``with`` block stops the workers, also when the consumer stops early (early stopping). The global
    random state of torch is not consumed, so a run that builds its batches in workers initialises its later
    networks exactly as one that does not.
    """
    if workers <= 0:
        yield (make(k) for k in range(count))
        return
    loader = DataLoader(_IndexedBatches(make, count), batch_size=None, shuffle=False, num_workers=int(workers),
                        multiprocessing_context="fork", prefetch_factor=4, pin_memory=pin_memory,
                        generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    try:
        yield it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # the iterator's own clean-up, run now, not at GC time
        if shutdown is not None:
            shutdown()
