"""A process its reloader kills at Ctrl-C (Django's autoreloader child): calls go to the spool
before they are sent, and Ctrl-C keeps what is held there. ``tests/test_servers.py`` runs the
real ``runserver``; these are the parts, in-process, against a capture server."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_bucket import BucketSpanExporter, BucketSpanProcessor
from otel_bucket.lifecycle import _lifecycle, _reloader
from otel_bucket.spool._spool_info import read_spool
from otel_bucket.spool._spool_paths import list_spools
from tests._capture import CaptureServer, Reply
from tests._spans import balanced, make_spans

EVENTS = [{"bucket.event": "Work", "enduser.id": f"u{i}"} for i in range(3)]


@pytest.fixture(autouse=True)
def _own_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this test's processors, and no Ctrl-C seen yet."""
    monkeypatch.setattr(_lifecycle, "_processors", weakref.WeakSet())
    monkeypatch.setattr(_reloader, "_handed_over", [False])


@pytest.fixture
def reloader_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is the child of Django's autoreloader (what it sets for its child)."""
    monkeypatch.setenv("RUN_MAIN", "true")


@pytest.fixture
def exporter(server: CaptureServer, tmp_path: Path) -> Iterator[BucketSpanExporter]:
    exp = BucketSpanExporter("k", endpoint=server.url, spool_dir=tmp_path, timeout=5)
    yield exp
    exp.shutdown()


def queued(exporter: BucketSpanExporter) -> tuple[BucketSpanProcessor, TracerProvider]:
    """A processor for ``exporter``, registered as install() does, holding the spans of EVENTS
    (it waits a minute before sending), on a provider of its own."""
    processor = BucketSpanProcessor(exporter, schedule_delay_millis=60_000)
    _lifecycle.register(processor)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    for attributes in EVENTS:
        provider.get_tracer("t").start_span("op", attributes=attributes).end()
    return processor, provider


def spooled(folder: Path) -> int:
    """Calls the spool in ``folder`` holds now."""
    return sum(read_spool(path).total for path in list_spools(folder))


def test_keep_in_spool_writes_calls_and_sends_nothing(
    exporter: BucketSpanExporter, server: CaptureServer, tmp_path: Path
) -> None:
    """The calls of the spans go to the spool, not to the endpoint; force_flush then sends them
    from there and empties it; every call is counted once."""
    assert exporter.keep_in_spool(make_spans(*EVENTS)) == 6  # a user and an event call each
    assert server.requests == []
    assert spooled(tmp_path) == 6
    assert exporter.force_flush()
    assert len(server.calls("event")) == 3
    assert spooled(tmp_path) == 0
    stats = exporter.stats
    assert (stats.spooled, stats.unspooled, stats.delivered) == (6, 6, 6)
    assert balanced(stats)


def test_keep_in_spool_without_a_spool_keeps_calls_in_the_backlog(server: CaptureServer) -> None:
    """No spool: nothing is written and nothing is lost; the calls are sent as usual."""
    exporter = BucketSpanExporter("k", endpoint=server.url, spool_dir=False)
    try:
        assert exporter.keep_in_spool(make_spans(*EVENTS)) == 0
        assert exporter.force_flush()
        assert len(server.calls("event")) == 3
        assert balanced(exporter.stats)
    finally:
        exporter.shutdown()


def test_the_last_keep_stops_sending_and_gives_the_calls_back(
    exporter: BucketSpanExporter, server: CaptureServer, tmp_path: Path
) -> None:
    """``last=True``: the spool keeps everything, this exporter sends nothing more, and another
    process may take the calls at once (no lease of this one's left on them)."""
    exporter.keep_in_spool(make_spans(*EVENTS), last=True)
    exporter.force_flush()
    assert server.requests == []
    [path] = list_spools(tmp_path)
    assert (read_spool(path).total, read_spool(path).leased) == (6, 0)
    nxt = BucketSpanExporter("k", endpoint=server.url, spool_dir=tmp_path)
    try:
        assert nxt._drain_spool() == 0  # what `otel-bucket spool flush` does
    finally:
        nxt.shutdown()
    assert len(server.calls("event")) == 3


@pytest.mark.usefixtures("reloader_child")
def test_a_reloaders_child_spools_each_call_before_sending_it(
    exporter: BucketSpanExporter, server: CaptureServer, tmp_path: Path
) -> None:
    """While a call is on its way, it is on disk too; once answered, it leaves the spool."""
    arrived = threading.Event()

    def hold(path: str, body: bytes) -> Reply:
        arrived.set()
        return Reply(delay=30)  # until released

    server.route(hold)
    processor = BucketSpanProcessor(exporter)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        provider.get_tracer("t").start_span("op", attributes=EVENTS[0]).end()
        assert arrived.wait(10)  # the user call is on its way; the event's waits its turn
        assert spooled(tmp_path) == 2
        server.release()
        assert processor.force_flush(10_000)
        assert spooled(tmp_path) == 0
        assert len(server.calls("event")) == 1
    finally:
        server.release()
        provider.shutdown()


@pytest.mark.usefixtures("reloader_child")
def test_ctrl_c_in_a_reloaders_child_keeps_what_is_queued(
    exporter: BucketSpanExporter,
    server: CaptureServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hand-over (the SIGINT handler's work) puts the queued spans in the spool, sends
    nothing more, and says so in one ERROR line with the count and the directory."""
    processor, provider = queued(exporter)
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        _reloader.hand_over()
        _reloader.hand_over()  # a second Ctrl-C: nothing more
    assert [r.getMessage() for r in caplog.records] == [
        "otel-bucket: Django's autoreloader ends this process 0.25 s after Ctrl-C, too soon to "
        "deliver what it holds: 6 call(s) not delivered yet are kept in the spool "
        f"({tmp_path}) for the next process on this endpoint to send (or `otel-bucket spool "
        "flush` now); `runserver --noreload` delivers them before exiting"
    ]
    assert processor.queued == 0
    assert spooled(tmp_path) == 6
    provider.shutdown()
    assert server.requests == []
    assert spooled(tmp_path) == 6


@pytest.mark.usefixtures("reloader_child")
def test_ctrl_c_without_a_spool_counts_what_is_at_risk(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Spool off: nothing can be kept; the ERROR line counts what may be lost, and how to
    avoid it."""
    _, provider = queued(BucketSpanExporter("k", endpoint=server.url, spool_dir=False))
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        _reloader.hand_over()
    [line] = [r.getMessage() for r in caplog.records]
    assert "the spool is off: 3 span(s) and call(s) not delivered yet are lost" in line
    assert "BUCKET_SPOOL_DIR" in line
    provider.shutdown()


def test_elsewhere_nothing_changes(
    exporter: BucketSpanExporter, server: CaptureServer, tmp_path: Path
) -> None:
    """Not a reloader's child: calls are sent without the spool, and Ctrl-C is not ours."""
    assert _reloader.killed_by() is None
    processor = BucketSpanProcessor(exporter)
    _lifecycle.register(processor)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    provider.get_tracer("t").start_span("op", attributes=EVENTS[0]).end()
    assert processor.force_flush(10_000)
    _reloader.hand_over()
    assert not _reloader.handed_over()
    assert list_spools(tmp_path) == []
    assert len(server.calls("event")) == 1
    provider.shutdown()
