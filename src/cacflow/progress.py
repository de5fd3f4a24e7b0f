"""Progress logging for long Dask computations: tasks done of total and the rate."""

from __future__ import annotations

import logging
import time

from dask.callbacks import Callback

log = logging.getLogger("cacflow.progress")


class Progress(Callback):
    """Logs ``label: done/total tasks (rate/s)`` at most every ``every_s`` seconds and at the end.

    Dask's local schedulers call ``_posttask`` in the scheduling thread, so this works for threads and processes.
    """

    def __init__(self, total: int, label: str, every_s: float = 10.0):
        super().__init__()
        self.total, self.label, self.every_s = total, label, every_s
        self.done, self.t0, self.last = 0, time.monotonic(), time.monotonic()

    def _posttask(self, key, result, dsk, state, worker_id):
        self.done += 1
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            log.info("%s: %d/%d done (%.2f/s)", self.label, self.done, self.total, rate)
