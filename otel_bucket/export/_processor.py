"""``BucketSpanProcessor``: a batch processor that queues only the spans Bucket needs.

The SDK's ``BatchSpanProcessor`` takes every sampled span into one shared queue and skips
unsampled ones. Analytics need the opposite on both counts: a burst of a service's ordinary spans
must not push feature spans out of the queue, and spans recorded but not sampled (see
``BucketSampler``) must be exported. Batching is our own here, built on public API only, so it
behaves the same across SDK versions; the ``OTEL_BSP_*`` variables apply as they do to the SDK's.

Every export runs on the processor's own worker thread: ``force_flush``, ``shutdown`` and the
drains at a process's end (``lifecycle``) hand it a ``_drains.Request`` through a
``queue.SimpleQueue``, whose ``put`` is reentrant, and wait for the answer on a queue of their
own. So a signal handler that interrupts the main thread anywhere, even inside ``on_end`` or
inside another wait, never waits for a lock that thread holds.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from otel_bucket.export._batching import BatchSettings, resolve_batch_settings
from otel_bucket.export._drains import PROCESS_ENDS, Request
from otel_bucket.export._exporter import BucketSpanExporter
from otel_bucket.ground._fork import after_fork_in_child
from otel_bucket.ground._threads import refuse_process_signals
from otel_bucket.instrument._sampling import is_relevant

__all__ = ["BatchSettings", "BucketSpanProcessor"]

_log = logging.getLogger(__name__)

_WARN_EVERY: Final = 60.0  # seconds between two "queue full" lines
_LOOK_FOR_ROOM: Final = 0.05  # seconds between two looks while the exporter's memory is full
_GRACE: Final = 1.0  # seconds a final drain may overrun its deadline before the caller takes over


class BucketSpanProcessor(SpanProcessor):
    """Batches the Bucket-relevant spans (sampled or only recorded) for one exporter.

    Args:
        exporter: where batches go; default ``BucketSpanExporter()`` configured from the
            environment.
        max_queue_size: spans held at most (``OTEL_BSP_MAX_QUEUE_SIZE``, default 16,384); when
            full, the oldest is dropped, counted in ``dropped_spans`` and logged as an error.
        schedule_delay_millis: when given (or ``OTEL_BSP_SCHEDULE_DELAY`` is set), the longest a
            span waits for a batch to fill; by default spans are handed to the exporter as
            soon as they are queued (it sends their calls from its own threads).
        max_export_batch_size: spans per export (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, 512).
        export_timeout_millis: how long shutdown spends draining the queue at most, the
            exporter's last attempt included (``OTEL_BSP_EXPORT_TIMEOUT``, 30,000).
    """

    # Set by _start_worker, again in a forked child.
    _wakeups: queue.SimpleQueue[Request | None]
    _signalled: bool
    _worker: threading.Thread

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
        self._bucket = exporter if isinstance(exporter, BucketSpanExporter) else None
        if self._bucket is not None:  # read by a metric reader, never recorded in on_end
            self._bucket._metrics.watch_queue(self)
        # Unbounded deque, bounded by on_end: each span dropped is one successful popleft(), so
        # the count is exact without a lock on the hot path.
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._closed = False
        self._finished = False
        # list.append() and pop() are atomic: the first final drain appended is the one that
        # runs (later ones wait for it), and the first pop shuts the exporter down, once.
        self._finals: list[Request] = []
        self._exporter_claim: list[None] = [None]
        self._new_drop_counter()
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

    @property
    def dropped_spans(self) -> int:
        """Spans dropped from the full queue since this processor was built (in this process)."""
        return self._dropped

    @property
    def queued(self) -> int:
        """Spans waiting in the queue now."""
        return len(self._queue)

    # -- SpanProcessor --------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed or not is_relevant(span.attributes):
            return
        queue_ = self._queue
        if len(queue_) >= self._settings.max_queue_size:
            self._drop_oldest()
        queue_.append(span)
        # One put per wake-up, none while the worker already has one pending: a plain flag.
        if not self._signalled and (
            self._settings.eager or len(queue_) >= self._settings.max_export_batch_size
        ):
            self._signalled = True
            self._wakeups.put(None)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export every span queued now; ``False`` if that took longer than ``timeout_millis``."""
        request = self._begin(max(timeout_millis, 0) / 1000, finish=False)
        return request is not None and self._wait(request)

    def shutdown(self) -> None:
        """Drain the queue and shut the exporter down, within ``export_timeout_millis``."""
        self._shutdown_within(self._settings.export_timeout_millis / 1000)

    # -- drains (also used by _lifecycle and _signals) -----------------------------------------

    def _drain_budget(self) -> float:
        """Seconds a drain at a process's end may take: the exporter's ``timeout``."""
        if self._bucket is not None:
            return self._bucket.settings.timeout
        return self._settings.export_timeout_millis / 1000

    def _shutdown_within(self, seconds: float) -> None:
        request = self._begin(seconds, finish=True)
        if request is not None:
            self._wait(request)

    def _begin(self, seconds: float, *, finish: bool) -> Request | None:
        """Hand a flush, or the final drain, to the worker; the request to wait for.

        A flush after the final drain began gets None; a second final drain gets the first
        (a SIGTERM during the drain at exit waits for it instead of ending the process at once).
        """
        request = Request(time.monotonic() + seconds, finish=finish)
        if finish:
            self._finals.append(request)
            first = self._finals[0]
            if first is not request:
                if first.result is None:
                    # We may have interrupted its _begin before it reached the worker.
                    self._wakeups.put(first)
                return first
            self._closed = True
        elif self._closed:
            return None
        worker = self._worker
        if worker is threading.current_thread() or not worker.is_alive():
            self._serve([request])
        else:
            self._wakeups.put(request)
        return request

    def _wait(self, request: Request) -> bool:
        """The worker's answer to ``request``; a final drain past its deadline is taken over."""
        grace = _GRACE if request.finish else 0.0
        ok = request.wait(request.deadline + grace - time.monotonic())
        if ok is not None:
            return ok
        if request.finish:  # the exporter ignores the deadline: count here what is left
            self._account_leftovers()
            self._shut_exporter(0.0)
        return False

    # -- the worker -----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        self._full = False
        self._wakeups = queue.SimpleQueue()
        self._signalled = False
        self._worker = threading.Thread(
            target=self._work, args=(self._wakeups,), name="OtelBucketSpanProcessor", daemon=True
        )
        self._worker.start()

    def _after_fork(self) -> None:
        # The parent's spans are the parent's to send; a lock held by a parent thread would hang.
        self._queue.clear()
        self._new_drop_counter()
        if self._closed:
            return
        self._start_worker()
        PROCESS_ENDS.child_started(self)  # the lifecycle layer drains it at the child's end

    def _work(self, wakeups: queue.SimpleQueue[Request | None]) -> None:
        refuse_process_signals()
        delay = self._settings.schedule_delay_millis / 1000
        while not self._finished:
            try:
                first = wakeups.get(timeout=_LOOK_FOR_ROOM if self._full else delay)
            except queue.Empty:
                first = None
            self._signalled = False  # before reading the queue: a later span wakes us again
            requests: list[Request] = []
            item = first
            while True:
                # A final drain may come twice (see _begin); one answer is enough.
                if item is not None and item.result is None and item not in requests:
                    requests.append(item)
                try:
                    item = wakeups.get_nowait()
                except queue.Empty:
                    break
            if requests:
                self._serve(requests)
            elif self._queue:
                self._export_queued(len(self._queue), None)

    def _serve(self, requests: list[Request]) -> None:
        """Answer flush requests, or run the final drain; on the worker (or inline)."""
        finals = [request.deadline for request in requests if request.finish]
        # A flush that comes with the final drain must not stretch the drain's deadline.
        deadline = min(finals) if finals else max(request.deadline for request in requests)
        complete = self._export_queued(len(self._queue), deadline)
        if finals:
            self._finished = True
            complete = self._account_leftovers() and complete
            self._shut_exporter(max(deadline - time.monotonic(), 0.0))
        else:
            self._report_losses(0)
            remaining_ms = int(max(deadline - time.monotonic(), 0.0) * 1000)
            try:
                flushed = self._exporter.force_flush(remaining_ms)
            except Exception:
                _log.exception("otel-bucket exporter raised in force_flush")
                flushed = False
            complete = complete and flushed is not False  # some exporters return None
        now = time.monotonic()
        for request in requests:
            request.answer(complete and now <= request.deadline + _GRACE)

    def _export_queued(self, count: int, deadline: float | None) -> bool:
        """Export up to ``count`` queued spans, oldest first; ``False`` if the deadline came
        first. Only ever one caller at a time (the worker, or an inline drain without one)."""
        size = self._settings.max_export_batch_size
        queue_ = self._queue
        while count > 0:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self._bucket is not None and not self._bucket.has_room():
                # The exporter's memory is nearly full and it has no spool with room: more would
                # push calls out into nothing. The spans wait here (the queue is the buffer).
                self._full = True
                if remaining is None:
                    return True  # the worker looks again soon
                time.sleep(min(_LOOK_FOR_ROOM, remaining))
                continue
            self._full = False
            batch: list[ReadableSpan] = []
            while len(batch) < min(size, count):
                try:
                    batch.append(queue_.popleft())
                except IndexError:
                    break
            if not batch:
                break
            count -= len(batch)
            try:
                if PROCESS_ENDS.spool_first(self._bucket, batch, remaining):
                    pass  # a reloader's child: to the spool first (see lifecycle._reloader)
                elif self._bucket is not None:  # queued: its senders send, nothing waits here
                    self._bucket.submit(batch)
                else:
                    self._exporter.export(batch)
            except Exception:  # a faulty exporter must not kill the worker
                _log.exception("otel-bucket exporter raised; %d spans lost", len(batch))
        return True

    def _take_queue(self) -> list[ReadableSpan]:
        spans: list[ReadableSpan] = []
        while True:
            try:
                spans.append(self._queue.popleft())
            except IndexError:
                return spans

    def _account_leftovers(self) -> bool:
        """After the final drain: keep (or count as lost) what is still queued; report."""
        leftovers = self._take_queue()
        unexported = len(leftovers)
        if leftovers and self._bucket is not None:
            # The exporter keeps their calls and counts them (one error line at its shutdown).
            self._bucket.defer(leftovers)
            unexported = 0
        self._report_losses(unexported)
        return not leftovers

    def _shut_exporter(self, seconds: float) -> None:
        try:
            self._exporter_claim.pop()
        except IndexError:
            return
        try:
            if self._bucket is not None:
                self._bucket.shutdown_within(seconds)
            else:
                self._exporter.shutdown()
        except Exception:
            _log.exception("otel-bucket exporter raised in shutdown")

    # -- a full queue ---------------------------------------------------------------------------

    def _new_drop_counter(self) -> None:
        # Reentrant: on_end may run again in a signal handler on the thread that holds it.
        self._drop_lock = threading.RLock()
        self._dropped = 0
        self._drops_unreported = 0
        self._next_drop_report = float("-inf")

    def _drop_oldest(self) -> None:
        try:
            self._queue.popleft()
        except IndexError:  # the worker emptied it meanwhile
            return
        with self._drop_lock:
            self._dropped += 1
            self._drops_unreported += 1
            now = time.monotonic()
            if now < self._next_drop_report:
                return
            self._next_drop_report = now + _WARN_EVERY
            count, self._drops_unreported = self._drops_unreported, 0
        _log.error(
            "otel-bucket queue full (%d spans): dropped the oldest %d span(s); "
            "raise max_queue_size or OTEL_BSP_MAX_QUEUE_SIZE",
            self._settings.max_queue_size,
            count,
        )

    def _report_losses(self, unexported: int) -> None:
        """One error line for spans not exported and drops not reported yet, if any."""
        with self._drop_lock:
            dropped, self._drops_unreported = self._drops_unreported, 0
        if unexported and dropped:
            _log.error(
                "otel-bucket could not export %d spans before shutdown; %d more were dropped "
                "from its full queue",
                unexported,
                dropped,
            )
        elif unexported:
            _log.error("otel-bucket could not export %d spans before shutdown", unexported)
        elif dropped:
            _log.error(
                "otel-bucket queue full (%d spans): dropped the oldest %d span(s); "
                "raise max_queue_size or OTEL_BSP_MAX_QUEUE_SIZE",
                self._settings.max_queue_size,
                dropped,
            )
