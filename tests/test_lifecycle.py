"""Lifecycle: eager sends, flush(), one drain deadline, counted drops, SIGTERM/SIGHUP drains."""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import otel_bucket
from otel_bucket import (
    BucketSpanExporter,
    BucketSpanProcessor,
    feature,
    identify,
    install,
)
from otel_bucket.lifecycle import _lifecycle
from otel_bucket.lifecycle._install import _installed
from tests._capture import CaptureServer, Reply
from tests._group import Group, wait_for_events
from tests._running import child_env, free_port, python, run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Gate(SpanExporter):
    """Holds every export until released; records the spans it was given."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.names: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.gate.wait(10)
        self.names += [span.name for span in spans]
        return SpanExportResult.SUCCESS


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """flush() sees only the processors this test installed, not those of earlier tests."""
    monkeypatch.setattr(_lifecycle, "_processors", weakref.WeakSet())


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A real provider, shut down after the test."""
    p = TracerProvider(shutdown_on_exit=False)
    yield p
    p.shutdown()


def make_events(provider: TracerProvider, count: int, user: str = "u1") -> None:
    """``count`` feature calls by ``user``."""

    @feature("Work", tracer_provider=provider)
    def work() -> None:
        pass

    with identify(user, "acme"):
        for _ in range(count):
            work()


# -- the short in-memory window --------------------------------------------------------------------


def test_a_feature_call_is_sent_without_a_flush(
    server: CaptureServer, provider: TracerProvider
) -> None:
    """By default a span goes out as soon as it is queued: no flush, no schedule delay."""
    processor = install(provider, tracking_key="k", endpoint=server.url, handle_signals=False)
    assert processor.settings.eager
    make_events(provider, 1)
    assert wait_for_events(server, 1, timeout=10) == 1


def test_an_explicit_schedule_delay_batches(provider: TracerProvider) -> None:
    """With ``schedule_delay_millis`` set, spans wait for a full batch (or the delay)."""
    gate = Gate()
    gate.gate.set()
    processor = BucketSpanProcessor(gate, schedule_delay_millis=60_000, max_export_batch_size=4)
    provider.add_span_processor(processor)
    make_events(provider, 3)
    assert processor.queued == 3  # the worker was not woken: the batch is not full
    make_events(provider, 1)  # the fourth fills the batch and wakes the worker
    assert processor.force_flush()
    assert gate.names == ["Work"] * 4


# -- flush() ---------------------------------------------------------------------------------------


def test_flush_delivers_what_every_installed_processor_holds(server: CaptureServer) -> None:
    """``otel_bucket.flush()`` returns once the queued events of every install() are delivered."""
    providers = [TracerProvider(shutdown_on_exit=False) for _ in range(2)]
    server.default = Reply(delay=0.2)  # so the events are still queued or in flight
    for p in providers:
        install(p, tracking_key="k", endpoint=server.url, handle_signals=False)
    make_events(providers[0], 5, "a")
    make_events(providers[1], 5, "b")
    try:
        assert otel_bucket.flush(timeout=10) is True
        events = server.calls("event")  # no wait: flush() returned after delivery
        assert sorted(e["userId"] for e in events) == ["a"] * 5 + ["b"] * 5
    finally:
        for p in providers:
            p.shutdown()


def test_flush_reports_false_when_calls_wait_for_a_retry(
    server: CaptureServer, provider: TracerProvider
) -> None:
    """An endpoint answering 503 leaves calls waiting: flush() says so; they stay pending."""
    server.default = Reply(status=503)
    processor = install(
        provider, tracking_key="k", endpoint=server.url, timeout=0.5, handle_signals=False
    )
    make_events(provider, 2)
    assert otel_bucket.flush(timeout=2) is False
    exporter = processor.exporter
    assert isinstance(exporter, BucketSpanExporter)
    assert exporter.pending > 0


@pytest.mark.parametrize(
    ("timeout", "error"),
    [("5", TypeError), (True, TypeError), (-1, ValueError), (float("nan"), ValueError)],
)
def test_flush_rejects_a_bad_timeout(timeout: Any, error: type[Exception]) -> None:
    """A timeout that is not a finite number of seconds >= 0 raises naming ``timeout``."""
    with pytest.raises(error, match="timeout"):
        otel_bucket.flush(timeout=timeout)


# -- install() -------------------------------------------------------------------------------------


