"""``BucketSpanExporter``: spans in, ``user``/``company``/``event`` calls out (contract 2-4)."""

from __future__ import annotations

import logging
import os
import random
import threading
import weakref
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

import requests
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_bucket._backlog import Backlog, Pending, merge_pending
from otel_bucket._clock import Clock, SystemClock
from otel_bucket._config import Settings, resolve_settings
from otel_bucket._dedupe import Deduper
from otel_bucket._delivery import Outcomes, Pace, Phase, interleave
from otel_bucket._exporter_spool import ExporterSpool
from otel_bucket._filter import BeforeSend, BeforeSendFilter, check_before_send
from otel_bucket._fork import after_fork_in_child
from otel_bucket._gate import Gate
from otel_bucket._mapping import plan_calls
from otel_bucket._metrics import Recorder, check_meter_provider
from otel_bucket._pool import WorkerPool, suppressed_instrumentation
from otel_bucket._redact import forget_secret, redact, register_secret
from otel_bucket._report import Reporter
from otel_bucket._spool_info import disk_size
from otel_bucket._spooling import Spooling
from otel_bucket._stats import ExporterStats, StatsCounter
from otel_bucket._transport import NoTransport, SessionTransport, Transport, make_transport

__all__ = ["BucketSpanExporter"]

_log = logging.getLogger(__name__)

_PHASES = ("user", "company", "event")  # users exist before companies name them, both before events

try:
    _VERSION = version("otel-bucket")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"


def _release(pool: WorkerPool, transport: Transport, key: str) -> None:
    """Free what an exporter holds: at shutdown, or when it is dropped without one."""
    pool.close()
    transport.close()
    forget_secret(key)


