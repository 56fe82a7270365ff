"""Reading and writing beside the models: a file pass reads its next strip and writes its last
finished lines while the models work on the current tile row.

GDAL reads and writes (and zstd/deflate coding) and numpy's conversions release the GIL, so on
two cores they overlap the models' Python and single-threaded stretches. Each helper owns one
worker thread and a bounded queue (memory stays one item ahead), keeps the order, and raises a
worker's error in the calling thread at the next call. Each dataset is only ever used by one
thread at a time (GDAL's rule): the input by the reader while the pass runs, the outputs by the
writer until it is closed or cancelled, and both helpers join their thread before returning
control, so the caller can close or discard the datasets safely afterwards.

No numba kernel runs in these threads: numba's ``workqueue`` threading layer (the fallback where
neither TBB nor OpenMP is installed) must not be entered from two threads at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_END = object()
#: Seconds between checks of the stop flag while a queue is full.
_POLL_S = 0.05


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:  # noqa: ANN401
    """Put ``item`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterator[T], depth: int = 1, join_timeout: float | None = None) -> Iterator[T]:
    """The items of ``items``, produced in a worker thread up to ``depth`` ahead of the consumer.

    A producer error is raised here, where the item would have been; closing this generator
    (or an error in the consumer) stops the producer and waits for it (at most
    ``join_timeout`` seconds: a producer blocked on a pipe that no one writes to cannot be
    interrupted; ``None`` waits, as for a file that the caller closes afterwards)."""
    if depth < 1:
        raise ValueError(f"`depth` must be >= 1, got {depth}")
    q: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        end: tuple[Any, BaseException | None] = (_END, None)
        try:
            for it in items:
                if not _put(q, (it, None), stop):
                    break
                del it  # the consumer's now: not held here while the next one is made
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            end = (_END, exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        _put(q, end, stop)

    worker = threading.Thread(target=produce, name="kumo-read", daemon=True)
    worker.start()
    try:
        while True:
            it, exc = q.get()
            if it is _END:
                if exc is not None:
                    raise exc
                return
            yield it
    finally:
        stop.set()
        worker.join(join_timeout)


class Background:
    """Calls made in order in one worker thread, at most ``depth`` waiting.

    Use as a context manager: leaving it normally waits for every call and raises the first
    error; leaving it on an exception drops the calls not yet started and waits for the one
    running. After a call fails, the rest are skipped and the next :meth:`submit` raises.
    """

    def __init__(self, depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"`depth` must be >= 1, got {depth}")
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name="kumo-write", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if self._error is not None or self._stop.is_set():
                continue
            fn, args = item
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:  # noqa: ANN401
        """Queue ``fn(*args)`` (waits while ``depth`` calls are waiting); raises the error of
        an earlier call."""
        self._raise()
        if self._stop.is_set():
            raise RuntimeError("Background is closed")
        self._q.put((fn, args))

    def close(self) -> None:
        """Wait for every queued call; raise the first error."""
        if not self._stop.is_set():
            self._q.put(_END)
            self._worker.join()
            self._stop.set()
        self._raise()

    def cancel(self) -> None:
        """Drop the calls not yet started and wait for the running one."""
        self._stop.set()
        while True:  # make room for the end marker
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._q.put(_END)
        self._worker.join()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()
