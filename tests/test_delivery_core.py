"""The delivery core's loose ends (issue 19, item 4): log lines count calls and name the real
cause, the exit line agrees with the books, and a spool row nobody can send is settled."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_bucket import BucketSpanExporter
from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool
from otel_bucket.spool._spool_paths import spool_path
from tests._capture import CaptureServer, Reply
from tests._hostile import Act, HostileServer
from tests._running import free_port
from tests._spans import FakeClock, balanced, make_spans

KEY = "trCORE-key-7"


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


def numbers(pattern: str, text: str) -> list[int]:
    return [int(n) for n in re.findall(pattern, text)]


def test_the_not_delivered_warning_counts_calls_not_attempts(
    server: CaptureServer,
    clock: FakeClock,
    made: list[BucketSpanExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With ``/user`` answering 503 for minutes, the "could not deliver N call(s)" lines add up
    to at most the user calls that failed (5), however often each was tried (the lines come
    at most once a minute: what a later line would have said may go unsaid)."""
    server.route(lambda path, body: Reply(503) if path.endswith("/user") else None)
    exporter = build(made, server.url, clock=clock, timeout=10)
    spans = make_spans(*[{"enduser.id": f"u{i}", "bucket.event": "E"} for i in range(5)])
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        exporter.export(spans)
        for _ in range(6):
            clock.advance(61)
            exporter.force_flush()
    user_attempts = sum(r.api_method == "user" for r in server.requests)
    reported = sum(numbers(r"could not deliver (\d+) call", caplog.text))
    assert user_attempts > 2 * 5  # each user call was tried again and again
    assert 0 < reported <= 5
    assert exporter.stats.delivered == 5  # the events went on without their users


