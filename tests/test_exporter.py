"""BucketSpanExporter against a real HTTP server on 127.0.0.1: delivery (contract section 3)."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_bucket import BucketSpanExporter, __version__
from otel_bucket.delivery._queue import PATIENCE
from otel_bucket.devserver._schema import validate_call
from tests._capture import CaptureServer, Reply
from tests._running import free_port
from tests._spans import FakeClock, make_spans

KEY = "trKEY-s3cr3t-0123456789"
FULL = {
    "enduser.id": "u1",
    "bucket.user.name": "Ada",
    "bucket.company.id": "c1",
    "bucket.event": "Sent message",
}


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock: backoffs advance it instead of sleeping."""
    return FakeClock()


@pytest.fixture
def make(server: CaptureServer, clock: FakeClock) -> Iterator[Any]:
    """Build exporters pointed at the capture server; shut them all down afterwards."""
    made: list[BucketSpanExporter] = []

    def build(**options: Any) -> BucketSpanExporter:
        options.setdefault("endpoint", server.url)
        options.setdefault("clock", clock)
        exporter = BucketSpanExporter(KEY, **options)
        made.append(exporter)
        return exporter

    yield build
    for exporter in made:
        exporter.shutdown()


def test_calls_go_to_key_and_method_with_json_and_user_agent(
    server: CaptureServer, make: Any
) -> None:
    """Each call is POST {endpoint}/{key}/{method}, JSON, with our User-Agent; the event last."""
    result = make().export(make_spans(FULL))
    assert result is SpanExportResult.SUCCESS
    paths = [r.path for r in server.requests]
    assert sorted(paths[:2]) == [f"/{KEY}/company", f"/{KEY}/user"]
    assert paths[2] == f"/{KEY}/event"
    for request in server.requests:
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == f"otel-bucket/{__version__}"
        assert validate_call(request.api_method, request.json) == []


def test_delivered_calls_are_counted(server: CaptureServer, make: Any) -> None:
    """2xx counts as delivered."""
    exporter = make()
    exporter.export(make_spans(FULL))
    assert exporter.stats.delivered == 3
    assert exporter.stats.undelivered == 0


def test_each_event_goes_after_its_own_user_and_company(server: CaptureServer, make: Any) -> None:
    """An event is sent only once the user and company calls of its span were answered."""
    spans = make_spans(
        *[
            {"enduser.id": f"u{i}", "bucket.company.id": f"c{i}", "bucket.event": f"E{i}"}
            for i in range(20)
        ]
    )
    assert make(max_concurrency=4).export(spans) is SpanExportResult.SUCCESS
    first = {}
    for index, request in enumerate(server.requests):
        body = request.json
        key = (request.api_method, body.get("event", ""), body["userId"])
        first.setdefault(key, index)
    for i in range(20):
        event = first[("event", f"E{i}", f"u{i}")]
        assert first[("user", "", f"u{i}")] < event
        assert first[("company", "", f"u{i}")] < event


def test_a_failing_user_call_holds_back_only_its_own_events(
    server: CaptureServer, make: Any
) -> None:
    """No phases: with one user's calls answered 503, every other event goes out at once, and
    that user's event goes after its user call failed PATIENCE times (it does not wait for
    ever)."""
    server.route(
        lambda path, body: Reply(503) if path.endswith("/user") and b'"u0"' in body else Reply()
    )
    spans = make_spans(*[{"enduser.id": f"u{i}", "bucket.event": f"E{i}"} for i in range(5)])
    make(timeout=10).export(spans)
    events = [r.json["userId"] for r in server.requests if r.api_method == "event"]
    assert sorted(events) == [f"u{i}" for i in range(5)]
    order = [(r.api_method, r.json["userId"]) for r in server.requests]
    u0_tries = [i for i, call in enumerate(order) if call == ("user", "u0")]
    assert order.index(("event", "u1")) < u0_tries[1]  # not held until u0's retry
    assert sum(i < order.index(("event", "u0")) for i in u0_tries) == PATIENCE


def test_at_most_max_concurrency_calls_in_flight(server: CaptureServer, make: Any) -> None:
    """Calls run concurrently, never more than max_concurrency at once."""
    limit = 3
    lock = threading.Lock()
    active = 0
    peak = 0
    full = threading.Event()

    def rule(path: str, body: bytes) -> Reply:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active >= limit:
                full.set()
        full.wait(5)  # hold each request until the limit is reached once
        with lock:
            active -= 1
        return Reply()

    server.route(rule)
    spans = make_spans(*[{"enduser.id": f"u{i}"} for i in range(12)])
    assert make(max_concurrency=limit).export(spans) is SpanExportResult.SUCCESS
    assert peak == limit
    assert len(server.requests) == 12


