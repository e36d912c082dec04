"""otel-bucket's own metrics, read with the SDK's ``InMemoryMetricReader`` (issue 13): they
count what ``exporter.stats`` counts, per method, and never loop back into Bucket."""

from __future__ import annotations

import json
import logging
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry import metrics as api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_bucket import BucketCall, BucketSpanExporter, BucketSpanProcessor, feature, install
from otel_bucket.books._metrics import OUTCOMES
from tests._capture import CaptureServer, Reply
from tests._running import child_env, free_port, python, run
from tests._spans import FakeClock, make_spans

KEY = "trMETRICS-key"
FULL = {
    "enduser.id": "u1",
    "bucket.user.name": "Ada",
    "bucket.company.id": "c1",
    "bucket.event": "Export",
}
COUNTED = [o for o in OUTCOMES if o != "retried"]  # retried counts attempts, not calls


class Metrics:
    """A real MeterProvider with an in-memory reader, and what it collected."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def collect(self) -> dict[str, list[Any]]:
        points: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "otel_bucket"
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points

    def calls(self) -> Counter[tuple[str, str | None]]:
        """``otel_bucket.calls`` per (outcome, method)."""
        out: Counter[tuple[str, str | None]] = Counter()
        for point in self.collect().get("otel_bucket.calls", []):
            assert isinstance(point, NumberDataPoint)
            method = point.attributes.get("method")
            out[str(point.attributes["outcome"]), None if method is None else str(method)] += int(
                point.value
            )
        return out

    def value(self, name: str) -> int:
        """The single data point of an observable instrument."""
        (point,) = self.collect()[name]
        return int(point.value)

    def durations(self) -> list[HistogramDataPoint]:
        return list(self.collect().get("otel_bucket.export.duration", []))

    def close(self) -> None:
        self.provider.shutdown()


def totals(counts: Counter[tuple[str, str | None]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (outcome, _method), value in counts.items():
        out[outcome] += value
    return out


def assert_matches_stats(metrics: Metrics, exporter: BucketSpanExporter) -> None:
    """Every outcome's count, over all methods, equals the exporter's stats."""
    by_outcome = totals(metrics.calls())
    stats = exporter.stats
    assert {o: by_outcome[o] for o in OUTCOMES} == {o: getattr(stats, o) for o in OUTCOMES}
    made = sum(by_outcome[o] for o in COUNTED if o != "unspooled")
    assert stats.calls + by_outcome["unspooled"] == made + stats.pending


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    """A MeterProvider of the test's own, read in memory."""
    m = Metrics()
    yield m
    m.close()


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock: backoffs pass without sleeping."""
    return FakeClock()


@pytest.fixture
def make(
    server: CaptureServer, clock: FakeClock, metrics: Metrics
) -> Iterator[Callable[..., BucketSpanExporter]]:
    """Exporters on the capture server reporting to ``metrics``; shut down afterwards."""
    made: list[BucketSpanExporter] = []

    def build(**options: Any) -> BucketSpanExporter:
        options.setdefault("endpoint", server.url)
        options.setdefault("clock", clock)
        options.setdefault("meter_provider", metrics.provider)
        exporter = BucketSpanExporter(KEY, **options)
        made.append(exporter)
        return exporter

    yield build
    for exporter in made:
        exporter.shutdown()


# -- counts match stats -----------------------------------------------------------------------


def test_deliveries_are_counted_per_method(metrics: Metrics, make: Any) -> None:
    """Delivered calls count per method; one export, one duration without an error."""
    exporter = make()
    exporter.export(make_spans(FULL, {"enduser.id": "u2", "bucket.event": "Export"}))
    assert metrics.calls() == {
        ("delivered", "user"): 2,
        ("delivered", "company"): 1,
        ("delivered", "event"): 2,
    }
    assert_matches_stats(metrics, exporter)
    (duration,) = metrics.durations()
    assert duration.count == 1 and dict(duration.attributes or {}) == {}
    assert metrics.value("otel_bucket.backlog.size") == 0


@pytest.mark.parametrize("status", [400, 401])
def test_rejections_are_counted(
    server: CaptureServer, metrics: Metrics, make: Any, status: int
) -> None:
    """Calls the API refuses for good count as rejected, per method."""
    server.default = Reply(status, body='{"error": "bad"}')
    exporter = make()
    exporter.export(make_spans(FULL))
    assert metrics.calls() == {
        ("rejected", "user"): 1,
        ("rejected", "company"): 1,
        ("rejected", "event"): 1,
    }
    assert_matches_stats(metrics, exporter)


def test_retries_are_counted_per_method(server: CaptureServer, metrics: Metrics, make: Any) -> None:
    """Each retry attempt counts once, under the method of the call retried."""
    failures = iter([Reply(503), Reply(503)])  # the user call fails twice, then gets through
    server.route(lambda path, body: next(failures, None) if path.endswith("/user") else None)
    exporter = make()
    exporter.export(make_spans(FULL))
    counts = metrics.calls()
    assert counts[("retried", "user")] == 2
    assert counts[("delivered", "user")] == 1
    assert exporter.stats.retried == 2
    assert_matches_stats(metrics, exporter)


def test_a_dead_endpoint_counts_pending_then_spooled_or_undelivered(
    metrics: Metrics, make: Any, tmp_path: Path
) -> None:
    """Calls that cannot be delivered wait (the backlog size says how many); at shutdown they
    are spooled when a spool is on, else counted undelivered; failed exports carry
    error.type."""
    dead = f"http://127.0.0.1:{free_port()}"
    lost = make(endpoint=dead, timeout=1)
    assert lost.export(make_spans(FULL)) is SpanExportResult.FAILURE
    assert metrics.value("otel_bucket.backlog.size") == 3 == lost.pending
    assert_matches_stats(metrics, lost)
    lost.shutdown()
    assert metrics.calls() == {
        ("undelivered", "user"): 1,
        ("undelivered", "company"): 1,
        ("undelivered", "event"): 1,
    }
    assert metrics.value("otel_bucket.backlog.size") == 0
    (duration,) = metrics.durations()
    assert duration.attributes == {"error.type": "undelivered"}

    other = Metrics()
    try:
        kept = make(endpoint=dead, timeout=1, spool_dir=tmp_path, meter_provider=other.provider)
        kept.export(make_spans(FULL))
        kept.shutdown()
        assert other.calls() == {
            ("spooled", "user"): 1,
            ("spooled", "company"): 1,
            ("spooled", "event"): 1,
        }
        assert_matches_stats(other, kept)
    finally:
        other.close()


def test_deduplicated_calls_are_counted(
    server: CaptureServer, metrics: Metrics, make: Any, clock: FakeClock
) -> None:
    """A user call identical to a recent delivery, and one merged into a newer one while
    waiting, count as deduplicated."""
    exporter = make()
    exporter.export(make_spans({"enduser.id": "u1", "bucket.user.plan": "pro"}))
    exporter.export(make_spans({"enduser.id": "u1", "bucket.user.plan": "pro"}))  # identical
    server.script(Reply(503, headers={"Retry-After": "30"}))
    exporter.export(make_spans({"enduser.id": "u2", "bucket.user.plan": "pro"}))  # waits
    clock.advance(31)
    exporter.export(make_spans({"enduser.id": "u2", "bucket.user.plan": "team"}))  # merged
    counts = metrics.calls()
    assert counts[("deduplicated", "user")] == 2
    assert counts[("delivered", "user")] == 2
    assert_matches_stats(metrics, exporter)


def test_spooled_calls_count_when_they_come_back(
    server: CaptureServer, make: Any, tmp_path: Path
) -> None:
    """What one exporter spools, the next takes back (unspooled) and delivers: each exporter's
    metrics match its own stats."""
    server.default = Reply(503)
    first_metrics, second_metrics = Metrics(), Metrics()
    try:
        first = make(spool_dir=tmp_path, timeout=1, meter_provider=first_metrics.provider)
        first.export(make_spans(FULL))
        first.shutdown()
        assert totals(first_metrics.calls())["spooled"] == 3
        assert_matches_stats(first_metrics, first)

        server.default = Reply()
        second = make(spool_dir=tmp_path, meter_provider=second_metrics.provider)
        assert second.force_flush() is True
        counts = second_metrics.calls()
        assert counts[("unspooled", "user")] == counts[("delivered", "user")] == 1
        assert counts[("unspooled", "event")] == counts[("delivered", "event")] == 1
        assert_matches_stats(second_metrics, second)
    finally:
        first_metrics.close()
        second_metrics.close()


def test_filtered_and_dropped_calls_are_counted(metrics: Metrics, make: Any) -> None:
    """before_send's None counts as filtered; its failures, and events without a user, as
    dropped; offline mode drops what it would send."""

    def hook(call: BucketCall) -> BucketCall | None:
        if call.method == "company":
            return None
        if call.method == "event":
            raise RuntimeError("no")
        return call

    exporter = make(before_send=hook)
    exporter.export(make_spans(FULL, {"bucket.event": "No user"}))
    assert metrics.calls() == {
        ("delivered", "user"): 1,
        ("filtered", "company"): 1,
        ("dropped", "event"): 2,
    }
    assert_matches_stats(metrics, exporter)

    other = Metrics()
    try:
        offline = make(offline=True, meter_provider=other.provider)
        offline.export(make_spans(FULL))
        assert totals(other.calls()) == {"dropped": 3}
        assert_matches_stats(other, offline)
    finally:
        other.close()


# -- the processor's queue --------------------------------------------------------------------


def test_queue_size_capacity_and_drops_are_observed(
    server: CaptureServer, metrics: Metrics
) -> None:
    """While the processor's worker is busy, its queue fills: its size, capacity and the spans
    dropped from it are observed when the reader collects (on_end records nothing); calls in
    flight are observed as the backlog; then it all drains."""
    in_flight = threading.Event()
    busy = threading.Event()
    go_on = threading.Event()

    def hold(path: str, body: bytes) -> Reply:
        in_flight.set()
        return Reply(delay=30)  # until server.release()

    def slow_hook(call: BucketCall) -> BucketCall:
        if call.user_id == "u1":  # the worker maps the spans: keep it busy here
            busy.set()
            go_on.wait(30)
        return call

    server.route(hold)
    exporter = BucketSpanExporter(
        KEY, endpoint=server.url, meter_provider=metrics.provider, before_send=slow_hook
    )
    processor = BucketSpanProcessor(exporter, max_queue_size=4)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    try:
        tracer.start_span("first", attributes={"enduser.id": "u0"}).end()
        assert in_flight.wait(10)
        tracer.start_span("second", attributes={"enduser.id": "u1"}).end()
        assert busy.wait(10)
        before = metrics.calls()
        for i in range(2, 8):
            tracer.start_span("more", attributes={"enduser.id": f"u{i}"}).end()
        assert metrics.calls() == before  # ending spans recorded nothing
        assert metrics.value("otel_bucket.queue.size") == 4
        assert metrics.value("otel_bucket.queue.capacity") == 4
        assert metrics.value("otel_bucket.queue.dropped") == 2 == processor.dropped_spans
        assert metrics.value("otel_bucket.backlog.size") == 1  # the user call in flight
        go_on.set()
        server.release()
        assert processor.force_flush()
        assert metrics.value("otel_bucket.queue.size") == 0
        assert metrics.value("otel_bucket.backlog.size") == 0
        assert metrics.value("otel_bucket.queue.dropped") == 2
        assert totals(metrics.calls())["delivered"] == 6
    finally:
        go_on.set()
        server.release()
        provider.shutdown()


# -- the global provider, and no loop ---------------------------------------------------------

SET_LATER = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    import otel_bucket

    provider = TracerProvider()
    processor = otel_bucket.install(
        provider, tracking_key="k", endpoint=sys.argv[1], handle_signals=False
    )
    tracer = provider.get_tracer("app")
    tracer.start_span("before", attributes={"enduser.id": "early"}).end()
    assert processor.force_flush()  # recorded while no provider is set: nowhere, for free

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    tracer.start_span("after", attributes={"enduser.id": "late", "bucket.event": "E"}).end()
    assert processor.force_flush()
    points = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = metric.name + repr(sorted(point.attributes.items()))
                    points[key] = getattr(point, "value", None)
    print(json.dumps(points, sort_keys=True))
    print("delivered", processor.exporter.stats.delivered)
    """
)


