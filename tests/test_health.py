"""A dead endpoint costs one timeout, not one per batch: fail fast behind a single probe."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_bucket import BucketSpanExporter
from tests._capture import CaptureServer, Reply
from tests._running import free_port
from tests._spans import FakeClock, make_spans


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock."""
    return FakeClock()


@pytest.fixture
def port() -> int:
    """A loopback port nobody listens on (yet): connections are refused."""
    return free_port()


@pytest.fixture
def exporter(port: int, clock: FakeClock) -> Iterator[BucketSpanExporter]:
    """An exporter on ``port`` with a fake clock."""
    exp = BucketSpanExporter("k", endpoint=f"http://127.0.0.1:{port}", clock=clock, timeout=10)
    yield exp
    exp.shutdown()


@pytest.fixture
def revived(port: int) -> Iterator[Callable[[], CaptureServer]]:
    """Starts a capture server on ``port`` when called: the endpoint comes back."""
    started: list[CaptureServer] = []

    def start() -> CaptureServer:
        started.append(CaptureServer(port=port))
        return started[-1]

    yield start
    for srv in started:
        srv.close()


def _users(*names: str) -> list:  # type: ignore[type-arg]
    return make_spans(*[{"enduser.id": n} for n in names])


def test_unreachable_endpoint_makes_later_exports_fail_fast(
    exporter: BucketSpanExporter, clock: FakeClock, revived: Callable[[], CaptureServer]
) -> None:
    """After an export found no answer, the next one sends nothing until a probe is due."""
    assert exporter.export(_users("a")) is SpanExportResult.FAILURE
    server = revived()  # it answers now, but no probe is due yet
    assert exporter.export(_users("b", "c")) is SpanExportResult.FAILURE
    assert server.requests == []
    assert exporter.stats.pending == 3
    assert clock.waits == []


def test_one_probe_call_decides_for_the_batch(clock: FakeClock) -> None:
    """When a probe is due, only one call is tried; the rest fail fast if it gets no answer."""
    with socket.socket() as silent:  # accepts connections (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        exporter = BucketSpanExporter("k", endpoint=url, clock=clock, timeout=0.3)
        exporter.export(_users("a"))  # no answer before the deadline: down
        clock.advance(5)
        exporter.export(_users("p", "q", "r"))
        assert exporter.stats.pending == 4
        exporter.shutdown()  # the endpoint is down: no last attempt
        silent.settimeout(0)
        connections = 0
        while True:
            try:
                silent.accept()[0].close()
            except BlockingIOError:
                break
            connections += 1
    assert connections == 2  # "a", then the one probe


def test_delivery_resumes_when_the_endpoint_answers_again(
    exporter: BucketSpanExporter, clock: FakeClock, revived: Callable[[], CaptureServer]
) -> None:
    """Once a probe gets an answer, the whole batch is delivered and fast-fail ends."""
    exporter.export(_users("a"))
    server = revived()
    clock.advance(5)
    assert exporter.export(_users("p", "q", "r")) is SpanExportResult.SUCCESS
    assert exporter.export(_users("s")) is SpanExportResult.SUCCESS
    assert sorted(c["userId"] for c in server.calls("user")) == ["a", "p", "q", "r", "s"]
    assert exporter.stats.pending == 0


def test_http_errors_do_not_count_as_unreachable(
    clock: FakeClock, revived: Callable[[], CaptureServer], port: int
) -> None:
    """An endpoint that answers a few 503s is up: the next export tries its calls at once
    (an unreachable one would be down after one failure, its next probe 2 s away, beyond the
    exports' 0.2 s). One call per export: the exporting thread sends it itself, whatever the
    helper threads of a loaded machine do; only what the exports tried is counted, not the
    drain at shutdown, which starts nothing that cannot be answered within 0.2 s."""
    server = revived()
    server.script(*[Reply(503)] * 3)
    exporter = BucketSpanExporter("k", endpoint=server.url, clock=clock, timeout=0.2)
    for user in "abc":
        exporter.export(_users(user))
    tried = {r.json["userId"] for r in server.requests}
    exporter.shutdown()
    assert tried >= {"a", "b", "c"}
    assert not exporter._gate.is_down()


def test_probe_interval_grows_while_the_endpoint_stays_down(
    exporter: BucketSpanExporter, clock: FakeClock, revived: Callable[[], CaptureServer]
) -> None:
    """Failed probes back off: after a failed probe at 2 s, the next is not due 2 s later."""
    exporter.export(_users("a"))
    clock.advance(2.5)
    exporter.export(_users("first-probe"))  # refused: the next probe waits 4 s
    server = revived()
    clock.advance(2.5)
    exporter.export(_users("too-early"))
    assert server.requests == []
    clock.advance(10)
    exporter.export(_users("second-probe"))
    assert len(server.calls("user")) == 4
