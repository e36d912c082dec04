"""The exporter against an endpoint that misbehaves on purpose (issue 15): no retry storm, a real
deadline, no head-of-line blocking, every loss counted, nothing leaked."""

from __future__ import annotations

import gc
import itertools
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_bucket import BucketSpanExporter
from otel_bucket.delivery._outcome import MAX_OWN_FAILURES
from otel_bucket.devserver import DevServer
from tests._hostile import Act, HostileServer, Request
from tests._running import ROOT, child_env, free_port
from tests._spans import FakeClock, balanced, make_spans

KEY = "trHOSTILE-key-42"


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """A scripted raw-socket server on 127.0.0.1."""
    srv = HostileServer()
    yield srv
    srv.close()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock: waits advance it at once."""
    return FakeClock()


@pytest.fixture
def made() -> Iterator[list[BucketSpanExporter]]:
    """Exporters a test builds, shut down afterwards."""
    exporters: list[BucketSpanExporter] = []
    yield exporters
    for exporter in exporters:
        exporter.shutdown_within(0.5)


def build(made: list[BucketSpanExporter], url: str, **options: Any) -> BucketSpanExporter:
    exporter = BucketSpanExporter(KEY, endpoint=url, **options)
    made.append(exporter)
    return exporter


def events(*names: str, user: str = "u") -> list[Any]:
    return make_spans(*[{"enduser.id": user, "bucket.event": name} for name in names])


# -- 1. no retry storm ----------------------------------------------------------------------------


PAST = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("retry_after", ["0", "-5", PAST, "0.0001", "soon"])
def test_tiny_or_bogus_retry_after_does_not_cause_a_retry_storm(
    hostile: HostileServer,
    clock: FakeClock,
    made: list[BucketSpanExporter],
    status: int,
    retry_after: str,
) -> None:
    """A Retry-After of 0, negative, past or unreadable falls back to our backoff: a few
    requests per call within the deadline, not thousands."""
    tried: dict[bytes, list[float]] = {}

    def answer(request: Any) -> Act:
        tried.setdefault(request.body, []).append(clock.now)  # when, on the fake clock
        return Act(status, headers={"Retry-After": retry_after})

    hostile.behaviour = answer
    exporter = build(made, hostile.url, clock=clock, timeout=3)
    assert exporter.export(events("E")) is SpanExportResult.FAILURE  # one user, one event
    assert len(hostile.requests) <= 2 * 4
    for times in tried.values():  # each call waits at least the first backoff between tries
        assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(times))


def test_retry_after_is_remembered_across_exports(
    hostile: HostileServer, clock: FakeClock, made: list[BucketSpanExporter]
) -> None:
    """After 429 with Retry-After: 3600 nothing is sent to the endpoint for an hour, however
    many exports and flushes come; then the waiting calls go out."""
    answers = iter([Act(429, headers={"Retry-After": "3600"})])
    hostile.behaviour = lambda r: next(answers, Act())
    exporter = build(made, hostile.url, clock=clock)
    exporter.export(events(*[f"E{i}" for i in range(200)]))
    assert len(hostile.requests) == 1
    for _ in range(10):
        clock.advance(5)
        exporter.export(events("later"))
        exporter.force_flush()
    assert len(hostile.requests) == 1
    assert exporter.pending == 211  # 210 events and their user
    clock.advance(3600)
    assert exporter.force_flush()
    assert exporter.stats.delivered == 211 and balanced(exporter.stats)


# -- 2. a real deadline ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_dripping_answer_cannot_stretch_an_export(
    hostile: HostileServer, made: list[BucketSpanExporter], where: str
) -> None:
    """An answer sent one byte at a time is cut at the export's deadline: the export ends and
    the connection is closed on the server. A 2xx whose body drips counts as delivered; headers
    that drip leave the call waiting for a retry."""
    drip = Act(drip=0.05, body=b" " * 200, drip_body=True) if where == "body" else Act(drip=0.2)
    hostile.behaviour = lambda r: drip
    exporter = build(made, hostile.url, timeout=0.5)
    started = time.monotonic()
    result = exporter.export(make_spans({"enduser.id": "u"}))
    elapsed = time.monotonic() - started
    assert result is (SpanExportResult.SUCCESS if where == "body" else SpanExportResult.FAILURE)
    assert elapsed < 5  # a hang guard; the drip alone would take minutes
    hostile.wait_for(1)
    deadline = time.monotonic() + 5
    while not hostile.hung_up and time.monotonic() < deadline:
        threading.Event().wait(0.05)  # the server notices the hang-up on its next byte
    assert hostile.hung_up == [0]


def test_force_flush_returns_while_the_endpoint_drips(
    hostile: HostileServer, made: list[BucketSpanExporter]
) -> None:
    """force_flush(1000) returns within its budget even when every answer drips."""
    hostile.behaviour = lambda r: Act(drip=0.2)
    exporter = build(made, hostile.url, timeout=0.5)
    exporter.export(make_spans({"enduser.id": "u"}))
    started = time.monotonic()
    assert exporter.force_flush(1000) is False
    assert time.monotonic() - started < 5  # a hang guard
    assert exporter.pending == 1


def test_an_endless_200_body_is_not_read(
    hostile: HostileServer, made: list[BucketSpanExporter]
) -> None:
    """A 2xx whose body never ends counts as delivered; at most a few KiB of it are read."""
    hostile.behaviour = lambda r: Act(endless=True)
    exporter = build(made, hostile.url, timeout=2)
    assert exporter.export(make_spans({"enduser.id": "u"})) is SpanExportResult.SUCCESS
    assert exporter.stats.delivered == 1
    hostile.wait_for(1)
    exporter.shutdown()
    assert hostile.bytes_sent < 64 * 2**20  # the socket buffers, not the body


EXIT_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from opentelemetry.sdk.trace import TracerProvider
    from otel_bucket import BucketSpanProcessor, BucketSpanExporter
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    exporter = BucketSpanExporter("trEXIT-key", endpoint=sys.argv[1], timeout=1)
    provider = TracerProvider()
    provider.add_span_processor(BucketSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    for i in range(int(sys.argv[2])):
        tracer.start_span("e", attributes={"enduser.id": "u", "bucket.event": f"E{i}"}).end()
    print("made", flush=True)
    """
)


