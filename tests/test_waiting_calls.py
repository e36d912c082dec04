"""Calls not delivered yet wait in memory (bounded, then the spool) and go out on their own:
after their backoff, with the next export, or at shutdown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_bucket import BucketSpanExporter
from otel_bucket.ground._call import Call, merge_calls
from tests._capture import CaptureServer, Reply
from tests._spans import FakeClock, make_spans

BUSY = Reply(503, headers={"Retry-After": "30"})  # beyond the deadline: kept at once
AFTER_BUSY = 31.0  # seconds the fake clock must move before the endpoint may be called again


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock."""
    return FakeClock()


@pytest.fixture
def exporter(server: CaptureServer, clock: FakeClock) -> Iterator[BucketSpanExporter]:
    """An exporter on the capture server with a fake clock."""
    exp = BucketSpanExporter("k", endpoint=server.url, clock=clock)
    yield exp
    exp.shutdown()


def _busy_once(marker: bytes) -> object:
    """A route that answers BUSY to the first request whose body holds ``marker``."""
    seen: list[bytes] = []

    def rule(path: str, body: bytes) -> Reply | None:
        if marker in body and not seen:
            seen.append(body)
            return BUSY
        return None

    return rule


def test_failed_calls_go_out_with_the_next_export(
    server: CaptureServer, exporter: BucketSpanExporter, clock: FakeClock
) -> None:
    """An event that failed is delivered by the next export, with its original timestamp."""
    server.route(_busy_once(b"Early"))
    first = make_spans({"enduser.id": "u", "bucket.event": "Early"})
    assert exporter.export(first) is SpanExportResult.FAILURE
    assert exporter.stats.pending == 1
    clock.advance(AFTER_BUSY)
    later = make_spans({"enduser.id": "u", "bucket.event": "Late"})
    assert exporter.export(later) is SpanExportResult.SUCCESS
    events = {e["event"]: e["timestamp"] for e in server.calls("event")}  # sent concurrently
    assert sorted(events) == ["Early", "Late"]
    assert events["Early"] < events["Late"]
    assert exporter.stats.pending == 0


def test_shutdown_gives_waiting_calls_one_last_attempt(
    server: CaptureServer, exporter: BucketSpanExporter, clock: FakeClock
) -> None:
    """At shutdown, waiting calls are tried once more and delivered if the API answers."""
    server.script(BUSY)
    exporter.export(make_spans({"enduser.id": "u"}))
    assert exporter.stats.pending == 1
    clock.advance(AFTER_BUSY)
    exporter.shutdown()
    assert [c["userId"] for c in server.calls("user")] == ["u"]
    assert exporter.stats.delivered == 1
    assert exporter.stats.pending == 0
    assert exporter.stats.undelivered == 0


