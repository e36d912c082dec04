"""A few long-lived daemon threads that run send work with instrumentation suppressed.

Not a ``ThreadPoolExecutor``: once interpreter exit has begun it refuses new work, which is
exactly when the provider's exit-time shutdown drains the last spans. These threads are started
before then and keep serving; if a thread cannot be started, the calling thread does the work.
The threads hold no reference to the exporter, so an exporter that is dropped without
``shutdown()`` can be collected, and its finalizer ends them.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from opentelemetry import context

from otel_bucket._fork import after_fork_in_child

__all__ = ["WorkerPool", "refuse_process_signals", "suppressed_instrumentation"]

_log = logging.getLogger(__name__)

# The key instrumentations check (opentelemetry.context exposes it for exporters), and the
# plain-string key the HTTP client instrumentations also check.
_SUPPRESS_KEYS = (context._SUPPRESS_INSTRUMENTATION_KEY, "suppress_http_instrumentation")


_PROCESS_SIGNALS = {
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name)
}


def refuse_process_signals() -> None:
    """Block SIGTERM, SIGHUP and SIGINT in the calling thread (one of ours).

    A process-directed signal goes to any thread that does not block it. Python runs handlers
    in the main thread only, and a main thread blocked in a lock (a join(), an Event().wait())
    is woken only if it received the signal itself: so every thread of ours refuses them.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _PROCESS_SIGNALS)


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


class WorkerPool:
    """Up to ``size - 1`` helper threads that run work beside the calling thread."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        after_fork_in_child(self, WorkerPool._after_fork)

    def spread(self, work: Callable[[], None], count: int) -> int:
        """Hand ``work`` to up to ``count`` helper threads (fewer when the pool is smaller or
        closed); return how many took it. The caller runs it too and waits for what it needs."""
        helpers = self._ensure_threads(min(count, self._size - 1))
        for _ in range(helpers):
            self._tasks.put(work)
        return helpers

    def _ensure_threads(self, wanted: int) -> int:
        with self._lock:
            while len(self._threads) < wanted and not self._closed:
                thread = threading.Thread(
                    target=_serve,
                    args=(self._tasks,),
                    name=f"otel-bucket-sender-{len(self._threads)}",
                    daemon=True,
                )
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down: the caller does the work
                    break
                self._threads.append(thread)
            return min(wanted, len(self._threads))

    def close(self) -> None:
        """Let the threads end; later work runs on the caller's thread alone."""
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


def _serve(tasks: queue.SimpleQueue[Callable[[], None] | None]) -> None:
    refuse_process_signals()
    context.attach(_suppressing())  # for this thread's whole life
    while True:
        work = tasks.get()
        if work is None:
            return
        try:
            work()
        except Exception:  # work guards itself; this only keeps the thread alive
            _log.exception("otel-bucket send work failed")
        del work  # hold nothing while idle