@pytest.mark.slow
def test_exit_against_a_dripping_endpoint_is_bounded_and_counted(hostile: HostileServer) -> None:
    """A process exiting while the endpoint drips exits promptly and logs every lost call."""
    hostile.behaviour = lambda r: Act(drip=0.2)
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, hostile.url, "11"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lost = [int(n) for n in re.findall(r"lost (\d+) call", proc.stderr)]
    assert sum(lost) == 12, proc.stderr  # 11 events and their user
    assert "trEXIT-key" not in proc.stderr


# -- 3. no head-of-line blocking ------------------------------------------------------------------


def test_old_failing_calls_do_not_starve_fresh_ones(
    hostile: HostileServer, clock: FakeClock, made: list[BucketSpanExporter]
) -> None:
    """3,000 waiting calls the endpoint answers 503 forever do not keep 100 fresh events out."""
    hostile.behaviour = lambda r: Act(503) if b'"old' in r.body else Act()
    exporter = build(made, hostile.url, clock=clock)
    exporter.export(events(*[f"old{i}" for i in range(3000)]))
    fresh_sent = 0
    for batch in range(5):
        clock.advance(10)
        exporter.export(events(*[f"fresh{batch}-{i}" for i in range(20)]))
        fresh_sent += 20
    delivered = [r for r in hostile.requests if b'"fresh' in r.body]
    assert len({r.body for r in delivered}) == fresh_sent
    assert balanced(exporter.stats)


