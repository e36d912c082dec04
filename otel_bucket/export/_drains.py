"""How the processor is drained, without knowing why: drain requests, and the process's ends.

A ``Request`` is one flush (or the final drain) handed to a processor's worker. ``PROCESS_ENDS``
holds what the lifecycle layer does with a processor at a process's ends: drain it at a forked
child's exit, and keep its batches in the spool first in a reloader's child. The processor
calls these hooks and knows nothing of signals, exits or reloaders; ``lifecycle`` (a layer above
``export``) sets them when it is imported, which the package root does before any processor can
exist. Left unset, they do nothing.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from typing import Protocol

from opentelemetry.sdk.trace import ReadableSpan

from otel_bucket.export._exporter import BucketSpanExporter

__all__ = ["PROCESS_ENDS", "Drainable", "ProcessEnds", "Request"]


class Request:
    """A flush (or, with ``finish``, the final drain) for the worker, and its answer.

    Each waiter waits on a ``SimpleQueue`` of its own: a signal handler may wait for the same
    request while the code it interrupted waits for it too (a SIGTERM during the drain at exit),
    and ``SimpleQueue.get`` is not reentrant (``put`` is: the worker answers there).
    """

    __slots__ = ("deadline", "finish", "result", "waiters")

    def __init__(self, deadline: float, *, finish: bool) -> None:
        self.deadline = deadline
        self.finish = finish
        self.result: bool | None = None
        self.waiters: list[queue.SimpleQueue[bool]] = []

    def answer(self, ok: bool) -> None:
        self.result = ok  # first: a waiter arriving after the loop below reads it
        for waiter in list(self.waiters):
            waiter.put(ok)

    def wait(self, timeout: float) -> bool | None:
        """The answer, or None if it did not come within ``timeout`` seconds."""
        waiter: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self.waiters.append(waiter)
        if self.result is not None:
            return self.result
        try:
            return waiter.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None


class Drainable(Protocol):
    """What the lifecycle layer needs of a processor to drain it at a child's exit."""

    def _drain_budget(self) -> float: ...
    def _shutdown_within(self, seconds: float) -> None: ...


def _nothing(processor: Drainable) -> None:
    return None


def _never(
    bucket: BucketSpanExporter | None, spans: Sequence[ReadableSpan], seconds: float | None
) -> bool:
    return False


class ProcessEnds:
    """The lifecycle layer's hooks into every processor (see the module's docstring)."""

    def __init__(self) -> None:
        # In a forked child, once the processor's worker runs again.
        self.child_started: Callable[[Drainable], None] = _nothing
        # Before a batch is exported: True when the hook kept it (in the spool) instead.
        self.spool_first: Callable[
            [BucketSpanExporter | None, Sequence[ReadableSpan], float | None], bool
        ] = _never


PROCESS_ENDS = ProcessEnds()
