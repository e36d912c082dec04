"""A dead endpoint costs one timeout, not one per batch: fail fast behind a single probe."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_bucket import BucketSpanExporter
from tests._capture import CaptureServer, Reply
from tests._spans import FakeClock, make_spans


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock."""
    return FakeClock()


@pytest.fixture
def exporter(server: CaptureServer, clock: FakeClock) -> Iterator[BucketSpanExporter]:
    """An exporter on the capture server with a fake clock."""
    exp = BucketSpanExporter("k", endpoint=server.url, clock=clock, timeout=10)
    yield exp
    exp.shutdown()


def _users(*names: str) -> list:  # type: ignore[type-arg]
    return make_spans(*[{"enduser.id": n} for n in names])


def test_unreachable_endpoint_makes_later_exports_fail_fast(
    server: CaptureServer, exporter: BucketSpanExporter, clock: FakeClock
) -> None:
    """After an export found no answer, the next one sends nothing until a probe is due."""
    server.default = Reply(drop=True)
    assert exporter.export(_users("a")) is SpanExportResult.FAILURE
    tried = len(server.requests)
    assert tried >= 2
    assert exporter.export(_users("b", "c")) is SpanExportResult.FAILURE
    assert len(server.requests) == tried
    assert exporter.stats.pending == 3


def test_one_probe_call_decides_for_the_batch(
    server: CaptureServer, exporter: BucketSpanExporter, clock: FakeClock
) -> None:
    """When a probe is due, only one call is tried; the rest fail fast if it gets no answer."""
    server.default = Reply(drop=True)
    exporter.export(_users("a"))
    before = len(server.requests)
    clock.advance(5)
    exporter.export(_users("p", "q", "r"))
    probed = {r.json["userId"] for r in server.requests[before:]}
    assert len(probed) == 1
    assert exporter.stats.pending == 4


def test_delivery_resumes_when_the_endpoint_answers_again(
    server: CaptureServer, exporter: BucketSpanExporter, clock: FakeClock
) -> None:
    """Once a probe gets an answer, the whole batch is delivered and fast-fail ends."""
    server.default = Reply(drop=True)
    exporter.export(_users("a"))
    server.default = Reply()
    clock.advance(5)
    assert exporter.export(_users("p", "q", "r")) is SpanExportResult.SUCCESS
    assert exporter.export(_users("s")) is SpanExportResult.SUCCESS
    assert sorted(c["userId"] for c in server.calls("user")) == ["a", "p", "q", "r", "s"]
    assert exporter.stats.pending == 0


def test_http_errors_do_not_count_as_unreachable(
    server: CaptureServer, exporter: BucketSpanExporter
) -> None:
    """An endpoint that answers 503 is up: the next export tries every call again."""
    server.default = Reply(503, headers={"Retry-After": "999"})
    exporter.export(_users("a"))
    exporter.export(_users("b", "c"))
    assert {r.json["userId"] for r in server.requests} == {"a", "b", "c"}


def test_probe_interval_grows_while_the_endpoint_stays_down(
    server: CaptureServer, exporter: BucketSpanExporter, clock: FakeClock
) -> None:
    """Failed probes back off: the second probe comes later than the first."""
    server.default = Reply(drop=True)
    exporter.export(_users("a"))
    clock.advance(2.5)
    exporter.export(_users("first-probe"))
    count = len(server.requests)
    clock.advance(2.5)
    exporter.export(_users("too-early"))
    assert len(server.requests) == count
    clock.advance(10)
    exporter.export(_users("second-probe"))
    assert len(server.requests) > count