def test_a_call_that_keeps_failing_alone_is_given_up_and_counted(
    hostile: HostileServer,
    clock: FakeClock,
    made: list[BucketSpanExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A poison call (500 every time while others are delivered) is given up after a bounded
    number of attempts, counted as undelivered and logged; the rest keep flowing."""
    hostile.behaviour = lambda r: Act(500, body=b"boom") if b"poison" in r.body else Act()
    exporter = build(made, hostile.url, clock=clock)
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        exporter.export(events("poison", "ok-0"))
        for i in range(1, 40):
            clock.advance(10)
            exporter.export(events(f"ok-{i}"))
    poison = [r for r in hostile.requests if b"poison" in r.body]
    assert len(poison) == MAX_OWN_FAILURES
    stats = exporter.stats
    assert stats.undelivered == 1 and stats.pending == 0
    assert len({r.body for r in hostile.requests if b'"ok-' in r.body}) == 40
    assert "HTTP 500: boom" in caplog.text and "lost 1 call" in caplog.text
    assert balanced(exporter.stats)


def test_every_second_call_failing_still_delivers_everything(
    hostile: HostileServer, clock: FakeClock, made: list[BucketSpanExporter]
) -> None:
    """With every second request answered 503, all 2,500 events arrive over a few exports.
    A call is failed twice at most: by chance alone, one of 2,500 calls would otherwise land on
    an odd request 16 times in a row now and then (about once in 25 runs), and rightly be given
    up as poisoned (that rule has tests of its own)."""
    failed: Counter[bytes] = Counter()
    answered: set[bytes] = set()  # bodies answered 200

    def every_second(r: Request) -> Act:
        if r.index % 2 and failed[r.body] < 2:
            failed[r.body] += 1
            return Act(503)
        answered.add(r.body)
        return Act()

    hostile.behaviour = every_second
    exporter = build(made, hostile.url, clock=clock)
    for batch in range(5):
        exporter.export(events(*[f"E{batch}-{i}" for i in range(500)], user="u"))
        clock.advance(10)
    for _ in range(30):
        if exporter.force_flush():
            break
        clock.advance(10)
    stats = exporter.stats
    assert (stats.undelivered, stats.pending) == (0, 0)
    assert sum(failed.values()) >= len(hostile.requests) // 3  # failures all along
    assert len({body for body in answered if b'"E' in body}) == 2500


def test_a_lone_surrogate_is_replaced_not_refused() -> None:
    """A lone surrogate in an attribute is sent as U+FFFD; the dev server takes the call."""
    with DevServer(port=0, db_path=":memory:") as devserver:
        exporter = BucketSpanExporter(KEY, endpoint=devserver.url, timeout=5)
        spans = make_spans(
            {"enduser.id": "u\ud800", "bucket.event": "E", "bucket.attributes.x": "a\udfffb"}
        )
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter.shutdown()
        assert (exporter.stats.delivered, exporter.stats.rejected) == (2, 0)


# -- 4. the probe waits as long as an export may --------------------------------------------------


def test_a_slow_endpoint_is_seen_as_recovered(
    clock: FakeClock, made: list[BucketSpanExporter]
) -> None:
    """Once down, a probe answered after 2.2 s (timeout 4) brings the endpoint back: the probe
    may take as long as an export."""
    port = free_port()
    exporter = build(made, f"http://127.0.0.1:{port}", clock=clock, timeout=4)
    exporter.export(make_spans({"enduser.id": "a"}))  # refused: down
    slow = HostileServer(lambda r: Act(delay=2.2), port=port)
    try:
        clock.advance(3)  # a probe is due
        assert exporter.export(make_spans({"enduser.id": "b"})) is SpanExportResult.SUCCESS
        assert exporter.stats.delivered == 2
    finally:
        slow.close()


# -- 6. every loss counted ------------------------------------------------------------------------


def test_pending_counts_calls_in_flight(
    hostile: HostileServer, made: list[BucketSpanExporter]
) -> None:
    """While an export is sending, its calls are counted in pending, not lost from sight."""
    hostile.behaviour = lambda r: Act(delay=30)
    exporter = build(made, hostile.url, timeout=30)
    thread = threading.Thread(
        target=exporter.export, args=(make_spans(*[{"enduser.id": f"u{i}"} for i in range(20)]),)
    )
    thread.start()
    hostile.wait_for(8)
    assert exporter.pending == 20
    hostile.release()
    thread.join(10)
    assert exporter.pending == 0 and exporter.stats.delivered == 20


def test_exports_after_shutdown_are_counted_and_reported(
    hostile: HostileServer, made: list[BucketSpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """Calls handed over after shutdown are counted as undelivered and logged, not dropped
    silently."""
    exporter = build(made, hostile.url)
    exporter.shutdown()
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        assert exporter.export(events("late")) is SpanExportResult.FAILURE
    assert exporter.stats.undelivered == 2 and balanced(exporter.stats)
    assert "lost 2 call(s)" in caplog.text
    assert hostile.requests == []


def test_losses_at_shutdown_match_the_logs(
    hostile: HostileServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Against 503 everywhere, the ERROR lines add up to exactly the calls lost."""
    hostile.behaviour = lambda r: Act(503)
    exporter = BucketSpanExporter(KEY, endpoint=hostile.url, clock=clock, timeout=2)
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        for batch in range(30):
            exporter.export(events(*[f"E{batch}-{i}" for i in range(500)], user=f"u{batch}"))
            clock.advance(1)
        exporter.shutdown()
    lost = sum(int(n) for n in re.findall(r"lost (\d+) call", caplog.text))
    stats = exporter.stats
    assert stats.pending == 0 and balanced(exporter.stats)
    assert lost == stats.undelivered == stats.calls - stats.delivered


# -- 8. the key never leaks -----------------------------------------------------------------------


def test_the_key_is_in_no_log_line_at_any_level(
    hostile: HostileServer,
    clock: FakeClock,
    made: list[BucketSpanExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever the endpoint answers (its body echoing the path included), no record holds the
    key, as is or percent-encoded."""
    answers = [
        lambda r: Act(503, body=r.path.encode()),
        lambda r: Act(400, body=b"bad path " + r.path.encode()),
        lambda r: Act(404, body=r.path.encode()),
        lambda r: Act(hang_up=True),
    ]
    hostile.behaviour = lambda r: answers[r.index % len(answers)](r)
    exporter = build(made, hostile.url, clock=clock)
    with caplog.at_level(logging.DEBUG):
        exporter.export(events("a", "b", "c", "d", "e"))
        clock.advance(60)
        exporter.force_flush()
        exporter.shutdown()
    assert any("***" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert KEY not in record.getMessage()


# -- 9. smaller things ----------------------------------------------------------------------------


def test_rejections_are_logged_once_a_minute_and_cannot_forge_lines(
    hostile: HostileServer,
    clock: FakeClock,
    made: list[BucketSpanExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """2,000 rejected events make one warning line, with the body's line breaks escaped."""
    hostile.behaviour = lambda r: Act(400, body=b"bad\nCRITICAL forged line" + b"x" * 5000)
    exporter = build(made, hostile.url, clock=clock)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        exporter.export(events(*[f"E{i}" for i in range(2000)]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "\n" not in warnings[0] and "\\n" in warnings[0]
    assert len(warnings[0]) < 600
    assert exporter.stats.rejected == 2001


def test_a_redirect_is_a_configuration_error_not_a_delivery(
    hostile: HostileServer, made: list[BucketSpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """3xx (say http -> https) is never followed: FAILURE, counted undelivered, one ERROR."""
    hostile.behaviour = lambda r: Act(301, headers={"Location": "https://elsewhere/"})
    exporter = build(made, hostile.url)
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        assert exporter.export(events("E")) is SpanExportResult.FAILURE
    assert (exporter.stats.undelivered, exporter.stats.rejected) == (2, 0)
    assert "redirect" in caplog.text and "BUCKET_ENDPOINT" in caplog.text
    assert len(hostile.requests) == 2


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_an_exporter_dropped_without_shutdown_leaks_no_thread_or_socket(
    hostile: HostileServer,
) -> None:
    """An exporter that is simply dropped ends its threads and closes its connections."""

    def senders() -> int:
        return sum(t.name.startswith("otel-bucket-sender") for t in threading.enumerate())

    port = int(hostile.url.rsplit(":", 1)[1])

    def client_sockets() -> int:
        """Our connections to the server (its own ends live in this process too, and close
        on its threads, in their own time): open descriptors whose TCP peer is its port."""
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open("/proc/self/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        return sum(int(row[2].rsplit(":", 1)[1], 16) == port and row[9] in inodes for row in rows)

    fds_before, threads_before = client_sockets(), senders()
    exporter = BucketSpanExporter(KEY, endpoint=hostile.url)
    exporter.export(make_spans(*[{"enduser.id": f"u{i}"} for i in range(20)]))
    assert senders() > threads_before
    assert client_sockets() > fds_before  # kept alive: the count sees them
    del exporter
    gc.collect()
    for thread in [t for t in threading.enumerate() if t.name.startswith("otel-bucket-sender")]:
        thread.join(5)
    assert senders() == threads_before
    assert client_sockets() <= fds_before


def test_a_burst_starts_no_more_senders_than_it_has_calls(hostile: HostileServer) -> None:
    """30 calls at once to an endpoint that answers after 0.2 s: at most one sender thread per
    call. Before, each starting sender counted the ready calls again, for threads that were
    starting to take them too, and one burst started all 128 threads the ceiling allows."""
    hostile.behaviour = lambda r: Act(delay=0.2)
    before = {t for t in threading.enumerate() if t.name.startswith("otel-bucket-sender")}
    exporter = BucketSpanExporter(KEY, endpoint=hostile.url)
    try:
        assert exporter.export(make_spans(*[{"enduser.id": f"u{i}"} for i in range(30)]))
        started = [
            t
            for t in threading.enumerate()
            if t.name.startswith("otel-bucket-sender") and t not in before
        ]
        assert 1 < len(started) <= 30
    finally:
        exporter.shutdown()


def test_a_retry_after_date_in_the_future_is_honoured(
    hostile: HostileServer, clock: FakeClock, made: list[BucketSpanExporter]
) -> None:
    """Retry-After as an HTTP date an hour ahead holds the endpoint for that hour."""
    later = format_datetime(datetime.now(timezone.utc) + timedelta(hours=1), usegmt=True)
    answers = iter([Act(503, headers={"Retry-After": later})])
    hostile.behaviour = lambda r: next(answers, Act())
    exporter = build(made, hostile.url, clock=clock)
    exporter.export(events("E"))
    clock.advance(1800)
    exporter.force_flush()
    assert len(hostile.requests) == 1
    clock.advance(1800)
    assert exporter.force_flush()
    assert exporter.stats.delivered == 2