def test_every_not_delivered_line_names_a_cause(
    made: list[BucketSpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """Against an endpoint whose 200 bodies drip and whose other answers drop the connection,
    no line says "could not deliver ... ()": each names what went wrong."""
    hostile = HostileServer(
        lambda r: (
            Act(drip=0.05, body=b" " * 100, drip_body=True) if r.index % 2 else Act(hang_up=True)
        )
    )
    try:
        exporter = build(made, hostile.url, timeout=0.5)
        with caplog.at_level(logging.WARNING, logger="otel_bucket"):
            exporter.export(make_spans(*[{"enduser.id": f"u{i}"} for i in range(6)]))
            exporter.shutdown_within(0.5)
    finally:
        hostile.close()
    lines = [r.getMessage() for r in caplog.records if "could not deliver" in r.getMessage()]
    assert lines
    assert not any("()" in line or "(unknown)" in line for line in lines), lines


def test_after_a_redirect_the_exit_line_names_the_redirect(
    server: CaptureServer,
    clock: FakeClock,
    made: list[BucketSpanExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Calls lost to a 3xx are reported as such at exit, never as "no attempt could be made":
    every one of them was attempted."""
    server.default = Reply(301, headers={"Location": "https://elsewhere.example/"})
    exporter = build(made, server.url, clock=clock)
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        for batch in range(3):  # the first line is logged; the rest wait for the exit line
            exporter.export(make_spans({"enduser.id": f"u{batch}"}))
        exporter.shutdown()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum(numbers(r"lost (\d+) call", "\n".join(errors))) == 3 == exporter.stats.undelivered
    assert "no attempt" not in "\n".join(errors)
    assert "redirect" in errors[-1] and "elsewhere.example" in errors[-1]


def test_the_exit_line_agrees_with_the_books_when_calls_were_spooled_before(
    clock: FakeClock,
    made: list[BucketSpanExporter],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Calls spooled while running (memory full) and at exit: the exit line's numbers add up
    to ``stats.spooled``."""
    hostile = HostileServer(lambda r: Act(503))
    try:
        exporter = build(made, hostile.url, clock=clock, spool_dir=tmp_path, timeout=1)
        exporter._dispatcher._memory_limit = 20
        with caplog.at_level(logging.WARNING, logger="otel_bucket"):
            exporter.export(make_spans(*[{"enduser.id": f"u{i}"} for i in range(30)]))
            exporter.shutdown()
    finally:
        hostile.close()
    stats = exporter.stats
    line = next(r.getMessage() for r in caplog.records if "kept" in r.getMessage())
    kept = numbers(r"kept (\d+) undelivered", line)[0]
    in_all = numbers(r"\((\d+) in all since it started\)", line)
    assert stats.spooled == 30 and balanced(stats)
    assert (in_all[0] if in_all else kept) == stats.spooled
    assert kept == 20  # what memory held at exit; the other 10 went to the spool before


def test_a_spool_row_with_an_unknown_method_is_dropped_and_counted(
    server: CaptureServer, made: list[BucketSpanExporter], tmp_path: Path
) -> None:
    """A spooled call whose method is not user, company or event is never sent: it is deleted,
    counted as dropped, and the books balance (13 in, 13 accounted for)."""
    path = spool_path(tmp_path, server.url, KEY)
    spool = Spool(path, endpoint=server.url)
    good = [Call("event", {"event": f"E{i}", "userId": "u"}) for i in range(10)]
    bad = [Call(method, {"userId": "u"}) for method in ("events", "track", "")]
    assert spool.put(good + bad) == 13
    spool.close()
    exporter = build(made, server.url, spool_dir=tmp_path, timeout=5)
    assert exporter.force_flush()
    stats = exporter.stats
    assert (stats.unspooled, stats.delivered, stats.dropped) == (13, 10, 3)
    assert balanced(stats)
    assert sorted(r.json["event"] for r in server.requests) == [f"E{i}" for i in range(10)]
    assert Spool(path, endpoint=server.url).info().total == 0


def test_exiting_with_the_endpoint_down_says_nothing_of_a_retry(
    made: list[BucketSpanExporter], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Exiting while the endpoint answers 503: no "wait for a retry" line (no retry will come),
    and the exit line's count is the calls the spool kept."""
    hostile = HostileServer(lambda r: Act(503))
    try:
        exporter = build(made, hostile.url, spool_dir=tmp_path, timeout=1)
        spans = make_spans(*[{"enduser.id": f"u{i}", "bucket.event": "E"} for i in range(50)])
        with caplog.at_level(logging.WARNING, logger="otel_bucket"):
            exporter.submit(spans)
            exporter.shutdown()
    finally:
        hostile.close()
    lines = [r.getMessage() for r in caplog.records]
    assert not any("retry" in line for line in lines), lines
    kept = [line for line in lines if "kept" in line]
    assert len(kept) == 1 and numbers(r"kept (\d+) undelivered", kept[0]) == [100]
    assert exporter.stats.spooled == 100 and balanced(exporter.stats)


def test_a_drain_out_of_time_says_so_not_that_the_endpoint_did_not_answer(
    made: list[BucketSpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """The endpoint answers every call in 0.2 s, but the drain has 0.5 s for 400 calls: the
    exit line blames the drain's own time (and names the endpoint's pace), never "no answer
    before the deadline"."""
    hostile = HostileServer(lambda r: Act(delay=0.2))
    try:
        exporter = build(made, hostile.url, timeout=5, max_concurrency=4)
        spans = make_spans(*[{"enduser.id": "u", "bucket.event": f"E{i}"} for i in range(400)])
        with caplog.at_level(logging.ERROR, logger="otel_bucket"):
            exporter.submit(spans)
            exporter.shutdown_within(0.5)
    finally:
        hostile.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "drain's time ran out" in errors[0] and "0.2" in errors[0]
    assert "no answer before the deadline" not in errors[0]


def test_an_outage_with_a_spool_wakes_for_the_probe_only(
    clock: FakeClock, made: list[BucketSpanExporter], tmp_path: Path
) -> None:
    """The endpoint down (connections refused) while a spool holds calls: a look in the spool
    that is due is no reason to wake while the endpoint is down (it made the timekeeper wake
    without waiting, a third of a core for as long as an outage lasted); the next wake is the
    endpoint's next probe. With no call left in memory to probe with, a spooled call is the
    probe: once the endpoint answers again, the spool is delivered."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spool = Spool(spool_path(tmp_path, url, KEY), endpoint=url)
    assert spool.put([Call("event", {"event": f"E{i}", "userId": "u"}) for i in range(10)]) == 10
    spool.close()
    exporter = build(made, url, clock=clock, spool_dir=tmp_path, timeout=1)
    exporter.force_flush()
    dispatcher = exporter._dispatcher
    assert exporter._gate.is_down()
    exporter._spooling.look_now()
    with dispatcher._lock:
        wake = dispatcher._next_event()
    assert wake is not None and wake > clock.now  # the probe, not the spool's look
    exporter.keep_in_spool()  # memory is empty now; the spool holds them all
    assert spool.info().total == 10
    spool.close()
    assert dispatcher.pending == 0 and exporter._gate.is_down()
    with dispatcher._lock:
        probe = dispatcher._next_event()
    assert probe is not None and probe > clock.now
    back = CaptureServer(port=port)  # the endpoint answers again
    try:
        clock.now = probe
        assert exporter.force_flush()
        assert sorted(call["event"] for call in back.calls("event")) == [f"E{i}" for i in range(10)]
    finally:
        back.close()
    assert exporter.stats.delivered == 10 and balanced(exporter.stats)
