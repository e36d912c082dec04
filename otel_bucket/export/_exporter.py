"""``BucketSpanExporter``: spans in, ``user``/``company``/``event`` calls out (contract 2-4).

Spans are mapped to calls and queued (``_dispatch``); senders post them from the moment they are
queued, each call as soon as it may go. ``export`` waits for its own calls' fates (within
``timeout``); the processor's ``submit`` does not wait at all.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Literal

import requests
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_bucket.books._metrics import Recorder, check_meter_provider
from otel_bucket.books._report import Reporter
from otel_bucket.books._stats import ExporterStats, StatsCounter
from otel_bucket.delivery._dispatch import Dispatcher
from otel_bucket.delivery._gate import Gate
from otel_bucket.delivery._pending import Pending, Ticket
from otel_bucket.delivery._transport import NoTransport, SessionTransport, Transport, make_transport
from otel_bucket.export._dedupe import Deduper
from otel_bucket.export._exporter_end import ExporterEnd
from otel_bucket.export._filter import BeforeSend, BeforeSendFilter, check_before_send
from otel_bucket.export._mapping import plan_calls
from otel_bucket.ground._clock import Clock, SystemClock
from otel_bucket.ground._config import Settings, resolve_settings
from otel_bucket.ground._fork import after_fork_in_child
from otel_bucket.ground._redact import forget_secret, register_secret
from otel_bucket.ground._threads import suppressed_instrumentation
from otel_bucket.ground._version import VERSION
from otel_bucket.spool._spool_info import disk_size
from otel_bucket.spool._spooling import Spooling

__all__ = ["MEMORY_LIMIT", "BucketSpanExporter"]

_log = logging.getLogger(__name__)

MEMORY_LIMIT = 10_000  # calls held in memory at most; beyond, the oldest go to the spool
_HIGH_WATER = 0.9  # share of it beyond which a processor waits, when the spool has no room


def _release(dispatcher: Dispatcher, transport: Transport, key: str) -> None:
    """Free what an exporter holds: at shutdown, or when it is dropped without one."""
    dispatcher.close()
    transport.close()
    forget_secret(key)


class BucketSpanExporter(ExporterEnd, SpanExporter):
    """Sends the Bucket-relevant content of spans to the Bucket Tracking API.

    Args:
        tracking_key: the app's tracking key (else ``BUCKET_TRACKING_KEY``).
        endpoint: the API's base URL (else ``BUCKET_ENDPOINT``, else https://tracking.bucket.co).
        timeout: seconds one attempt may take, and the longest ``export`` waits for its calls
            and the drain at shutdown takes (else ``BUCKET_TIMEOUT``, 10).
        max_concurrency: calls in flight at once at most (else ``BUCKET_MAX_CONCURRENCY``,
            128); within it, how many are in flight follows the endpoint's latency, the
            arrival rate and its signs of overload.
        dedupe_window: seconds a delivered user/company call suppresses identical ones
            (else ``BUCKET_DEDUPE_WINDOW``, 60; 0 turns it off).
        dedupe_size: how many delivered calls that memory holds (10,000; least recent forgotten).
        offline: log the calls at debug level instead of sending them (else ``BUCKET_OFFLINE``).
        session: a ``requests.Session`` to send with; it stays yours to close.
        spool_dir: where calls that could not be delivered are kept for a later process (else
            ``BUCKET_SPOOL_DIR``, else the user's cache directory); ``False`` or ``"off"``: none.
        spool_max_mb: the spool's size at most, in MiB (else ``BUCKET_SPOOL_MAX_MB``, 50).
        spool_max_age: seconds (or ``"48h"``) a spooled call is kept at most (else
            ``BUCKET_SPOOL_MAX_AGE``, 48 hours).
        before_send: ``(call: BucketCall) -> BucketCall | None``, run on the exporter's thread
            for every call before it is sent: return it, a changed copy (``call.replace(...)``)
            or None to drop it (counted in ``stats.filtered``).
        meter_provider: where otel-bucket's own metrics go (else the global ``MeterProvider``,
            even one set later; none set: they cost nothing).
        clock: the time source, for tests: with one, calls are sent only while ``export``,
            ``force_flush`` or ``shutdown`` runs, and only that thread moves time on.
    """

    def __init__(
        self,
        tracking_key: str | None = None,
        *,
        endpoint: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        dedupe_window: float | None = None,
        dedupe_size: int | None = None,
        offline: bool | None = None,
        session: requests.Session | None = None,
        spool_dir: str | os.PathLike[str] | Literal[False] | None = None,
        spool_max_mb: float | None = None,
        spool_max_age: float | str | None = None,
        before_send: BeforeSend | None = None,
        meter_provider: MeterProvider | None = None,
        clock: Clock | None = None,
    ) -> None:
        if session is not None and not isinstance(session, requests.Session):
            raise TypeError(f"session must be a requests.Session, got {type(session).__name__}")
        self._before_send = check_before_send(before_send)
        meter_provider = check_meter_provider(meter_provider)
        self._settings: Settings = resolve_settings(
            tracking_key=tracking_key,
            endpoint=endpoint,
            timeout=timeout,
            max_concurrency=max_concurrency,
            dedupe_window=dedupe_window,
            dedupe_size=dedupe_size,
            offline=offline,
            spool_dir=spool_dir,
            spool_max_mb=spool_max_mb,
            spool_max_age=spool_max_age,
        )
        self._clock: Clock = clock or SystemClock()
        self._background = clock is None
        self._shut_down = False
        self._stopping = False
        self._user_session = session
        self._metrics = Recorder(self, meter_provider)
        register_secret(self._settings.tracking_key)
        self._spooling = Spooling(self._settings, self._clock.monotonic)
        self._transport = self._new_transport()
        self._new_state()
        after_fork_in_child(self, BucketSpanExporter._after_fork)
        if self._spooling.may_hold_calls():  # left by an earlier process: send it now
            self._dispatcher.wake()

    @property
    def settings(self) -> Settings:
        """The resolved configuration (its repr hides the tracking key)."""
        return self._settings

    @property
    def stats(self) -> ExporterStats:
        """A read-only snapshot of the counters."""
        return self._stats.snapshot(pending=self.pending)

    @property
    def pending(self) -> int:
        """How many calls are not settled yet: waiting, blocked, in backoff, or being sent."""
        return self._dispatcher.pending

    @property
    def memory_pending(self) -> int:
        """How many calls are held in memory now: waiting, in backoff or being sent (calls in
        the spool are on disk and not counted). Read-only; for a receiver's high-water mark."""
        return self._dispatcher.pending

    @property
    def memory_limit(self) -> int:
        """How many calls memory holds at most; beyond, the oldest go to the spool (or are
        lost without one)."""
        return self._dispatcher.memory_limit

    def has_room(self) -> bool:
        """Whether more calls may be handed over now without pushing any out into nothing:
        memory is below 90 % of its limit, or the spool has room for what overflows."""
        return (
            self._dispatcher.pending < _HIGH_WATER * self._dispatcher.memory_limit
            or self.spool_has_room()
        )

    def spool_has_room(self) -> bool:
        """Whether a call pushed out of memory would be kept on disk without pushing older ones
        out: a spool exists, is not turned off, and its files (database and write-ahead log)
        take less than 90 % of its size limit (a spool at its limit keeps new calls by dropping
        its oldest). Cheap, two ``stat`` calls and no SQL: meant to be asked once per request."""
        spool = self._spooling.spool
        if spool is None or spool.disabled:
            return False
        return disk_size(spool.path) < 0.9 * self._settings.spool_max_bytes

    def has_waiting_calls(self) -> bool:
        """Whether calls wait in memory, or maybe in the spool, for a ``force_flush``."""
        return bool(self.pending) or self._spooling.may_hold_calls()

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"BucketSpanExporter(endpoint={s.endpoint!r}, tracking_key='***', "
            f"timeout={s.timeout!r}, max_concurrency={s.max_concurrency!r}, offline={s.offline!r})"
        )

    # -- SpanExporter -------------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Map, deduplicate, queue and wait (up to ``timeout``) for the calls' fates; never
        raises. SUCCESS when every call was delivered or permanently rejected."""
        return self.export_within(spans, self._settings.timeout)

    def export_within(self, spans: Sequence[ReadableSpan], seconds: float) -> SpanExportResult:
        """``export``, waiting at most ``seconds`` (and at most ``timeout``)."""
        start = self._clock.monotonic()
        try:
            with suppressed_instrumentation():
                result = self._export(spans, min(max(seconds, 0.0), self._settings.timeout))
            self._metrics.exported(
                self._clock.monotonic() - start, result is SpanExportResult.SUCCESS
            )
            return result
        except Exception as exc:  # our own fault must never reach the application
            _log.error("otel-bucket export failed: %s", self._redacted(exc))
            return SpanExportResult.FAILURE

    def submit(self, spans: Sequence[ReadableSpan]) -> None:
        """Map and queue ``spans``' calls, and return at once: they are sent in the background
        (what ``BucketSpanProcessor`` does). Never raises."""
        start = self._clock.monotonic()
        try:
            with suppressed_instrumentation():
                self._queue(self._plan(spans), None)
            self._metrics.exported(self._clock.monotonic() - start, True)
        except Exception as exc:
            _log.error("otel-bucket export failed: %s", self._redacted(exc))

    def defer(self, spans: Sequence[ReadableSpan]) -> None:
        """Map ``spans`` and keep their calls (after shutdown: in the spool); for a drain whose
        deadline is spent. Never raises."""
        try:
            self._queue(self._plan(spans), None)
        except Exception as exc:
            _log.error("otel-bucket could not keep spans: %s", self._redacted(exc))

    def shutdown(self) -> None:
        """Stop: every waiting call gets one last attempt now (backoffs are cut short), then
        what is left goes to the spool; later exports are refused. Safe to call twice and
        concurrently with ``export``."""
        self.shutdown_within(self._settings.timeout)

    def shutdown_within(self, seconds: float) -> None:
        """``shutdown``, spending at most about ``seconds`` on the last attempts."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
            self._stopping = True
        deadline = self._clock.monotonic() + min(max(seconds, 0.0), self._settings.timeout)
        try:
            with suppressed_instrumentation():
                self._final(deadline)
        except Exception as exc:  # never raise out of the provider's shutdown
            _log.error("otel-bucket shutdown failed: %s", self._redacted(exc))
        finally:
            self._finalizer()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Send what waits now, in memory and in the spool (backoffs are kept); True when
        nothing is left waiting."""
        if self._shut_down:
            return self.pending == 0
        seconds = min(self._settings.timeout, max(timeout_millis, 0) / 1000)
        try:
            with suppressed_instrumentation():
                if self._spooling.may_hold_calls():
                    self._spooling.look_now()
                self._dispatcher.drive(self._nothing_waits, self._clock.monotonic() + seconds)
        except Exception as exc:
            _log.error("otel-bucket flush failed: %s", self._redacted(exc))
        finally:
            self._spooling.flush()
        return self._nothing_waits()

    def _nothing_waits(self) -> bool:
        if self._dispatcher.pending or self._dispatcher.refilling:
            return False
        look = self._spooling.next_look()
        return look is None or look > self._clock.monotonic()

    def _drain_spool(self) -> int:
        """Send what the spool holds now, batch after batch while that makes progress (for
        ``otel-bucket spool flush``); return how many calls it still holds."""
        left = self._spooling.waiting()
        while left:
            self._spooling.look_now()
            self.force_flush()
            before, left = left, self._spooling.waiting()
            if left >= before:
                break
        return left

    # -- internals ----------------------------------------------------------------------------

    def _plan(self, spans: Sequence[ReadableSpan]) -> list[Pending]:
        """Map, filter (``before_send``) and count; return the calls that are not duplicates
        of recent deliveries (user and company calls first)."""
        plan = plan_calls(spans)
        if plan.dropped_events:
            self._report.events_without_user(plan.dropped_events)
        calls = [call for phase in plan.phases for call in phase]
        kept = self._filter.apply(calls)
        fresh = [Pending(call) for call in kept.calls if not self._dedupe.is_duplicate(call)]
        unusable = plan.dropped_events + plan.anonymous_events + plan.skipped_spans
        self._stats.add(
            calls=len(calls) + unusable,
            dropped=unusable + len(kept.failed),
            filtered=len(kept.filtered),
            deduplicated=len(kept.calls) - len(fresh),
        )
        self._metrics.planned(plan, kept, fresh)
        return fresh

    def _queue(self, fresh: list[Pending], ticket: Ticket | None) -> bool:
        """Hand ``fresh`` to the senders; False when they cannot be sent (offline, no valid
        endpoint, shut down): then they are counted here."""
        if self._settings.offline or not self._settings.endpoint:
            for item in fresh:
                _log.debug("offline: would send %s %s", item.method, item.call.payload)
            outcome = "dropped" if self._settings.offline else "undelivered"
            self._count(outcome, fresh)
            if not self._settings.offline and fresh:
                self._report.lost(len(fresh), "BUCKET_ENDPOINT is malformed")
            return self._settings.offline
        if self._shut_down:
            self._spool(fresh, "they were handed over after shutdown")
            return False
        self._dispatcher.submit(fresh, ticket)
        return True

    def _export(self, spans: Sequence[ReadableSpan], seconds: float) -> SpanExportResult:
        fresh = self._plan(spans)
        ticket = Ticket()
        if not self._queue(fresh, ticket):
            return SpanExportResult.FAILURE
        if self._settings.offline:
            return SpanExportResult.SUCCESS
        deadline = self._clock.monotonic() + seconds
        dispatcher = self._dispatcher
        if self._background:
            dispatcher.drive(lambda: ticket.open == 0, deadline)
        else:  # no senders of their own: this export also sends what is due meanwhile
            dispatcher.drive(lambda: ticket.open == 0 and dispatcher.quiet(), deadline)
        self._spooling.flush()
        return (
            SpanExportResult.SUCCESS
            if ticket.open == ticket.failed == 0
            else (SpanExportResult.FAILURE)
        )

    def _new_transport(self) -> Transport:
        s = self._settings
        headers = {"Content-Type": "application/json", "User-Agent": f"otel-bucket/{VERSION}"}
        if self._user_session is not None:
            return SessionTransport(
                self._user_session, s.endpoint, s.tracking_key, headers, own=False
            )
        if not s.endpoint:  # malformed BUCKET_ENDPOINT: nothing is ever sent
            return NoTransport()
        return make_transport(s.endpoint, s.tracking_key, headers, s.max_concurrency)

    def _new_state(self) -> None:
        """Locks, counters, memories and the senders: fresh at construction and in a forked
        child (the parent keeps, and sends, what it holds)."""
        clock = self._clock.monotonic
        self._lock = threading.Lock()  # guards _shut_down
        self._left = None
        self._stats: StatsCounter = StatsCounter()
        self._dedupe = Deduper(self._settings.dedupe_window, self._settings.dedupe_size, clock)
        self._gate: Gate = Gate(clock)
        self._report: Reporter = Reporter(self._settings.endpoint, clock)
        self._filter = BeforeSendFilter(self._before_send, clock)
        self._dispatcher = Dispatcher(
            transport=self._transport,
            gate=self._gate,
            clock=self._clock,
            books=weakref.proxy(self),  # the senders must not keep a dropped exporter alive
            ceiling=self._settings.max_concurrency,
            timeout=self._settings.timeout,
            memory_limit=MEMORY_LIMIT,
            background=self._background,
        )
        self._finalizer = weakref.finalize(
            self, _release, self._dispatcher, self._transport, self._settings.tracking_key
        )
        self._finalizer.atexit = False  # at exit, the provider's shutdown drains first

    def _after_fork(self) -> None:
        self._finalizer.detach()
        self._new_state()