def test_install_on_a_shut_down_provider_raises(server: CaptureServer) -> None:
    """install() again after the provider's shutdown names the problem instead of a dead
    processor that would drop every event."""
    p = TracerProvider(shutdown_on_exit=False)
    install(p, tracking_key="k", endpoint=server.url, handle_signals=False)
    p.shutdown()
    with pytest.raises(ValueError, match="tracer_provider was shut down"):
        install(p)


def test_install_rejects_a_bad_handle_signals(provider: TracerProvider) -> None:
    """``handle_signals`` must be a bool: the error names it, and nothing is installed."""
    with pytest.raises(TypeError, match="handle_signals"):
        install(provider, tracking_key="k", handle_signals="no")
    assert provider not in _installed


# -- drops and the one deadline --------------------------------------------------------------------


def test_every_dropped_span_is_counted_and_logged(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Each span a full queue drops is in ``dropped_spans`` and in a log line's count."""
    gate = Gate()
    processor = BucketSpanProcessor(gate, max_queue_size=3, max_export_batch_size=1)
    provider.add_span_processor(processor)
    with caplog.at_level(logging.ERROR, logger="otel_bucket.export._processor"):
        make_events(provider, 1)
        assert gate.entered.wait(5)  # the worker holds the first span; the queue fills up
        make_events(provider, 10)
        gate.gate.set()
        provider.shutdown()
    assert processor.dropped_spans == 7
    counts = [int(n) for n in re.findall(r"dropped the oldest (\d+) span", caplog.text)]
    assert sum(counts) == 7
    assert len(counts) == 2  # the first drop at once, the rest in the final report
    assert len(gate.names) == 4


def test_a_drain_past_its_deadline_loses_nothing_silently(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Against an endpoint answering 503, the drain stops at its deadline and every call is
    counted as lost in the exporter's stats and in one error line (none vanishes)."""
    server.default = Reply(status=503)
    exporter = BucketSpanExporter("k", endpoint=server.url, timeout=0.5)
    p = TracerProvider(shutdown_on_exit=False)
    processor = BucketSpanProcessor(exporter, export_timeout_millis=1500)
    p.add_span_processor(processor)

    @feature("Work", tracer_provider=p)
    def work() -> None:
        pass

    for i in range(2_000):  # distinct users: 2 calls per span, nothing merged
        with identify(f"u{i}"):
            work()
    with caplog.at_level(logging.ERROR):
        p.shutdown()
    stats = exporter.stats
    assert stats.delivered == 0
    assert stats.undelivered == 4_000
    lost = [int(n) for n in re.findall(r"lost (\d+) call", caplog.text)]
    assert sum(lost) == 4_000
    assert "could not export" not in caplog.text  # deferred to the exporter, not dropped


# -- SIGTERM and friends, in real processes --------------------------------------------------------

FEATURES = ["-m", "tests.apps.features"]


def start(mode: str, count: int, server: CaptureServer, **env: str) -> Group:
    """``tests/apps/features.py`` in ``mode``, after its ``count`` calls were made."""
    proc = Group(
        python(*FEATURES, mode, str(count)),
        env=child_env(BUCKET_ENDPOINT=server.url, BUCKET_TRACKING_KEY="k", **env),
    )
    try:
        proc.expect(r"^made \d+|^looping$")
    except BaseException:
        proc.stop_group()
        raise
    return proc


@pytest.fixture
def slow(server: CaptureServer) -> CaptureServer:
    """An endpoint taking 0.2 s per call: events are still queued when the signal comes."""
    server.default = Reply(delay=0.2)
    return server


def test_sigterm_without_a_handler_drains_and_still_kills(slow: CaptureServer) -> None:
    """A plain script killed by SIGTERM delivers every event and still dies of SIGTERM."""
    proc = start("plain", 20, slow)
    try:
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        proc.stop_group()
    assert len(slow.calls("event")) == 20


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_sighup_without_a_handler_drains_and_still_kills(slow: CaptureServer) -> None:
    """SIGHUP (a closed terminal) drains too, and the process still dies of SIGHUP."""
    proc = start("plain", 10, slow)
    try:
        proc.signal(signal.SIGHUP)
        assert proc.wait(30) == -signal.SIGHUP
    finally:
        proc.stop_group()
    assert len(slow.calls("event")) == 10


@pytest.mark.parametrize("mode", ["handler-before", "handler-after"])
def test_the_applications_own_handler_still_runs(mode: str, slow: CaptureServer) -> None:
    """An application's SIGTERM handler runs and decides the exit status, with or without
    otel-bucket, whether it was set before or after install(); every event arrives."""
    statuses = []
    for without in ("1", "0"):
        proc = start(mode, 10, slow, WITHOUT_OTEL_BUCKET=without)
        try:
            proc.signal(signal.SIGTERM)
            statuses.append(proc.wait(30))
        finally:
            proc.stop_group()
        assert "own handler ran" in proc.lines
    assert statuses == [3, 3]
    assert len(slow.calls("event")) == 10


def test_an_ignored_sigterm_stays_ignored(server: CaptureServer) -> None:
    """A process that ignores SIGTERM is not killed by it because otel-bucket is installed."""
    proc = start("ignore", 1, server)
    try:
        proc.signal(signal.SIGTERM)  # discarded by the kernel: the disposition is SIG_IGN
        proc.signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.stop_group()
    assert "still here" in proc.lines


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_signal_handling_can_be_turned_off(how: str, server: CaptureServer) -> None:
    """``install(handle_signals=False)`` or ``BUCKET_HANDLE_SIGNALS=false`` leave signals alone."""
    code = (
        "import signal, otel_bucket; "
        f"otel_bucket.install(handle_signals={'False' if how == 'argument' else 'None'}); "
        "print(signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGHUP) == "
        "signal.SIG_DFL)"
    )
    env = child_env(BUCKET_ENDPOINT=server.url, BUCKET_TRACKING_KEY="k")
    if how == "environment":
        env["BUCKET_HANDLE_SIGNALS"] = "false"
    result = run(python("-c", code), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]


def test_install_in_a_thread_leaves_signals_alone_and_install_rearms(
    server: CaptureServer,
) -> None:
    """Outside the main thread nothing is armed; install() again in the main thread re-arms a
    handler something else reset (what gunicorn's post_worker_init one-liner relies on)."""
    code = """if True:
        import signal, threading, otel_bucket
        from otel_bucket.lifecycle._signals import armed
        t = threading.Thread(target=otel_bucket.install); t.start(); t.join()
        print(len(armed()))
        otel_bucket.install(); print(len(armed()))
        signal.signal(signal.SIGTERM, signal.SIG_DFL); print(len(armed()))
        otel_bucket.install(); print(len(armed()))
    """
    env = child_env(BUCKET_ENDPOINT=server.url, BUCKET_TRACKING_KEY="k")
    result = run(python("-c", code), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "2", "1", "2"]


def test_loss_at_sigterm_is_one_error_line_with_the_count() -> None:
    """Endpoint refused: the process still dies of SIGTERM, and the loss is one error line."""
    env = child_env(BUCKET_ENDPOINT=f"http://127.0.0.1:{free_port()}", BUCKET_TRACKING_KEY="k")
    proc = Group(python(*FEATURES, "plain", "5"), env=dict(env, BUCKET_TIMEOUT="1"))
    try:
        proc.expect(r"^made 5$")
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        proc.stop_group()
    lost = [line for line in proc.lines if "lost" in line]
    assert len(lost) == 1, proc.lines
    assert "lost 15 call(s)" in lost[0]  # 5 users, 5 company memberships, 5 events


@pytest.mark.slow
def test_sigterm_in_the_middle_of_feature_calls(server: CaptureServer) -> None:
    """SIGTERM while the main thread is making feature calls (inside on_end, maybe): no
    deadlock, the application's handler runs after the drain, and no completed call is lost."""
    proc = start("loop", 2_000, server)
    try:
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        proc.stop_group()
    done = next(int(m.group(1)) for line in proc.lines if (m := re.match(r"completed (\d+)", line)))
    # The call in progress when the signal came may have ended its span already.
    assert len(server.calls("event")) in (done, done + 1)


@pytest.mark.slow
def test_multiprocessing_pool_as_a_context_manager(slow: CaptureServer) -> None:
    """``with multiprocessing.Pool(4)`` terminates its children with SIGTERM on exit: each one
    drains first, so all 40 events have arrived by the time the block is left."""
    proc = start("pool", 40, slow)
    try:
        assert len(slow.calls("event")) == 40  # no wait: the children drained before dying
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        proc.stop_group()
