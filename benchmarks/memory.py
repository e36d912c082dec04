"""Resident memory of ``BucketSpanExporter`` over 1,000,000 spans from 100,000 distinct users.

Run: ``python benchmarks/memory.py`` (one to three minutes). Target: the process grows by at most
50 MB.

The spans are what ``identify`` + ``feature`` make: every span carries the user id, a user
attribute, the company id and a company attribute; every fifth carries ``bucket.event``. Each user
makes 10 spans in a row (one visit), so 1,000,000 spans name 100,000 distinct users and 10,000
companies, and an export of 512 spans sends about 52 user, 52 company and 102 event calls. The
spans are built 512 at a time (the batch processor's default batch) and handed to ``export``, so
the benchmark itself never holds more than one batch.

Two runs, each in a fresh process so neither inherits the other's heap:

1. 1,000,000 spans through the whole exporter (mapping, deduplication, the worker threads, the
   sender, ``requests.Session``) with a session whose transport adapter answers 200 in-process
   instead of opening a socket. Not ``offline=True``: offline exports never record a delivered
   call, so the deduplication memory would stay empty and prove nothing. Not a loopback server:
   about 400,000 calls at ~1,000 calls/s on loopback would take several minutes. What the
   adapter skips is the socket and ``http.client``, which keep no per-user state.
2. A smaller run through a real HTTP server on 127.0.0.1 (a child process): 50,000 spans over
   5,000 users, to show that the socket path holds nothing per call either.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import requests
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from requests.adapters import BaseAdapter

from otel_bucket import BucketSpanExporter

KEY = "benchmark-key"
BATCH = 512
SPANS_PER_USER = 10
EVENT_EVERY = 5
TARGET_MB = 50.0


def _status(field: str) -> float:
    """A ``/proc/self/status`` memory field in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mb() -> float:
    gc.collect()
    return _status("VmRSS")


class Answer200(BaseAdapter):
    """A transport that answers every request with 200 without touching the network."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"success":true}'
        response.request = request
        response.url = request.url
        return response

    def close(self) -> None:
        pass


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _attributes(i: int) -> Mapping[str, Any]:
    user = i // SPANS_PER_USER
    attributes: dict[str, Any] = {
        "enduser.id": f"user-{user}",
        "bucket.user.name": f"User {user}",
        "bucket.company.id": f"company-{user // 10}",
        "bucket.company.plan": "enterprise",
    }
    if i % EVENT_EVERY == 0:
        attributes["bucket.event"] = "Sent message"
        attributes["bucket.attributes.index"] = i
    return attributes


def run(spans: int, endpoint: str | None) -> dict[str, Any]:
    """Export ``spans`` spans in batches; returns memory figures (MB) and counters."""
    if endpoint is None:
        session = requests.Session()
        session.trust_env = False  # no proxy or netrc lookups per request: only speed changes
        session.mount("http://", Answer200())
        exporter = BucketSpanExporter(KEY, endpoint="http://in-process", session=session)
    else:
        exporter = BucketSpanExporter(KEY, endpoint=endpoint)
    collect = _Collect()
    provider = TracerProvider()
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("benchmark")

    def export(first: int) -> None:
        for i in range(first, min(first + BATCH, spans)):
            tracer.start_span("op", attributes=_attributes(i)).end()
        if exporter.export(collect.spans) is not SpanExportResult.SUCCESS:
            raise SystemExit("an export failed")
        collect.spans.clear()

    export(0)  # warm up: start the worker threads, open the connections, fill the caches
    before = rss_mb()
    samples = []
    start = time.perf_counter()
    for first in range(BATCH, spans, BATCH):
        export(first)
        if (first // BATCH) % (spans // BATCH // 5) == 0:
            samples.append(round(rss_mb() - before, 1))
    seconds = time.perf_counter() - start
    after = rss_mb()
    stats = exporter.stats
    dedupe = len(exporter._dedupe)
    exporter.shutdown()
    return {
        "before": before,
        "after": after,
        "peak": _status("VmHWM"),
        "samples": samples,
        "seconds": seconds,
        "delivered": stats.delivered,
        "deduplicated": stats.deduplicated,
        "dedupe_entries": dedupe,
        "dedupe_size": exporter.settings.dedupe_size,
    }


def _child(spans: int, endpoint: str | None, out: Any) -> None:
    out.send(run(spans, endpoint))


def in_fresh_process(spans: int, endpoint: str | None) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_child, args=(spans, endpoint, child))
    process.start()
    result: dict[str, Any] = parent.recv()
    process.join()
    return result


def report(title: str, spans: int, r: dict[str, Any]) -> bool:
    growth = float(r["after"] - r["before"])
    print(title)
    print(
        f"    {spans:,} spans over {spans // SPANS_PER_USER:,} users in {r['seconds']:.0f} s; "
        f"{r['delivered']:,} calls delivered, {r['deduplicated']:,} deduplicated"
    )
    print(f"    dedupe memory: {r['dedupe_entries']:,} entries (bound {r['dedupe_size']:,})")
    print(f"    RSS growth at each fifth of the run (MB): {r['samples']}")
    print(
        f"    RSS {r['before']:.1f} MB -> {r['after']:.1f} MB: growth {growth:+.1f} MB "
        f"(target <= {TARGET_MB:.0f} MB); peak RSS {r['peak']:.1f} MB"
    )
    return growth <= TARGET_MB


def main() -> None:
    from delivery import LoopbackServer  # the sibling benchmark's child-process server

    started = time.perf_counter()
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    ok = report(
        "1. whole exporter, in-process 200 transport (no socket)",
        1_000_000,
        in_fresh_process(1_000_000, None),
    )
    server = LoopbackServer(0.0)
    try:
        ok &= report(
            "2. whole exporter, real HTTP server on 127.0.0.1",
            50_000,
            in_fresh_process(50_000, server.url),
        )
    finally:
        server.close()
    print(f"target met: {'yes' if ok else 'NO'}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
