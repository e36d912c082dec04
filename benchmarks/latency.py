"""Latency: from a feature call's span end to its arrival at a loopback endpoint, at idle.

Run: ``python benchmarks/latency.py`` (about 30 s). Two providers side by side, both with default
settings, each exporting ``BucketSpanExporter`` calls to its own devserver on 127.0.0.1:

- ``install()``: ``BucketSpanProcessor``, which sends as soon as spans are queued;
- the SDK's ``BatchSpanProcessor`` (what ``OTEL_TRACES_EXPORTER=bucket`` gives you), which waits
  for its 5 s schedule delay.

One feature call on each every 0.1-0.4 s (random), so the calls land anywhere in the SDK's
cycle. Prints the p50 and p99 of span end -> arrival, with the targets: p50 <= 0.5 s and
p99 <= 1 s for ``install()``. Then the hot path: the per-call cost of a ``@feature`` call in a
tight loop with each processor (an exporter that does nothing, so only ``on_end`` differs).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_bucket import (
    BUCKET_ATTRIBUTES_PREFIX,
    BUCKET_EVENT,
    ENDUSER_ID,
    BucketSpanExporter,
    BucketSpanProcessor,
    feature,
    identify,
    install,
)
from otel_bucket.devserver import Call, DevServer

SAMPLES = 100
SEQ = f"{BUCKET_ATTRIBUTES_PREFIX}seq"
HOT_CALLS = 20_000
HOT_ROUNDS = 7


class Clocked:
    """Arrival times of events by their ``seq`` attribute, and a way to wait for them."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self._cond = threading.Condition()

    def on_call(self, call: Call) -> None:
        now = time.perf_counter()
        if call.method == "event":
            with self._cond:
                self.arrived[int(call.body["attributes"]["seq"])] = now
                self._cond.notify_all()

    def wait_all(self, count: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: len(self.arrived) >= count, timeout)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_latency() -> tuple[list[float], list[float]]:
    """Span end -> arrival (seconds) for ``install()`` and for the SDK's batch processor."""
    clocks = [Clocked(), Clocked()]
    servers = [DevServer(port=0, db_path=":memory:", on_call=c.on_call).start() for c in clocks]
    ours = TracerProvider(shutdown_on_exit=False)
    install(ours, tracking_key="bench", endpoint=servers[0].url, handle_signals=False)
    sdk = TracerProvider(shutdown_on_exit=False)
    sdk.add_span_processor(BatchSpanProcessor(BucketSpanExporter("bench", endpoint=servers[1].url)))
    tracers = [provider.get_tracer("latency") for provider in (ours, sdk)]
    ended: list[dict[int, float]] = [{}, {}]
    rng = random.Random(7)
    for seq in range(SAMPLES):
        for index, tracer in enumerate(tracers):
            # What a @feature call ends with, plus a sequence number to match the arrival.
            attributes = {BUCKET_EVENT: "Latency", ENDUSER_ID: "u1", SEQ: seq}
            tracer.start_span("Latency", attributes=attributes).end()
            ended[index][seq] = time.perf_counter()
        time.sleep(rng.uniform(0.1, 0.4))
    for clock in clocks:
        clock.wait_all(SAMPLES, timeout=30)
    for provider in (ours, sdk):
        provider.shutdown()
    for server in servers:
        server.stop()
    ours_ms, sdk_ms = (
        [clock.arrived[seq] - ended[i][seq] for seq in clock.arrived]
        for i, clock in enumerate(clocks)
    )
    return ours_ms, sdk_ms


class Nothing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def hot_path(make: Callable[[], SpanProcessor]) -> float:
    """Median microseconds per ``@feature`` call in a tight loop with this processor."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(make())

    @feature("Hot", tracer_provider=provider)
    def hot() -> None:
        pass

    rounds = []
    with identify("u1", "c1"):
        for _ in range(HOT_ROUNDS):
            started = time.perf_counter()
            for _ in range(HOT_CALLS):
                hot()
            rounds.append((time.perf_counter() - started) / HOT_CALLS * 1e6)
            provider.force_flush()
    provider.shutdown()
    return statistics.median(rounds)


def main() -> int:
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    print(f"{SAMPLES} feature calls at idle (0.1-0.4 s apart), span end -> arrival on loopback")
    ours, sdk = measure_latency()
    rows = [("install() (BucketSpanProcessor)", ours), ("SDK BatchSpanProcessor", sdk)]
    for name, values in rows:
        print(
            f"  {name:<34} p50 {percentile(values, 0.5) * 1000:7.1f} ms   "
            f"p99 {percentile(values, 0.99) * 1000:7.1f} ms   ({len(values)} arrived)"
        )
    p50, p99 = percentile(ours, 0.5), percentile(ours, 0.99)
    print(f"  p50 ratio install()/SDK: {p50 / percentile(sdk, 0.5):.3f}")
    bucket_us = hot_path(lambda: BucketSpanProcessor(Nothing()))
    sdk_us = hot_path(lambda: BatchSpanProcessor(Nothing(), max_queue_size=HOT_CALLS * 2))
    print(
        f"hot path, {HOT_CALLS:,} calls in a tight loop: BucketSpanProcessor {bucket_us:.1f} µs "
        f"vs BatchSpanProcessor {sdk_us:.1f} µs per call: {bucket_us / sdk_us:.2f}x"
    )
    ok = len(ours) == SAMPLES and p50 <= 0.5 and p99 <= 1.0
    print(f"targets met (p50 <= 0.5 s, p99 <= 1 s, all arrived): {'yes' if ok else 'no'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
