"""Reading ahead: the next items' I/O on worker threads while the caller works on the current one, with a bound on
how many results wait in memory.

``Executor.map`` submits every call at once: an inference shard of 200 scans whose models are slower than its reader
(always so with the segmentation scorers, on a GPU node as on the CPU) would end up holding every scan's volume,
about 100 MB each, in memory. :func:`read_ahead` keeps at most ``depth`` calls submitted beyond the item the caller
holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(fn: Callable[[T], R], items: Iterable[T], workers: int = 1, depth: int | None = None) -> Iterator[R]:
    """``fn(item)`` of each item, in order, computed on ``workers`` threads at most ``depth`` items ahead of the
    caller (default ``workers + 1``): while the caller holds result i, only items up to i + ``depth`` have been
    started. An exception of ``fn`` is raised when its item's result is reached, after the results before it."""
    workers = max(1, int(workers))
    depth = max(1, workers + 1 if depth is None else int(depth))
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future] = deque()
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) == depth:
                break
        while pending:
            future = pending.popleft()
            for item in it:  # one more started before the caller takes this result
                pending.append(pool.submit(fn, item))
                break
            yield future.result()