def test_a_global_meter_provider_set_after_install_gets_the_metrics(
    server: CaptureServer,
) -> None:
    """install() before the application sets its global MeterProvider: the metrics still reach
    it (in a fresh process: the global provider can be set only once)."""
    proc = run(python("-c", SET_LATER, server.url), env=child_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    points = json.loads(lines[0])
    assert lines[1] == "delivered 3"
    calls = "otel_bucket.calls[('method', '{}'), ('outcome', 'delivered')]"
    assert points[calls.format("user")] == 1  # only the call made after the provider was set
    assert points[calls.format("event")] == 1
    assert points["otel_bucket.queue.capacity[]"] == 16384
    assert points["otel_bucket.backlog.size[]"] == 0


def test_exporting_the_metrics_creates_no_span_and_no_call(server: CaptureServer) -> None:
    """An OTLP/HTTP metric export, with requests instrumented and otel-bucket installed on the
    same tracer provider, sends the metrics and makes no span: nothing reaches Bucket but the
    application's own feature."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    metric_reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{server.url}/v1/metrics"), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(metric_readers=[metric_reader])
    processor = install(
        tracer_provider,
        tracking_key=KEY,
        endpoint=server.url,
        meter_provider=meter_provider,
        handle_signals=False,
    )
    instrumentor = RequestsInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:

        @feature("Export", tracer_provider=tracer_provider)
        def export() -> None:
            pass

        export()  # (no user: dropped, but a span the in-memory exporter sees)
        tracer_provider.get_tracer("app").start_span("x", attributes={"enduser.id": "u"}).end()
        assert processor.force_flush()
        assert meter_provider.force_flush()  # collects and exports, here and now
        assert [r.path for r in server.requests] == [f"/{KEY}/user", "/v1/metrics"]
        headers = {k.lower(): v for k, v in server.requests[1].headers.items()}
        assert headers["content-type"] == "application/x-protobuf"
        assert sorted(span.name for span in memory.get_finished_spans()) == ["Export", "x"]
        assert processor.force_flush()
        assert len(server.requests) == 2
        requests.get(server.url + "/app-call")  # the instrumentation is live for the app
        assert len(memory.get_finished_spans()) == 3
    finally:
        instrumentor.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()


class BrokenCounter(api.NoOpCounter):
    def add(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("broken meter")


class BrokenMeter(api.NoOpMeter):
    def create_counter(self, name: str, unit: str = "", description: str = "") -> api.Counter:
        return BrokenCounter(name)


class BrokenMeterProvider(api.NoOpMeterProvider):
    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> api.Meter:
        return BrokenMeter(name)


def test_a_faulty_meter_provider_costs_no_call(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A MeterProvider whose counter raises: every call is still delivered and counted in
    stats; one warning says the metrics are off."""
    exporter = BucketSpanExporter(KEY, endpoint=server.url, meter_provider=BrokenMeterProvider())
    try:
        with caplog.at_level(logging.WARNING, logger="otel_bucket"):
            for user in ("u1", "u2"):
                assert exporter.export(make_spans({"enduser.id": user, "bucket.event": "E"})) is (
                    SpanExportResult.SUCCESS
                )
        assert exporter.stats.delivered == 4
        lines = [r.getMessage() for r in caplog.records if "metrics" in r.getMessage()]
        assert len(lines) == 1 and "RuntimeError: broken meter" in lines[0]
    finally:
        exporter.shutdown()


@pytest.mark.parametrize("bad", ["global", 3, object()])
def test_meter_provider_must_be_a_meter_provider(bad: object) -> None:
    """A meter_provider that is not one raises TypeError naming it."""
    with pytest.raises(TypeError, match="meter_provider"):
        BucketSpanExporter(KEY, meter_provider=bad)  # type: ignore[arg-type]
