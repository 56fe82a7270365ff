"""Reading and writing beside the models (kumo_edge.overlap): order, errors where they belong,
and no worker left running on a dataset once control returns."""

from __future__ import annotations

import threading
import time

import pytest

from kumo_edge.overlap import Background, prefetch


def test_prefetch_keeps_order_and_reads_ahead_in_another_thread() -> None:
    seen: list[str] = []

    def source():
        for i in range(5):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(source(), depth=2)) == [0, 1, 2, 3, 4]
    assert set(seen) == {"kumo-read"}


def test_prefetch_raises_the_producers_error_after_the_items_before_it() -> None:
    def source():
        yield 1
        yield 2
        raise ValueError("block 3 is truncated")

    got = []
    with pytest.raises(ValueError, match="block 3 is truncated"):
        for x in prefetch(source()):
            got.append(x)
    assert got == [1, 2]


def test_closing_prefetch_stops_the_producer_and_waits_for_it() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def source():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    it = prefetch(source(), depth=1)
    assert next(it) == 0
    it.close()  # the consumer failed: nothing may go on reading the input
    assert closed.is_set()
    n = len(produced)
    time.sleep(0.1)
    assert len(produced) == n < 10


def test_background_runs_calls_in_order_in_one_thread() -> None:
    out: list[tuple[int, str]] = []
    with Background(depth=1) as bg:
        for i in range(20):
            bg.submit(lambda i: out.append((i, threading.current_thread().name)), i)
    assert [i for i, _ in out] == list(range(20))
    assert {n for _, n in out} == {"kumo-write"}


def test_background_raises_a_failed_call_in_the_caller_and_skips_the_rest() -> None:
    done: list[int] = []

    def write(i: int) -> None:
        if i == 2:
            raise OSError("No space left on device")
        done.append(i)

    with pytest.raises(OSError, match="No space left"):
        with Background(depth=1) as bg:
            for i in range(50):
                bg.submit(write, i)
                time.sleep(0.002)
    assert done == [0, 1]  # nothing written after the failure


def test_background_cancel_waits_for_the_running_call_and_drops_the_queued() -> None:
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def slow(i: int) -> None:
        started.set()
        release.wait(5)
        done.append(i)

    class Stop(Exception):
        pass

    t = threading.Timer(0.2, release.set)
    t.start()
    with pytest.raises(Stop):
        with Background(depth=1) as bg:
            bg.submit(slow, 0)
            started.wait(5)
            bg.submit(slow, 1)  # queued behind the running one
            raise Stop  # e.g. SIGTERM in the main thread
    # on leaving, the running call has finished (the caller may now discard the outputs) and
    # the queued one never ran
    assert done == [0]
    t.join()
