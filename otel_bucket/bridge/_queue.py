"""The bridge's bounded span queue and the one worker that hands it to the exporter.

HTTP handlers only queue spans; one worker thread exports them, so the exporter sees one export
at a time, as under a batch processor. The queue is the bridge's back-pressure: a request whose
spans do not fit is answered 503 (the client keeps the data and retries later). While Bucket is
down the exporter keeps undelivered calls in its backlog and spills the oldest to its spool; with
no spool (or a full one) the worker stops taking spans once the backlog is nearly full, so an
outage fills this queue (and then the client's) instead of pushing calls out into nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

from otel_bucket.bridge._decode import VALUES_PER_SPAN
from otel_bucket.export._exporter import BucketSpanExporter

__all__ = ["CALLS_PER_SPAN", "HIGH_WATER", "ExportWorker", "SpanQueue"]

_log = logging.getLogger(__name__)

CALLS_PER_SPAN = 3  # at most a user, a company and an event call come from one span
_STALLED_LOOK = 0.05  # seconds between two looks for room while memory is full
HIGH_WATER = 0.9  # share of the backlog's capacity the worker fills when there is no spool room


class SpanQueue:
    """Spans accepted from requests, oldest first, held whole per request.

    Args:
        capacity: how many spans it holds, and 16 attribute values per span on average (see
            ``Limits.max_values``): spans are few, values many, when spans carry long arrays.
            A request is accepted whole or not at all; one larger than the capacity is
            accepted only into an empty queue, so it is never refused forever.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.value_capacity = VALUES_PER_SPAN * capacity
        self._items: deque[tuple[Sequence[ReadableSpan], int]] = deque()
        self._depth = 0
        self._values = 0
        self._accepted = 0  # spans ever accepted ...
        self._finished = 0  # ... and those the worker is done with (exported or lost)
        self._closed = False
        self._cond = threading.Condition()

    @property
    def depth(self) -> int:
        """Spans waiting for the worker."""
        return self._depth

    @property
    def values(self) -> int:
        """Attribute values the waiting spans hold (a request's count until it is all taken)."""
        return self._values

    @property
    def closed(self) -> bool:
        return self._closed

    def has_room(self, count: int, values: int = 0) -> bool:
        """Whether ``count`` spans holding ``values`` attribute values would be accepted now."""
        if self._closed:
            return False
        return not self._depth or (
            self._depth + count <= self.capacity and self._values + values <= self.value_capacity
        )

    def offer(self, spans: Sequence[ReadableSpan], values: int = 0) -> bool:
        """Queue all of ``spans``, or none of them (False: full or closed)."""
        with self._cond:
            if not self.has_room(len(spans), values):
                return False
            if spans:
                self._items.append((spans, values))
                self._depth += len(spans)
                self._values += values
                self._accepted += len(spans)
                self._cond.notify_all()
            return True

    def take(self, limit: int, timeout: float | None) -> list[ReadableSpan]:
        """Up to ``limit`` spans, oldest first; waits up to ``timeout`` s for the first one."""
        with self._cond:
            if not self._items and not self._closed and timeout:
                self._cond.wait(timeout)
            batch: list[ReadableSpan] = []
            while self._items and len(batch) < limit:
                head, values = self._items[0]
                want = limit - len(batch)
                if len(head) <= want:
                    batch.extend(head)
                    self._items.popleft()
                    self._values -= values
                else:
                    batch.extend(head[:want])
                    self._items[0] = (head[want:], values)
            self._depth -= len(batch)
            return batch

    def done(self, count: int) -> None:
        """The worker is finished with ``count`` taken spans."""
        with self._cond:
            self._finished += count
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait until every accepted span has been exported (or given up); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._finished >= self._accepted, timeout)

    def close(self) -> None:
        """Refuse further spans and wake the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class ExportWorker:
    """One thread: take batches from the queue, export them, retry the backlog when idle.

    Args:
        exporter: the exporter that maps and delivers; the worker shuts it down at the end.
        queue: where the spans wait.
        batch_size: the most spans per export (as the SDK's batch processor's default).
        backlog_limit: the exporter's backlog capacity, in calls.
        retry_interval: seconds between retries of waiting calls when no span arrives.
    """

    def __init__(
        self,
        exporter: BucketSpanExporter,
        queue: SpanQueue,
        *,
        batch_size: int = 512,
        backlog_limit: int,
        retry_interval: float = 1.0,
    ) -> None:
        self._exporter = exporter
        self._queue = queue
        self._batch_size = batch_size
        self._backlog_limit = backlog_limit
        self._retry_interval = retry_interval
        self._stop = threading.Event()
        self._deadline = 0.0
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(("exports", "exported_spans", "deferred_spans"), 0)
        self._thread = threading.Thread(target=self._run, name="otel-bucket-bridge-export")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def stalled(self) -> bool:
        """Whether the worker waits for room: the exporter's memory is at its high-water mark
        and there is no spool with room (looked at now)."""
        return self.span_room() <= 0

    def span_room(self) -> int:
        """How many spans the exporter can take now. All when it has a spool with room: a full
        backlog spills its oldest calls to the spool. Else only as many as its memory holds up to
        the high-water mark, so that an outage never pushes calls out of the backlog into
        nothing."""
        if self._exporter.spool_has_room():
            return self._batch_size
        room = int(self._backlog_limit * HIGH_WATER) - self._exporter.memory_pending
        return max(room, 0) // CALLS_PER_SPAN

    def stop(self, seconds: float) -> None:
        """Export what is queued within about ``seconds``, then shut the exporter down."""
        self._deadline = time.monotonic() + seconds
        self._queue.close()
        self._stop.set()
        if self._thread.ident is None:  # never started: nothing was queued
            self._exporter.shutdown_within(seconds)
            return
        self._thread.join(seconds + self._exporter.settings.timeout + 5)

    def _count(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                self._counts[name] += value

    def _export(self, batch: list[ReadableSpan]) -> None:
        """Hand ``batch`` to the exporter, which queues its calls and sends them from its own
        threads (this worker never waits for Bucket)."""
        try:
            self._exporter.submit(batch)
        except Exception:  # the exporter never raises; if it ever did, the worker must live on
            _log.exception("otel-bucket bridge: the export of %d span(s) raised", len(batch))
        self._count(exports=1, exported_spans=len(batch))
        self._queue.done(len(batch))

    def _run(self) -> None:
        while not self._stop.is_set():
            room = self.span_room()
            if room <= 0:
                # Memory is full and there is no spool to take more: exporting more would push
                # the oldest undelivered calls out. Leave spans queued until the exporter's
                # senders have delivered some (they retry on their own).
                self._stop.wait(_STALLED_LOOK)
                continue
            batch = self._queue.take(min(self._batch_size, room), self._retry_interval)
            if batch:
                self._export(batch)
        self._drain()

    def _drain(self) -> None:
        """Export everything queued until the deadline, then shut the exporter down (it gives
        its backlog a last attempt, spools what is left and reports what is lost)."""
        while True:
            left = self._deadline - time.monotonic()
            batch = self._queue.take(self._batch_size, None)
            if not batch:
                break
            if left <= 0:
                # No time to send them: their calls join the backlog, which the shutdown below
                # writes to the spool (or reports lost when there is none).
                rest = batch + self._queue.take(self._queue.depth, None)
                self._exporter.defer(rest)
                self._queue.done(len(rest))
                self._count(deferred_spans=len(rest))
                _log.warning(
                    "otel-bucket bridge: the drain time ran out with %d span(s) queued; their "
                    "calls are kept with the undelivered ones",
                    len(rest),
                )
                break
            self._export(batch)
        self._exporter.shutdown_within(max(self._deadline - time.monotonic(), 1.0))
