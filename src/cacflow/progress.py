"""Progress lines for long steps: ``label: done/total done (rate/s, about N s left)``.

One :class:`Progress` serves both kinds of loop: as a Dask callback (``with Progress(...):`` around
``dask.compute``; Dask's local schedulers call ``_posttask`` in the scheduling thread, so this works for threads and
processes) and by hand (:meth:`Progress.advance` after each item of a plain loop). Lines go to the
``cacflow.progress`` logger, which :func:`cacflow.logs.setup` also sends to the terminal.
"""

from __future__ import annotations

import logging
import time

from dask.callbacks import Callback

log = logging.getLogger("cacflow.progress")


class Progress(Callback):
    """Logs a progress line at most every ``every_s`` seconds, and at the end."""

    def __init__(self, total: int, label: str, every_s: float = 10.0):
        super().__init__()
        self.total, self.label, self.every_s = total, label, every_s
        self.done, self.t0, self.last = 0, time.monotonic(), time.monotonic()

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done; log when ``every_s`` has passed since the last line or all are done."""
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        """The progress line at time ``now`` (``time.monotonic``)."""
        rate = self.done / max(now - self.t0, 1e-9)
        left = f", about {(self.total - self.done) / rate:.0f} s left" if 0 < self.done < self.total else ""
        return f"{self.label}: {self.done}/{self.total} done ({rate:.2f}/s{left})"

    def _posttask(self, key, result, dsk, state, worker_id):
        self.advance()
