"""The exporter's memory stays bounded however many distinct users it sees (issue 5, point 5)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_bucket import BucketSpanExporter
from tests._capture import CaptureServer
from tests._spans import FakeClock

KEY = "trKEY-memory"
BATCH = 512


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _batches(users: range, padding: int = 0, company: bool = True) -> Iterator[list[ReadableSpan]]:
    """Spans with one distinct user each (a ``padding``-character attribute distinct per user,
    ten users per company), built and handed out ``BATCH`` at a time, never all at once."""
    collect = _Collect()
    provider = TracerProvider()
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("tests")
    for first in range(users.start, users.stop, BATCH):
        for user in range(first, min(first + BATCH, users.stop)):
            attributes = {
                "enduser.id": f"u{user}",
                "bucket.user.name": f"{user:08d}".ljust(padding, "x"),
            }
            if company:
                attributes["bucket.company.id"] = f"c{user // 10}"
            tracer.start_span("op", attributes=attributes).end()
        yield collect.spans
        collect.spans = []


class _Answer200(requests.Session):
    """A session that answers every request with 200 in-process: no socket, no per-call cost
    beyond the exporter's own, so 100,000 users take seconds."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"success":true}'
        response._content_consumed = True  # type: ignore[attr-defined]
        return response


class _Refused(requests.Session):
    """A session whose every request fails as a refused connection would."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError("connection refused")


def _rss_mb() -> float:
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_dedupe_memory_never_exceeds_dedupe_size(server: CaptureServer) -> None:
    """Over real HTTP, the memory of delivered calls holds at most ``dedupe_size`` entries."""
    exporter = BucketSpanExporter(KEY, endpoint=server.url, dedupe_size=50)
    try:
        for spans in _batches(range(600)):
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            assert len(exporter._dedupe) <= 50
        assert len(exporter._dedupe) == 50
        assert exporter.stats.delivered == 2 * 600  # a user call and a company call per user
    finally:
        exporter.shutdown()


def test_dedupe_forgets_the_least_recently_used_first(server: CaptureServer) -> None:
    """Past ``dedupe_size``, the latest users are still deduplicated and the oldest sent again
    (one call in flight at a time, so calls are delivered, and remembered, in order)."""
    exporter = BucketSpanExporter(KEY, endpoint=server.url, dedupe_size=40, max_concurrency=1)
    try:
        exporter.export(next(_batches(range(100), company=False)))
        assert len(server.requests) == 100
        exporter.export(next(_batches(range(60, 100), company=False)))  # remembered: none sent
        assert len(server.requests) == 100
        exporter.export(next(_batches(range(50, 60), company=False)))  # forgotten: sent again
        assert len(server.requests) == 110
    finally:
        exporter.shutdown()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_rss_stays_bounded_over_50000_distinct_users() -> None:
    """50,000 users, each with a distinct 2 KiB attribute, grow the process far less than
    remembering them all would (about 140 MB)."""
    exporter = BucketSpanExporter(
        KEY, endpoint="http://in-process", dedupe_size=1_000, session=_Answer200()
    )
    batches = _batches(range(50_000), padding=2048)
    try:
        assert exporter.export(next(batches)) is SpanExportResult.SUCCESS  # warm up
        before = _rss_mb()
        for spans in batches:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            assert len(exporter._dedupe) <= 1_000
        growth = _rss_mb() - before
    finally:
        exporter.shutdown()
    assert exporter.stats.delivered == 2 * 50_000
    assert growth < 40, f"resident memory grew by {growth:.1f} MB"


def test_memory_stays_bounded_while_the_endpoint_is_down() -> None:
    """Undelivered calls for 12,288 distinct users are kept in memory up to its limit (here
    10,000), no more; with the spool off, the oldest beyond it are counted as lost."""
    limit = 10_000
    exporter = BucketSpanExporter(
        KEY, endpoint="http://in-process", session=_Refused(), clock=FakeClock()
    )
    exporter._dispatcher._memory_limit = limit
    try:
        for spans in _batches(range(24 * BATCH)):
            assert exporter.export(spans) is SpanExportResult.FAILURE
            assert exporter.stats.pending <= limit
        stats = exporter.stats
    finally:
        exporter.shutdown()
    assert stats.pending == limit
    assert stats.delivered == 0
    assert stats.undelivered == 2 * 24 * BATCH - limit  # given up, oldest first