class BucketSpanExporter(ExporterSpool, SpanExporter):
    """Sends the Bucket-relevant content of spans to the Bucket Tracking API.

    Args:
        tracking_key: the app's tracking key (else ``BUCKET_TRACKING_KEY``).
        endpoint: the API's base URL (else ``BUCKET_ENDPOINT``, else https://tracking.bucket.co).
        timeout: seconds one whole export may take, retries included (else ``BUCKET_TIMEOUT``, 10).
        max_concurrency: calls in flight at once (else ``BUCKET_MAX_CONCURRENCY``, 8).
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
        clock: the time source; for tests.
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
        self._stop = threading.Event()
        self._shut_down = False
        self._phase: Phase | None = None
        self._user_session = session
        self._rng = random.Random()
        self._new_state()
        self._metrics = Recorder(self, meter_provider)
        register_secret(self._settings.tracking_key)
        self._spooling = Spooling(self._settings, self._clock.monotonic)
        self._pool = WorkerPool(self._settings.max_concurrency)
        self._transport = self._new_transport()
        self._finalizer = weakref.finalize(
            self, _release, self._pool, self._transport, self._settings.tracking_key
        )
        self._finalizer.atexit = False  # at exit, the provider's shutdown drains first
        after_fork_in_child(self, BucketSpanExporter._after_fork)

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
        """How many calls are not settled yet: waiting for a retry, or being sent now."""
        return len(self._backlog) + self._sending

    @property
    def memory_pending(self) -> int:
        """How many calls are held in memory now: waiting in the backlog or being sent (calls in
        the spool are on disk and not counted). Read-only; for a receiver's high-water mark."""
        return len(self._backlog) + self._sending

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
        """Whether calls wait in the backlog, or maybe in the spool, for a ``force_flush``."""
        return bool(len(self._backlog)) or self._spooling.may_hold_calls()

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"BucketSpanExporter(endpoint={s.endpoint!r}, tracking_key='***', "
            f"timeout={s.timeout!r}, max_concurrency={s.max_concurrency!r}, offline={s.offline!r})"
        )

    # -- SpanExporter -------------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Map, deduplicate and deliver; never raises."""
        return self.export_within(spans, self._settings.timeout)

    def export_within(self, spans: Sequence[ReadableSpan], seconds: float) -> SpanExportResult:
        """``export``, ending within ``seconds`` (at most ``timeout``); for a bounded drain."""
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

    def defer(self, spans: Sequence[ReadableSpan]) -> None:
        """Map ``spans`` and keep their calls for a later attempt without sending now: for a
        drain whose deadline is spent. Never raises."""
        try:
            fresh = self._plan(spans)
            if self._shut_down:
                self._keep_for_later(fresh, "they were handed over after shutdown")
            elif fresh:
                self._keep(fresh)
        except Exception as exc:
            _log.error("otel-bucket could not keep spans: %s", self._redacted(exc))

    def shutdown(self) -> None:
        """Stop: interrupt backoffs at once, give waiting calls one last attempt, refuse later
        exports. Safe to call twice and concurrently with ``export``."""
        self.shutdown_within(self._settings.timeout)

    def shutdown_within(self, seconds: float) -> None:
        """``shutdown``, spending at most about ``seconds`` on the last attempt."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
            phase = self._phase
        self._stop.set()
        if phase is not None:
            phase.wake()
        seconds = min(max(seconds, 0.0), self._settings.timeout)
        deadline = self._clock.monotonic() + seconds
        # A running export ends at once now (no more waiting): let it put back what it could
        # not deliver before the last attempt.
        got_lock = self._export_lock.acquire(timeout=seconds)
        try:
            with suppressed_instrumentation():
                self._final_flush(deadline, got_lock)
        except Exception as exc:  # never raise out of the provider's shutdown
            _log.error("otel-bucket shutdown failed: %s", self._redacted(exc))
        finally:
            if got_lock:
                self._export_lock.release()
            self._finalizer()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Retry the calls waiting in the backlog now; True when none is left waiting."""
        if self._shut_down:
            return self.pending == 0
        seconds = min(self._settings.timeout, max(timeout_millis, 0) / 1000)
        if not self._export_lock.acquire(timeout=seconds):
            return False
        try:
            with suppressed_instrumentation():
                self._send([], self._clock.monotonic() + seconds)
        except Exception as exc:
            _log.error("otel-bucket flush failed: %s", self._redacted(exc))
        finally:
            self._export_lock.release()
        return self.pending == 0

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

    def _redacted(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._settings.tracking_key)

    def _plan(self, spans: Sequence[ReadableSpan]) -> list[Pending]:
        """Map, filter (``before_send``) and count; return the calls that are not duplicates
        of recent deliveries."""
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

    def _export(self, spans: Sequence[ReadableSpan], seconds: float) -> SpanExportResult:
        fresh = self._plan(spans)
        if self._settings.offline or not self._settings.endpoint:
            for item in fresh:
                _log.debug("offline: would send %s %s", item.method, item.call.payload)
            outcome = "dropped" if self._settings.offline else "undelivered"
            self._stats.add(**{outcome: len(fresh)})
            self._metrics.count(outcome, fresh)
            if not self._settings.offline and fresh:
                self._report.lost(len(fresh), "BUCKET_ENDPOINT is malformed")
            return SpanExportResult.SUCCESS if self._settings.offline else SpanExportResult.FAILURE
        with self._export_lock:
            if self._shut_down:  # shutdown overtook us and has flushed already
                self._keep_for_later(fresh, "they were exported after shutdown")
                return SpanExportResult.FAILURE
            left = self._send(fresh, self._clock.monotonic() + seconds)
        return SpanExportResult.FAILURE if left else SpanExportResult.SUCCESS

    def _send(self, fresh: list[Pending], deadline: float, *, last_chance: bool = False) -> int:
        """Send what waits and ``fresh``, phase by phase; keep what may succeed later. Return
        how many calls were not delivered (with ``last_chance``: how many are left over)."""
        backlog = self._backlog.take()
        old_ids = {id(item) for item in backlog}
        everything = backlog + fresh
        waiting, merged = merge_pending(everything)
        due = [item for item in waiting if item.not_before < deadline]
        self._stats.add(deduplicated=merged)
        self._metrics.removed("deduplicated", everything, waiting)
        self._keep([item for item in waiting if item.not_before >= deadline])
        if not last_chance:
            due += self._unspool(len(waiting), deadline)
        self._sending = len(due)
        kept = failed = 0
        try:
            for method in _PHASES:
                items = [item for item in due if item.method == method]
                old = [item for item in items if id(item) in old_ids or item.spool_id]
                new = [item for item in items if id(item) not in old_ids and not item.spool_id]
                outcomes = self._new_phase(interleave(old, new), deadline, last_chance).run(
                    self._pool
                )
                self._settle_spooled(items, outcomes.kept)
                self._keep([item for item in outcomes.kept if item.spool_id is None])
                self._sending -= len(items)
                kept += len(outcomes.kept)
                failed += len(outcomes.kept) + len(outcomes.given_up) + len(outcomes.misdirected)
                self._account(outcomes, items)
        finally:
            with self._lock:
                self._phase = None
            self._sending = 0
        if kept and not last_chance:
            self._report.not_delivered_yet(kept, len(self._backlog), self._gate.last_error)
        return failed

    def _new_phase(self, items: list[Pending], deadline: float, last_chance: bool) -> Phase:
        phase = Phase(
            items,
            deadline=deadline,
            transport=self._transport,
            gate=self._gate,
            pace=self._pace,
            clock=self._clock,
            stop=self._stop,
            rng=self._rng,
            last_chance=last_chance,
        )
        with self._lock:
            self._phase = phase
        if self._stop.is_set() and not last_chance:
            phase.wake()
        return phase

    def _account(self, outcomes: Outcomes, items: list[Pending]) -> None:
        delivered = {id(item) for item in outcomes.delivered}
        for item in items:  # in the order the calls were made: the memory is least-recent-first
            if id(item) in delivered:
                self._dedupe.remember(item.call)
        lost = len(outcomes.given_up) + len(outcomes.misdirected)
        self._stats.add(
            delivered=len(outcomes.delivered),
            rejected=len(outcomes.rejected),
            retried=outcomes.retries,
            dropped=len(outcomes.unsendable),
            undelivered=lost,
        )
        self._metrics.settled(outcomes, items)
        if outcomes.rejected:
            self._report.rejected(outcomes.rejected)
        if outcomes.misdirected:
            self._report.misdirected(outcomes.misdirected)
        if outcomes.given_up:
            self._report.given_up(outcomes.given_up)

    def _final_flush(self, deadline: float, got_lock: bool) -> None:
        """One attempt for every waiting call, unless the endpoint is known to be down; then one
        error line with everything lost that was not reported yet."""
        lost = 0
        if got_lock:
            if len(self._backlog) and self._settings.endpoint and not self._gate.is_down():
                self._send([], deadline, last_chance=True)
            # Failed again, or not tried (down, Retry-After): to the spool, or lost.
            lost = self._spool_leftovers(self._backlog.take())
        else:  # an export still runs past its deadline: what it holds is lost with the process
            lost = self.pending
            self._metrics.add("undelivered", lost)  # which methods is not known here
        self._stats.add(undelivered=lost)
        self._spooling.close()
        cause = self._gate.last_error or "no attempt could be made before the deadline"
        self._report.final(lost, f"the endpoint did not take them ({cause})")

    def _new_transport(self) -> Transport:
        s = self._settings
        headers = {"Content-Type": "application/json", "User-Agent": f"otel-bucket/{_VERSION}"}
        if self._user_session is not None:
            return SessionTransport(
                self._user_session, s.endpoint, s.tracking_key, headers, own=False
            )
        if not s.endpoint:  # malformed BUCKET_ENDPOINT: nothing is ever sent
            return NoTransport()
        return make_transport(s.endpoint, s.tracking_key, headers, s.max_concurrency)

    def _new_state(self) -> None:
        """Locks, counters and memories: fresh at construction and in a forked child."""
        clock = self._clock.monotonic
        self._lock = threading.Lock()  # guards _shut_down and _phase
        self._export_lock = threading.Lock()  # one delivery at a time; shutdown waits for it
        self._phase = None
        self._sending = 0
        self._stats: StatsCounter = StatsCounter()
        self._dedupe = Deduper(self._settings.dedupe_window, self._settings.dedupe_size, clock)
        self._gate: Gate = Gate(clock, self._settings.max_concurrency)
        self._pace = Pace(self._settings.max_concurrency)
        self._backlog: Backlog = Backlog()
        self._report: Reporter = Reporter(self._settings.endpoint, clock)
        self._filter = BeforeSendFilter(self._before_send, clock)

    def _after_fork(self) -> None:
        # The child starts its own history: the parent keeps (and retries) what it holds. The
        # transport and the pool open their own connections and threads in the child.
        self._new_state()
