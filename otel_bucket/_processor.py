"""``BucketSpanProcessor``: a batch processor that queues only the spans Bucket needs.

The SDK's ``BatchSpanProcessor`` takes every sampled span into one shared queue and skips
unsampled ones. Analytics need the opposite on both counts: a burst of a service's ordinary spans
must not push feature spans out of the queue, and spans recorded but not sampled (see
``BucketSampler``) must be exported. Batching is our own here, built on public API only, so it
behaves the same across SDK versions; the ``OTEL_BSP_*`` variables apply as they do to the SDK's.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from otel_bucket._config import parse_count, resolve
from otel_bucket._exporter import BucketSpanExporter
from otel_bucket._fork import after_fork_in_child
from otel_bucket._sampling import is_relevant
from otel_bucket._throttle import Throttle

__all__ = ["BatchSettings", "BucketSpanProcessor"]

_log = logging.getLogger(__name__)

# name -> (environment variable, default); the SDK's names and defaults, but a larger queue:
# analytics arrive in bursts (a loop over 10,000 rows), and a span is small.
_OPTIONS: Final = {
    "max_queue_size": ("OTEL_BSP_MAX_QUEUE_SIZE", 16384),
    "schedule_delay_millis": ("OTEL_BSP_SCHEDULE_DELAY", 5000),
    "max_export_batch_size": ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
    "export_timeout_millis": ("OTEL_BSP_EXPORT_TIMEOUT", 30000),
}
_WARN_EVERY: Final = 60.0  # seconds between two "queue full" warnings


@dataclass(frozen=True)
class BatchSettings:
    """Resolved batching options: argument, else ``OTEL_BSP_*`` variable, else default."""

    max_queue_size: int
    schedule_delay_millis: int
    max_export_batch_size: int
    export_timeout_millis: int


def _int_argument(value: object) -> int:
    if isinstance(value, str):  # the variables are text; an argument must be an int
        raise TypeError(f"must be an int, got {type(value).__name__}")
    return parse_count(value)


def resolve_batch_settings(**given: int | None) -> BatchSettings:
    """Resolve each option in one place; a bad argument raises naming it.

    Raises:
        TypeError: an option is not an int.
        ValueError: an option is not positive, or the batch is larger than the queue.
    """
    values = {
        name: resolve(
            name, given.get(name), variable, parse_count, default, parse_argument=_int_argument
        )
        for name, (variable, default) in _OPTIONS.items()
    }
    if values["max_export_batch_size"] > values["max_queue_size"]:
        if given.get("max_export_batch_size") is not None:
            raise ValueError("max_export_batch_size must not exceed max_queue_size")
        values["max_export_batch_size"] = values["max_queue_size"]  # a small queue, default batch
    return BatchSettings(**values)


class BucketSpanProcessor(SpanProcessor):
    """Batches the Bucket-relevant spans (sampled or only recorded) for one exporter.

    Args:
        exporter: where batches go; default ``BucketSpanExporter()`` configured from the
            environment.
        max_queue_size: spans held at most (``OTEL_BSP_MAX_QUEUE_SIZE``, default 16,384); when
            full, the oldest is dropped and a warning logged.
        schedule_delay_millis: the longest a span waits for a batch (``OTEL_BSP_SCHEDULE_DELAY``,
            5,000).
        max_export_batch_size: spans per export (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, 512).
        export_timeout_millis: how long shutdown spends draining the queue at most
            (``OTEL_BSP_EXPORT_TIMEOUT``, 30,000).
    """

    def __init__(
        self,
        exporter: SpanExporter | None = None,
        *,
        max_queue_size: int | None = None,
        schedule_delay_millis: int | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: int | None = None,
    ) -> None:
        if exporter is not None and not isinstance(exporter, SpanExporter):
            raise TypeError(f"exporter must be a SpanExporter, got {type(exporter).__name__}")
        self._settings = resolve_batch_settings(
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
            export_timeout_millis=export_timeout_millis,
        )
        if exporter is None:
            exporter = BucketSpanExporter()
        self._exporter: SpanExporter = exporter
        self._queue: collections.deque[ReadableSpan] = collections.deque(
            maxlen=self._settings.max_queue_size
        )
        self._shutdown = False
        self._dropped = Throttle(_WARN_EVERY, time.monotonic)
        self._start_worker()
        after_fork_in_child(self, BucketSpanProcessor._after_fork)

    @property
    def exporter(self) -> SpanExporter:
        """The exporter batches are handed to."""
        return self._exporter

    @property
    def settings(self) -> BatchSettings:
        """The resolved batching options."""
        return self._settings

    # -- SpanProcessor --------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not is_relevant(span.attributes) or self._shutdown:
            return
        queue = self._queue
        if len(queue) == self._settings.max_queue_size:
            self._note_dropped()
        queue.append(span)  # a full deque drops its oldest span
        if len(queue) >= self._settings.max_export_batch_size and not self._wake.is_set():
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export every span queued now; ``False`` if that took longer than ``timeout_millis``."""
        if self._shutdown:
            return False
        deadline = time.monotonic() + timeout_millis / 1000
        if not self._export_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            done = self._export_batches(len(self._queue), deadline)
        finally:
            self._export_lock.release()
        remaining_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
        flushed = self._exporter.force_flush(remaining_ms)
        return done and flushed is not False  # some exporters return None from force_flush

    def shutdown(self) -> None:
        """Drain the queue (bounded by ``export_timeout_millis``), then shut the exporter down."""
        if self._shutdown:
            return
        self._shutdown = True
        self._wake.set()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(self._settings.export_timeout_millis / 1000)
        self._exporter.shutdown()

    # -- the worker -----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._worker = threading.Thread(
            target=self._work, name="OtelBucketSpanProcessor", daemon=True
        )
        self._worker.start()

    def _after_fork(self) -> None:
        # The parent's spans are the parent's to send; a lock held by a parent thread would hang.
        self._queue.clear()
        self._dropped = Throttle(_WARN_EVERY, time.monotonic)
        if self._shutdown:
            return
        self._start_worker()
        # A multiprocessing child ends with os._exit(), which skips the provider's atexit
        # shutdown, but runs multiprocessing's finalizers first: drain there too. Its registry
        # is cleared after this hook, so register through its own after-fork hook. (Only when
        # multiprocessing is in use: importing it would add an atexit hook to every process.)
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.register_after_fork(self, _drain_at_multiprocessing_exit)

    def _work(self) -> None:
        delay = self._settings.schedule_delay_millis / 1000
        while not self._shutdown:
            self._wake.wait(delay)
            self._wake.clear()
            if self._shutdown:
                break
            with self._export_lock:
                if self._queue:
                    self._export_batches(len(self._queue), None)
                else:
                    self._retry_pending()
        # Drain everything, failed exports included: the exporter keeps what it could not
        # deliver and fails fast once the endpoint is found dead, so this stays short.
        deadline = time.monotonic() + self._settings.export_timeout_millis / 1000
        with self._export_lock:
            self._export_batches(len(self._queue), deadline)
            lost = len(self._queue)
        if lost:
            _log.error("otel-bucket could not export %d spans before shutdown", lost)

    def _retry_pending(self) -> None:
        # Calls an earlier export could not deliver would otherwise wait for the next span;
        # on a quiet tick, send them (every export also sends them first).
        exporter = self._exporter
        if isinstance(exporter, BucketSpanExporter) and exporter.has_waiting_calls():
            exporter.force_flush(self._settings.export_timeout_millis)

    def _export_batches(self, count: int, deadline: float | None) -> bool:
        """Export up to ``count`` queued spans, oldest first; ``False`` if it stopped early.

        The caller holds the export lock, so the exporter never sees two exports at once.
        """
        size = self._settings.max_export_batch_size
        queue = self._queue
        while count > 0 and queue:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            batch: list[ReadableSpan] = []
            while queue and len(batch) < min(size, count):
                batch.append(queue.popleft())
            count -= len(batch)
            try:
                self._exporter.export(batch)
            except Exception:  # a faulty exporter must not kill the worker
                _log.exception("otel-bucket exporter raised; %d spans lost", len(batch))
        return True

    def _note_dropped(self) -> None:
        dropped = self._dropped.ready(1)
        if dropped is not None:
            _log.warning(
                "otel-bucket queue full (%d spans): dropped the oldest %d span(s); "
                "raise max_queue_size or OTEL_BSP_MAX_QUEUE_SIZE",
                self._settings.max_queue_size,
                dropped,
            )


def _drain_at_multiprocessing_exit(processor: BucketSpanProcessor) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(processor, processor.shutdown, exitpriority=10)
