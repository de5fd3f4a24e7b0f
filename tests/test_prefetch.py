"""Reading ahead: every result in order, never more than ``depth`` items started beyond the one the caller holds,
errors at their own item."""

from __future__ import annotations

import threading
import time

import pytest

from cacflow.prefetch import read_ahead


@pytest.mark.parametrize("workers,depth", [(1, None), (2, None), (3, 1), (1, 4)])
def test_results_in_order_and_started_calls_bounded(workers, depth):
    started, lock = [], threading.Lock()

    def fn(i):
        with lock:
            started.append(i)
        return i * i

    bound = (workers + 1) if depth is None else depth
    out = []
    for i, value in enumerate(read_ahead(fn, range(40), workers, depth)):
        time.sleep(0.002)  # a caller slower than the reader: Executor.map would have started all 40 by now
        with lock:
            assert len(started) <= i + 1 + bound
        out.append(value)
    assert out == [i * i for i in range(40)]


def test_an_error_is_raised_at_its_item():
    def fn(i):
        if i == 3:
            raise ValueError("item 3 is broken")
        return i

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for v in read_ahead(fn, range(10), workers=2):
            got.append(v)
    assert got == [0, 1, 2]


def test_empty_and_short_inputs():
    assert list(read_ahead(str, [], workers=2)) == []
    assert list(read_ahead(str, [7], workers=4, depth=8)) == ["7"]
