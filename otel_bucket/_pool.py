"""A few long-lived daemon threads that send calls with instrumentation suppressed.

Not a ``ThreadPoolExecutor``: once interpreter exit has begun it refuses new work, which is
exactly when the provider's exit-time shutdown drains the last spans. These threads are started
before then and keep serving; if a thread cannot be started, the calling thread does the work.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from opentelemetry import context

from otel_bucket._fork import after_fork_in_child

__all__ = ["WorkerPool", "suppressed_instrumentation"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

# The key instrumentations check (opentelemetry.context exposes it for exporters), and the
# plain-string key the HTTP client instrumentations also check.
_SUPPRESS_KEYS = (context._SUPPRESS_INSTRUMENTATION_KEY, "suppress_http_instrumentation")


def _suppressing() -> context.Context:
    ctx = context.get_current()
    for key in _SUPPRESS_KEYS:
        ctx = context.set_value(key, True, ctx)
    return ctx


@contextmanager
def suppressed_instrumentation() -> Iterator[None]:
    """Within the block, this thread's HTTP requests create no spans."""
    token = context.attach(_suppressing())
    try:
        yield
    finally:
        context.detach(token)


class _Batch(Generic[_T, _R]):
    """One ``map`` call's shared work list; any thread may take items from it."""

    def __init__(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> None:
        self.fn = fn
        self.todo = deque(enumerate(items))
        self.results: list[_R | None] = [None] * len(items)
        self.left = len(items)
        self.done = threading.Condition()

    def drain(self) -> None:
        while True:
            try:
                index, item = self.todo.popleft()
            except IndexError:
                return
            try:
                self.results[index] = self.fn(item)
            except Exception:  # fn guards itself; this only keeps the count right
                _log.exception("a send task failed")
            finally:
                with self.done:
                    self.left -= 1
                    self.done.notify_all()


class WorkerPool:
    """Runs a function over items with up to ``size`` threads (the caller's included)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[_Batch[Any, Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        after_fork_in_child(self, WorkerPool._after_fork)

    def map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R | None]:
        """``fn`` over ``items``; a result is None only where ``fn`` raised."""
        if not items:
            return []
        batch: _Batch[_T, _R] = _Batch(fn, items)
        helpers = self._ensure_threads(min(self._size, len(items)) - 1)
        for _ in range(helpers):
            self._tasks.put(batch)
        batch.drain()
        with batch.done:
            batch.done.wait_for(lambda: batch.left == 0)
        return batch.results

    def _ensure_threads(self, wanted: int) -> int:
        with self._lock:
            while len(self._threads) < wanted and not self._closed:
                thread = threading.Thread(
                    target=self._serve, name=f"otel-bucket-sender-{len(self._threads)}", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down: the caller does the work
                    break
                self._threads.append(thread)
            return min(wanted, len(self._threads))

    def _serve(self) -> None:
        context.attach(_suppressing())  # for this thread's whole life
        while True:
            batch = self._tasks.get()
            if batch is None:
                return
            batch.drain()

    def close(self) -> None:
        """Let the threads end; later ``map`` calls run on the caller's thread alone."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._tasks.put(None)
            self._threads = []

    def _after_fork(self) -> None:
        # The parent's threads do not exist in the child; start afresh on first use.
        self._lock = threading.Lock()
        self._tasks = queue.SimpleQueue()
        self._threads = []