def test_400_is_not_retried_and_logged_with_body(
    server: CaptureServer, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """400: rejected once, a warning with the method and the response body; export succeeds."""
    server.script(Reply(400, body='{"error": "userId must be a string"}'))
    exporter = make()
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        result = exporter.export(make_spans({"enduser.id": "u"}))
    assert result is SpanExportResult.SUCCESS
    assert len(server.requests) == 1
    assert exporter.stats.rejected == 1
    assert "user" in caplog.text
    assert "userId must be a string" in caplog.text


def test_400_body_is_logged_up_to_200_characters(
    server: CaptureServer, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the first 200 characters of a rejection body reach the log."""
    server.script(Reply(400, body="x" * 5000))
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        make().export(make_spans({"enduser.id": "u"}))
    assert "x" * 200 in caplog.text
    assert "x" * 201 not in caplog.text


@pytest.mark.parametrize("status", [401, 403, 404])
def test_key_rejections_are_errors_not_retried(
    server: CaptureServer, make: Any, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """401/403/404: not retried, an error saying the tracking key was rejected."""
    server.default = Reply(status)
    exporter = make()
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        result = exporter.export(make_spans({"enduser.id": "u"}))
    assert result is SpanExportResult.SUCCESS
    assert len(server.requests) == 1
    assert "tracking key rejected" in caplog.text
    assert KEY not in caplog.text


@pytest.mark.parametrize("status", [405, 409, 413, 422])
def test_other_4xx_are_not_retried(server: CaptureServer, make: Any, status: int) -> None:
    """Other 4xx (not 408/429) are permanent rejections."""
    server.default = Reply(status)
    exporter = make()
    exporter.export(make_spans({"enduser.id": "u"}))
    assert len(server.requests) == 1
    assert exporter.stats.rejected == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(
    server: CaptureServer, make: Any, clock: FakeClock, status: int
) -> None:
    """408, 429 and 5xx are retried with backoff until delivered."""
    server.script(Reply(status), Reply(status))
    exporter = make()
    assert exporter.export(make_spans({"enduser.id": "u"})) is SpanExportResult.SUCCESS
    assert [r.reply_status for r in server.requests] == [status, status, 200]
    assert exporter.stats.retried == 2
    assert exporter.stats.delivered == 1
    assert len(clock.waits) == 2


def test_backoff_is_exponential_with_jitter(
    server: CaptureServer, make: Any, clock: FakeClock
) -> None:
    """Successive waits roughly double, each jittered within half to all of its ceiling."""
    server.script(*[Reply(503)] * 4)
    make(timeout=60).export(make_spans({"enduser.id": "u"}))
    assert len(clock.waits) == 4
    for n, wait in enumerate(clock.waits):
        ceiling = 0.5 * 2**n
        assert ceiling / 2 <= wait <= ceiling


def test_retry_after_seconds_is_honoured(
    server: CaptureServer, make: Any, clock: FakeClock
) -> None:
    """A Retry-After in seconds sets the wait before the retry."""
    server.script(Reply(429, headers={"Retry-After": "3"}))
    make().export(make_spans({"enduser.id": "u"}))
    assert clock.waits == [3.0]
    assert len(server.requests) == 2


def test_retry_after_http_date_is_honoured(
    server: CaptureServer, make: Any, clock: FakeClock
) -> None:
    """A Retry-After HTTP date sets the wait; one in the past leaves our own backoff."""
    soon = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=4), True)
    server.script(Reply(503, headers={"Retry-After": soon}))
    make().export(make_spans({"enduser.id": "u"}))
    assert len(clock.waits) == 1 and 2.5 <= clock.waits[0] <= 4.0
    server.script(Reply(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    make().export(make_spans({"enduser.id": "v"}))
    assert len(clock.waits) == 2 and 0.25 <= clock.waits[1] <= 0.5


def test_retry_after_beyond_the_deadline_gives_up(
    server: CaptureServer, make: Any, clock: FakeClock
) -> None:
    """A Retry-After longer than the time left ends the call undelivered, without waiting."""
    server.script(Reply(503, headers={"Retry-After": "120"}))
    exporter = make(timeout=10)
    assert exporter.export(make_spans({"enduser.id": "u"})) is SpanExportResult.FAILURE
    assert clock.waits == []
    assert exporter.stats.pending == 1


def test_retries_stop_at_the_export_deadline(
    server: CaptureServer, make: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Always-500 ends within one deadline: FAILURE, a warning with the count, kept for later."""
    server.default = Reply(500)
    exporter = make(timeout=10)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        result = exporter.export(make_spans({"enduser.id": "u"}))
    assert result is SpanExportResult.FAILURE
    assert sum(clock.waits) < 10
    assert 2 <= len(server.requests) <= 8
    assert exporter.stats.pending == 1
    assert "could not deliver 1 call" in caplog.text


def test_dropped_connections_are_retried(server: CaptureServer, make: Any) -> None:
    """A connection closed without an answer is retried."""
    server.script(Reply(drop=True))
    exporter = make()
    assert exporter.export(make_spans({"enduser.id": "u"})) is SpanExportResult.SUCCESS
    assert exporter.stats.delivered == 1
    assert exporter.stats.retried == 1


def test_unanswered_request_ends_undelivered_at_the_deadline(server: CaptureServer) -> None:
    """A request that gets no answer within the deadline ends undelivered (real clock)."""
    server.script(Reply(delay=30.0))
    exporter = BucketSpanExporter(KEY, endpoint=server.url, timeout=1.0)
    try:
        result = exporter.export(make_spans({"enduser.id": "u"}))
        stats = exporter.stats
    finally:
        server.release()
        exporter.shutdown()
    assert result is SpanExportResult.FAILURE
    assert stats.pending == 1
    assert stats.delivered == 0


def test_connection_refused_is_undelivered_and_key_never_logged(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection ends undelivered; no log record, at any level, holds the key."""
    exporter = make(endpoint=f"http://127.0.0.1:{free_port()}", timeout=3)
    with caplog.at_level(logging.DEBUG):
        result = exporter.export(make_spans(FULL))
    assert result is SpanExportResult.FAILURE
    assert exporter.stats.pending == 3
    assert "connection refused" in caplog.text
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()


def test_urllib3_request_lines_are_redacted(
    server: CaptureServer, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """urllib3's DEBUG request line (the requests path: a session of yours, or a proxy) shows
    *** instead of the key."""
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        make(session=requests.Session()).export(make_spans({"enduser.id": "u"}))
    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("/***/user" in line for line in lines)
    assert all(KEY not in line for line in lines)


def test_other_urllib3_lines_are_untouched(server: CaptureServer, make: Any) -> None:
    """The redaction filter changes only our key in urllib3's records."""
    make()
    record = logging.LogRecord(
        "urllib3.connectionpool", 10, "", 0, "%s %s", ("/other/path", 1), None
    )
    for flt in logging.getLogger("urllib3.connectionpool").filters:
        flt.filter(record)
    assert record.getMessage() == "/other/path 1"


def test_shutdown_interrupts_a_backoff_at_once(server: CaptureServer) -> None:
    """shutdown() from another thread ends a long Retry-After wait immediately (real clock)."""
    server.default = Reply(503, headers={"Retry-After": "30"})
    exporter = BucketSpanExporter(KEY, endpoint=server.url, timeout=60)
    outcome: list[SpanExportResult] = []
    worker = threading.Thread(target=lambda: outcome.append(exporter.export(make_spans(FULL))))
    worker.start()
    server.wait_for(1)
    exporter.shutdown()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert outcome == [SpanExportResult.FAILURE]


def test_export_after_shutdown_sends_nothing(server: CaptureServer, make: Any) -> None:
    """After shutdown, export returns FAILURE and makes no request."""
    exporter = make()
    exporter.shutdown()
    assert exporter.export(make_spans(FULL)) is SpanExportResult.FAILURE
    assert server.requests == []


def test_shutdown_twice_and_concurrently_is_safe(make: Any) -> None:
    """shutdown may be called twice and from several threads at once."""
    exporter = make()
    threads = [threading.Thread(target=exporter.shutdown) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE


def test_export_never_raises_on_internal_fault(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever export is given, it returns a result instead of raising."""
    exporter = make()
    assert exporter.export([object()]) in (  # type: ignore[list-item]
        SpanExportResult.SUCCESS,
        SpanExportResult.FAILURE,
    )
    assert exporter.export(None) is SpanExportResult.FAILURE  # type: ignore[arg-type]


def test_events_without_user_are_dropped_with_a_rate_limited_warning(
    server: CaptureServer, make: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Orphan events are counted as dropped; the warning repeats at most once a minute."""
    exporter = make()
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        for _ in range(3):
            exporter.export(make_spans({"bucket.event": "E"}))
        clock.advance(61)
        exporter.export(make_spans({"bucket.event": "E"}, {"bucket.event": "F"}))
    warnings = [r.getMessage() for r in caplog.records if "bucket.event" in r.getMessage()]
    assert len(warnings) == 2
    assert "dropped 1 span" in warnings[0]
    assert "dropped 4 span" in warnings[1]
    assert exporter.stats.dropped == 5
    assert server.requests == []


def test_identical_user_calls_are_deduplicated_within_the_window(
    server: CaptureServer, make: Any, clock: FakeClock
) -> None:
    """The same user call within dedupe_window is sent once; after the window, again."""
    exporter = make(dedupe_window=60)
    span = {"enduser.id": "u", "bucket.user.plan": "pro"}
    exporter.export(make_spans(span))
    exporter.export(make_spans(span))
    assert len(server.calls("user")) == 1
    assert exporter.stats.deduplicated == 1
    clock.advance(61)
    exporter.export(make_spans(span))
    assert len(server.calls("user")) == 2


def test_changed_attributes_are_sent_again(server: CaptureServer, make: Any) -> None:
    """A user call with different attributes is not a duplicate."""
    exporter = make()
    exporter.export(make_spans({"enduser.id": "u", "bucket.user.plan": "free"}))
    exporter.export(make_spans({"enduser.id": "u", "bucket.user.plan": "pro"}))
    exporter.export(make_spans({"enduser.id": "u", "bucket.user.plan": True}))
    assert [c["attributes"]["plan"] for c in server.calls("user")] == ["free", "pro", True]


def test_attribute_less_calls_are_covered_by_any_call_for_the_same_ids(
    server: CaptureServer, make: Any
) -> None:
    """A call without attributes is covered by any delivered call for the same user/company."""
    exporter = make()
    exporter.export(make_spans({"enduser.id": "u", "bucket.user.a": 1, "bucket.company.id": "c"}))
    exporter.export(make_spans({"enduser.id": "u", "bucket.company.id": "c"}))
    exporter.export(make_spans({"enduser.id": "u", "bucket.user.a": 1}))
    assert len(server.calls("user")) == 1
    assert len(server.calls("company")) == 1


def test_company_dedupe_is_per_company_and_user(server: CaptureServer, make: Any) -> None:
    """The same company with another user is a new call (it associates that user)."""
    exporter = make()
    exporter.export(make_spans({"enduser.id": "u1", "bucket.company.id": "c"}))
    exporter.export(make_spans({"enduser.id": "u2", "bucket.company.id": "c"}))
    assert [c["userId"] for c in server.calls("company")] == ["u1", "u2"]


def test_events_are_never_deduplicated(server: CaptureServer, make: Any) -> None:
    """Identical events in successive exports are all sent."""
    exporter = make()
    for _ in range(3):
        exporter.export(make_spans({"enduser.id": "u", "bucket.event": "E"}))
    assert len(server.calls("event")) == 3


def test_dedupe_window_zero_turns_it_off(server: CaptureServer, make: Any) -> None:
    """dedupe_window=0 sends every call."""
    exporter = make(dedupe_window=0)
    for _ in range(3):
        exporter.export(make_spans({"enduser.id": "u"}))
    assert len(server.calls("user")) == 3


def test_dedupe_memory_is_bounded_lru(server: CaptureServer, make: Any) -> None:
    """With room for 2 entries, the least recently used user is forgotten first."""
    exporter = make(dedupe_size=2)
    for user in ["a", "b", "a", "c", "a", "b"]:
        exporter.export(make_spans({"enduser.id": user}))
    # a, b sent; a deduped (now most recent); c sent (evicts b); a deduped; b sent again.
    assert [c["userId"] for c in server.calls("user")] == ["a", "b", "c", "b"]


def test_undelivered_calls_are_not_remembered(
    server: CaptureServer, make: Any, clock: FakeClock
) -> None:
    """A user call that failed is sent by the next export, merged with the same user's call."""
    server.script(Reply(503, headers={"Retry-After": "30"}))
    exporter = make()
    exporter.export(make_spans({"enduser.id": "u"}))
    clock.advance(31)
    exporter.export(make_spans({"enduser.id": "u"}))
    assert len(server.calls("user")) == 1
    assert exporter.stats.delivered == 1


def test_offline_mode_sends_nothing(
    server: CaptureServer, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """offline=True logs the calls at debug level and sends nothing."""
    exporter = make(offline=True)
    with caplog.at_level(logging.DEBUG, logger="otel_bucket"):
        assert exporter.export(make_spans(FULL)) is SpanExportResult.SUCCESS
    assert server.requests == []
    assert "Sent message" in caplog.text


def test_user_session_is_used_and_left_open(server: CaptureServer, make: Any) -> None:
    """A session passed in is used for the calls and stays open after shutdown."""
    session = requests.Session()
    session.headers["X-Mine"] = "yes"
    exporter = make(session=session)
    exporter.export(make_spans({"enduser.id": "u"}))
    exporter.shutdown()
    assert server.requests[0].headers["X-Mine"] == "yes"
    assert session.get(server.url + "/still-open").status_code == 200
    session.close()


def test_own_requests_create_no_spans(server: CaptureServer, make: Any) -> None:
    """With RequestsInstrumentor active, the exporter's calls (workers included) make no span."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = RequestsInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        spans = make_spans(*[{"enduser.id": f"u{i}", "bucket.event": "E"} for i in range(10)])
        make(max_concurrency=4).export(spans)
        assert len(server.requests) == 20
        assert memory.get_finished_spans() == ()
        requests.get(server.url + "/app-call")  # the instrumentation is live for the app
        assert len(memory.get_finished_spans()) == 1
    finally:
        instrumentor.uninstrument()


def test_stats_is_a_read_only_snapshot(server: CaptureServer, make: Any) -> None:
    """stats is a frozen snapshot that later exports do not change."""
    exporter = make()
    before = exporter.stats
    exporter.export(make_spans({"enduser.id": "u"}))
    assert before.delivered == 0
    assert exporter.stats.delivered == 1
    with pytest.raises(AttributeError):
        before.delivered = 5  # type: ignore[misc]


def test_exporter_through_a_provider_end_to_end(server: CaptureServer) -> None:
    """Spans from a real provider reach the server as valid calls."""
    exporter = BucketSpanExporter(KEY, endpoint=server.url)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("checkout", attributes={"enduser.id": 7}):
        tracer.start_span("export", attributes={"enduser.id": 7, "bucket.event": "Export"}).end()
    provider.shutdown()
    bodies = [(r.api_method, json.loads(r.raw)) for r in server.requests]
    assert ("event", bodies[-1][1]) == bodies[-1] and bodies[-1][1]["event"] == "Export"
    assert all(validate_call(m, b) == [] for m, b in bodies)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_delivers_with_its_own_session(server: CaptureServer) -> None:
    """After fork, the child sends its own calls on a fresh session; the parent keeps working."""
    exporter = BucketSpanExporter(KEY, endpoint=server.url, timeout=5)
    exporter.export(make_spans({"enduser.id": "parent-before"}))
    parents = set(exporter._transport._connections)  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            result = exporter.export(make_spans({"enduser.id": "child", "bucket.event": "C"}))
            mine = set(exporter._transport._connections)  # type: ignore[attr-defined]
            fresh = bool(mine) and not mine & parents
            exporter.shutdown()
            code = 0 if fresh and result is SpanExportResult.SUCCESS else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    exporter.export(make_spans({"enduser.id": "parent-after"}))
    exporter.shutdown()
    users = [c["userId"] for c in server.calls("user")]
    assert users == ["parent-before", "child", "parent-after"]
    assert [c["event"] for c in server.calls("event")] == ["C"]


def test_proxy_settings_are_read_once_from_the_environment(
    server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY/NO_PROXY apply to our endpoint as requests would apply them."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that is not there
    monkeypatch.setenv("NO_PROXY", "")
    proxied = BucketSpanExporter(KEY, endpoint=server.url, timeout=1)
    assert proxied._transport.session.proxies.get("http") == "http://127.0.0.1:9"  # type: ignore[attr-defined]
    proxied.shutdown()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = BucketSpanExporter(KEY, endpoint=server.url)
    assert direct.export(make_spans({"enduser.id": "u"})) is SpanExportResult.SUCCESS
    assert len(server.calls("user")) == 1
    direct.shutdown()


def test_anonymous_events_are_dropped_without_a_warning(
    server: CaptureServer, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An event marked anonymous (a feature used with no user) is counted, not warned about; an
    event without a user and without the marker still is."""
    exporter = make()
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        exporter.export(make_spans({"bucket.event": "E", "bucket.anonymous": True}))
        assert caplog.records == []
        exporter.export(make_spans({"bucket.event": "E"}))
    assert "no enduser.id" in caplog.text
    assert exporter.stats.dropped == 2
    assert server.requests == []
