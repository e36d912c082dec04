"""Helpers to make real spans from a real TracerProvider."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_bucket import ExporterStats


def make_spans(*attribute_sets: Mapping[str, Any], start: int | None = None) -> list[ReadableSpan]:
    """One finished span per attribute set, started in order (or all at ``start`` ns)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    for index, attributes in enumerate(attribute_sets):
        at = None if start is None else start + index * 1_000_000
        tracer.start_span("op", attributes=dict(attributes), start_time=at).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


class FakeClock:
    """A monotonic clock that only moves when the code under test waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        if stop.is_set():
            return True
        self.waits.append(seconds)
        self.now += seconds
        return False

    def advance(self, seconds: float) -> None:
        self.now += seconds


def payloads(spans: Sequence[ReadableSpan]) -> list[tuple[str, dict[str, Any]]]:
    """The (method, payload) pairs the exporter's mapping makes of ``spans``."""
    from otel_bucket.export._mapping import plan_calls

    plan = plan_calls(spans)
    return [(c.method, c.payload) for phase in plan.phases for c in phase]


def balanced(stats: ExporterStats) -> bool:
    """Every call is counted in exactly one place: ``calls + unspooled == delivered + rejected
    + deduplicated + dropped + filtered + undelivered + spooled + pending``."""
    settled = (
        stats.delivered
        + stats.rejected
        + stats.deduplicated
        + stats.dropped
        + stats.filtered
        + stats.undelivered
        + stats.spooled
        + stats.pending
    )
    return stats.calls + stats.unspooled == settled
