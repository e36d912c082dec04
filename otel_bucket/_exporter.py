"""``BucketSpanExporter``: spans in, ``user``/``company``/``event`` calls out (contract 2-4)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import requests
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_bucket._backlog import Backlog
from otel_bucket._clock import Clock, SystemClock
from otel_bucket._config import Settings, resolve_settings
from otel_bucket._dedupe import Deduper
from otel_bucket._fork import after_fork_in_child
from otel_bucket._health import EndpointHealth
from otel_bucket._mapping import Call, merge_calls, plan_calls
from otel_bucket._pool import WorkerPool, suppressed_instrumentation
from otel_bucket._redact import forget_secret, redact, register_secret
from otel_bucket._sender import Outcome, Result, Sender, new_session
from otel_bucket._stats import ExporterStats, StatsCounter
from otel_bucket._throttle import Throttle

__all__ = ["BucketSpanExporter"]

_log = logging.getLogger(__name__)

_PHASES = ("user", "company", "event")  # users exist before companies name them, both before events

try:
    _VERSION = version("otel-bucket")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"


class BucketSpanExporter(SpanExporter):
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
        clock: Clock | None = None,
    ) -> None:
        if session is not None and not isinstance(session, requests.Session):
            raise TypeError(f"session must be a requests.Session, got {type(session).__name__}")
        self._settings: Settings = resolve_settings(
            tracking_key=tracking_key,
            endpoint=endpoint,
            timeout=timeout,
            max_concurrency=max_concurrency,
            dedupe_window=dedupe_window,
            dedupe_size=dedupe_size,
            offline=offline,
        )
        self._clock: Clock = clock or SystemClock()
        self._stop = threading.Event()
        self._shut_down = False
        self._final_deadline = 0.0
        self._own_session = session is None
        self._new_state()
        self._pool = WorkerPool(self._settings.max_concurrency)
        self._sender = self._new_sender(
            session or new_session(self._settings.endpoint, self._settings.max_concurrency)
        )
        register_secret(self._settings.tracking_key)
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
        """How many calls wait in the backlog for a retry."""
        return len(self._backlog)

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
        if self._shut_down:
            return SpanExportResult.FAILURE
        try:
            with suppressed_instrumentation():
                return self._export(spans, min(max(seconds, 0.0), self._settings.timeout))
        except Exception as exc:  # our own fault must never reach the application
            _log.error("otel-bucket export failed: %s", self._redacted(exc))
            return SpanExportResult.FAILURE

    def defer(self, spans: Sequence[ReadableSpan]) -> None:
        """Map ``spans`` and keep their calls for a later attempt without sending now: for a
        drain whose deadline is spent. Never raises."""
        try:
            plan = plan_calls(spans)
            calls = [call for phase in plan.phases for call in phase]
            self._stats.add(dropped=plan.dropped_events + plan.skipped_spans)
            self._overflowed(self._backlog.keep(calls))
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
        self._stop.set()
        seconds = min(max(seconds, 0.0), self._settings.timeout)
        self._final_deadline = self._clock.monotonic() + seconds
        # A running export ends quickly now (no more waiting); let it put back what it could
        # not deliver before the final flush.
        got_lock = self._export_lock.acquire(timeout=seconds)
        try:
            self._final_flush()
        except Exception as exc:  # never raise out of the provider's shutdown
            _log.error("otel-bucket shutdown failed: %s", self._redacted(exc))
        finally:
            if got_lock:
                self._export_lock.release()
            self._pool.close()
            if self._own_session:
                self._sender.session.close()
            forget_secret(self._settings.tracking_key)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Retry the calls waiting in the backlog now; True when none is left waiting."""
        if self._shut_down:
            return not self._backlog
        try:
            with self._export_lock, suppressed_instrumentation():
                seconds = min(self._settings.timeout, max(timeout_millis, 0) / 1000)
                self._send_all([], self._clock.monotonic() + seconds)
        except Exception as exc:
            _log.error("otel-bucket flush failed: %s", self._redacted(exc))
        return not self._backlog

    # -- internals ----------------------------------------------------------------------------

    def _redacted(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._settings.tracking_key)

    def _export(self, spans: Sequence[ReadableSpan], seconds: float) -> SpanExportResult:
        plan = plan_calls(spans)
        if plan.dropped_events:
            self._warn_events_without_user(plan.dropped_events)
        fresh = [
            call for phase in plan.phases for call in phase if not self._dedupe.is_duplicate(call)
        ]
        deduplicated = sum(len(phase) for phase in plan.phases) - len(fresh)
        self._stats.add(dropped=plan.dropped_events + plan.skipped_spans, deduplicated=deduplicated)
        if self._settings.offline:
            for call in fresh:
                _log.debug("offline: would send %s %s", call.method, call.payload)
            return SpanExportResult.SUCCESS
        with self._export_lock:
            if self._shut_down:  # shutdown overtook us and has flushed already
                self._stats.add(undelivered=len(fresh))
                _log.error("otel-bucket lost %d call(s) exported during shutdown", len(fresh))
                return SpanExportResult.FAILURE
            left = self._send_all(fresh, self._clock.monotonic() + seconds)
        return SpanExportResult.FAILURE if left else SpanExportResult.SUCCESS

    def _send_all(self, fresh: list[Call], deadline: float) -> int:
        """Send the backlog and ``fresh`` phase by phase; keep what failed; return its count."""
        calls = merge_calls(self._backlog.take() + fresh)
        failed: list[Call] = []
        for method in _PHASES:
            phase = [call for call in calls if call.method == method]
            results = self._deliver(phase, deadline)
            failed += self._account(phase, results)
        if failed:
            self._overflowed(self._backlog.keep(failed))
            total = self._not_delivered.ready(len(failed))
            if total is not None:
                _log.warning(
                    "otel-bucket could not deliver %d call(s) to %s yet; %d wait for a retry "
                    "with the next export",
                    total,
                    self._settings.endpoint,
                    len(self._backlog),
                )
        return len(failed)

    def _final_flush(self) -> None:
        """One attempt for every waiting call, unless the endpoint is known to be down; then one
        error line with everything lost that was not reported yet."""
        calls = self._backlog.take()
        lost = len(calls)
        if calls and not self._health.is_down():
            deadline = self._final_deadline
            lost = 0
            with suppressed_instrumentation():
                for method in _PHASES:
                    phase = [call for call in calls if call.method == method]
                    results = self._pool.map(
                        lambda c: self._sender.send(c, deadline, last_chance=True), phase
                    )
                    lost += len(self._account(phase, results))
        self._stats.add(undelivered=lost)
        lost += self._overflow.flush()  # already counted; not yet reported
        if lost:
            _log.error("otel-bucket lost %d call(s) that could not be delivered", lost)

    def _overflowed(self, count: int) -> None:
        """Count the calls a full backlog gave up; report them at most once a minute."""
        if count:
            self._stats.add(undelivered=count)
            total = self._overflow.ready(count)
            if total is not None:
                _log.error(
                    "otel-bucket lost %d call(s) that could not be delivered: the backlog of "
                    "undelivered calls is full",
                    total,
                )

    def _deliver(self, calls: list[Call], deadline: float) -> list[Result | None]:
        """Send one phase; while the endpoint is down, one probe call decides for the rest."""
        if not calls:
            return []
        if self._health.probe_due():
            probe = self._sender.send(calls[0], self._health.probe_deadline(deadline))
            self._health.observe([probe])
            if self._health.is_down():
                return [probe, *self._skipped(len(calls) - 1)]
            rest = self._pool.map(lambda c: self._sender.send(c, deadline), calls[1:])
            return [probe, *rest]
        if self._health.is_down():
            return self._skipped(len(calls))
        results = self._pool.map(lambda c: self._sender.send(c, deadline), calls)
        self._health.observe(results)
        return results

    @staticmethod
    def _skipped(count: int) -> list[Result | None]:
        return [Result(Outcome.UNDELIVERED, reason="endpoint down")] * count

    def _account(self, calls: list[Call], results: list[Result | None]) -> list[Call]:
        """Count the results; return the calls that are still undelivered."""
        delivered = rejected = retried = dropped = 0
        failed: list[Call] = []
        key_rejected: Result | None = None
        for call, result in zip(calls, results, strict=True):
            if result is None:  # sending it raised (logged by the pool): retrying would again
                dropped += 1
                continue
            outcome = result.outcome
            retried += result.retries
            if outcome is Outcome.DELIVERED:
                delivered += 1
                self._dedupe.remember(call)
            elif outcome is Outcome.REJECTED:
                rejected += 1
                if result.status in (401, 403, 404):
                    key_rejected = result
            else:
                failed.append(call)
        if key_rejected is not None:
            _log.error(
                "otel-bucket: tracking key rejected by %s (HTTP %s); check BUCKET_TRACKING_KEY",
                self._settings.endpoint,
                key_rejected.status,
            )
        self._stats.add(delivered=delivered, rejected=rejected, retried=retried, dropped=dropped)
        return failed

    def _warn_events_without_user(self, count: int) -> None:
        suppressed = self._no_user_warning.ready(count)
        if suppressed is not None:
            _log.warning(
                "otel-bucket dropped %d span(s) with bucket.event but no enduser.id/user.id: "
                "the Tracking API requires a user for every event",
                suppressed,
            )

    def _new_sender(self, session: requests.Session) -> Sender:
        headers = {"Content-Type": "application/json", "User-Agent": f"otel-bucket/{_VERSION}"}
        return Sender(
            self._settings.endpoint,
            self._settings.tracking_key,
            session,
            headers,
            self._clock,
            self._stop,
        )

    def _new_state(self) -> None:
        """Locks, counters and memories: fresh at construction and in a forked child."""
        clock = self._clock.monotonic
        self._lock = threading.Lock()  # guards _shut_down
        self._export_lock = threading.Lock()  # one delivery at a time; shutdown waits for it
        self._stats = StatsCounter()
        self._dedupe = Deduper(self._settings.dedupe_window, self._settings.dedupe_size, clock)
        self._health = EndpointHealth(clock)
        self._backlog = Backlog()
        self._no_user_warning = Throttle(60.0, clock)
        self._not_delivered = Throttle(60.0, clock)
        self._overflow = Throttle(60.0, clock)

    def _after_fork(self) -> None:
        # The child starts its own history: the parent keeps (and retries) what it holds, and
        # the parent's connections must not be shared, so the child builds its own session (a
        # session the user passed in stays theirs to manage).
        self._new_state()
        if self._own_session:
            self._sender = self._new_sender(
                new_session(self._settings.endpoint, self._settings.max_concurrency)
            )