def test_shutdown_with_the_endpoint_down_logs_the_loss(
    server: CaptureServer, exporter: BucketSpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """With the endpoint not answering, shutdown sends nothing and logs one error with the count."""
    server.default = Reply(drop=True)
    exporter.export(make_spans({"enduser.id": "a"}, {"enduser.id": "b", "bucket.event": "E"}))
    tried = len(server.requests)
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        exporter.shutdown()
    assert len(server.requests) == tried
    assert exporter.stats.undelivered == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "lost 3 call(s)" in errors[0]


def test_force_flush_sends_what_waits(
    server: CaptureServer, exporter: BucketSpanExporter, clock: FakeClock
) -> None:
    """force_flush sends the waiting calls now and says whether any is left."""
    server.script(BUSY)
    exporter.export(make_spans({"enduser.id": "u"}))
    assert exporter.force_flush() is False  # the endpoint asked for 30 s of quiet
    clock.advance(AFTER_BUSY)
    assert exporter.force_flush() is True
    assert exporter.stats.pending == 0
    assert len(server.calls("user")) == 1


def test_full_memory_sends_its_oldest_calls_to_the_spool_or_loses_them_with_an_error(
    server: CaptureServer, exporter: BucketSpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the memory limit the oldest waiting calls leave memory: with the spool off they are
    counted as undelivered and logged."""
    exporter._dispatcher._memory_limit = 2
    server.default = BUSY
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        exporter.export(make_spans(*[{"enduser.id": f"u{i}"} for i in range(5)]))
    assert exporter.stats.pending == 2
    assert exporter.stats.undelivered == 3
    assert "lost 3 call(s)" in caplog.text


def test_merge_calls_combines_same_ids_and_keeps_events() -> None:
    """merge_calls collapses user calls by id (later wins, latest timestamp); events untouched."""
    old = Call(
        "user",
        {"userId": "u", "attributes": {"a": 1, "b": 1}, "timestamp": "2026-01-01T00:00:00.000Z"},
    )
    new = Call(
        "user", {"userId": "u", "attributes": {"b": 2}, "timestamp": "2026-01-02T00:00:00.000Z"}
    )
    event = Call("event", {"event": "E", "userId": "u", "timestamp": "2026-01-01T00:00:00.000Z"})
    merged = merge_calls([old, event, new, event])
    assert merged[0].payload == {
        "userId": "u",
        "attributes": {"a": 1, "b": 2},
        "timestamp": "2026-01-02T00:00:00.000Z",
    }
    assert merged[1:] == [event, event]


def test_a_failed_call_is_retried_without_new_spans(server: CaptureServer) -> None:
    """A call that failed goes out again after its backoff on its own: no new span, no tick."""
    from opentelemetry.sdk.trace import TracerProvider

    from otel_bucket import BucketSpanProcessor

    server.script(Reply(503))
    exporter = BucketSpanExporter("k", endpoint=server.url, timeout=0.2)  # < the first backoff
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BucketSpanProcessor(exporter))
    provider.get_tracer("t").start_span("s", attributes={"enduser.id": "u"}).end()
    server.wait_for(2)  # the 503, then the retry
    assert [r.reply_status for r in server.requests] == [503, 200]
    provider.shutdown()
    assert (exporter.stats.delivered, exporter.stats.undelivered) == (1, 0)


def test_defer_keeps_calls_for_the_senders(server: CaptureServer) -> None:
    """``defer`` maps spans and keeps their calls without waiting; a flush sees them sent."""
    exporter = BucketSpanExporter("k", endpoint=server.url, timeout=2)
    try:
        exporter.defer(make_spans({"enduser.id": "u1", "bucket.event": "Export"}))
        assert exporter.force_flush()
        assert sorted(r.api_method for r in server.requests) == ["event", "user"]
    finally:
        exporter.shutdown()


def test_export_within_a_short_budget_ends_early(server: CaptureServer) -> None:
    """``export_within`` ends at its own budget, shorter than ``timeout``, keeping the calls."""
    server.default = Reply(status=503)
    exporter = BucketSpanExporter("k", endpoint=server.url, timeout=30)
    try:
        result = exporter.export_within(make_spans({"enduser.id": "u1"}), 0.3)
        assert result is SpanExportResult.FAILURE
        assert exporter.pending == 1
    finally:
        exporter.shutdown_within(0.2)


def test_a_slow_endpoint_gets_every_sender(server: CaptureServer) -> None:
    """Against an endpoint that answers in 50 ms, max_concurrency calls are in flight."""
    exporter = BucketSpanExporter("k", endpoint=server.url, max_concurrency=4, dedupe_window=0)
    server.default = Reply(delay=0.05)
    exporter.export(make_spans(*[{"enduser.id": f"u{i}"} for i in range(8)]))  # it learns
    lock = threading.Lock()
    active = peak = 0
    full = threading.Event()

    def rule(path: str, body: bytes) -> Reply:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active >= 4:
                full.set()
        full.wait(5)  # hold each request until four are in flight at once
        with lock:
            active -= 1
        return Reply()

    server.route(rule)
    try:
        exporter.export(make_spans(*[{"enduser.id": f"v{i}"} for i in range(16)]))
    finally:
        exporter.shutdown()
    assert peak == 4
