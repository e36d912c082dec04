"""Delivery speed of ``BucketSpanExporter.export`` against a loopback HTTP server.

Run: ``python benchmarks/delivery.py`` (about 40 s). Two measurements, each side by side in one run:

(a) Concurrency. 220 calls (16 users, 16 companies, 188 events, made from 188 event spans that
    also carry a user and a company) against a server that answers every request after 50 ms,
    with the default settings (calls in flight follow the latency, up to 128), with a fixed
    ceiling of 8 (the old default), and one at a time. Events wait only for their own user and
    company calls. With 8 in flight at most, 220 calls need at least 220 / 8 = 28 rounds of 50 ms
    (a ratio to one at a time near 7.9x); the default starts at 8 a method and doubles each
    round while every slot is taken. Target: the default >= 15x one at a time.
(b) CPU per call. 2,000 event spans for 4 users (2,008 calls: 4 user, 4 company, 2,000 event)
    against a server that answers at once: the client process's CPU time (all its threads) per
    call, and calls/s, for ``BucketSpanExporter.export`` (default settings, and
    ``max_concurrency=1``) and for plain loops posting the very same bodies (taken from the
    exporter's own mapping) with ``requests``, ``urllib3`` and ``http.client``. The exporter's
    figures include mapping the spans; the loops' do not. Targets: the default path at most 2.0x the
    ``http.client`` loop's CPU per call, and at least the ``requests`` loop's calls/s.

The servers are ``ThreadingHTTPServer`` s on 127.0.0.1 (HTTP/1.1 keep-alive, Nagle off), each in
its own process so that their work does not compete with the client for the client's GIL, as a
real endpoint would not. Deduplication is turned off so repeated rounds send the same calls.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_bucket import BucketSpanExporter
from otel_bucket.export._mapping import plan_calls

KEY = "benchmark-key"
LATENCY = 0.050  # seconds the slow server waits before answering
USERS = 16  # the 188 event spans cycle over 16 users, each in its own company
EVENTS = 188  # 16 user + 16 company + 188 event calls = 220
ROUNDS = 3  # part (b): alternating rounds; the best of each is reported, as timeit does


# -- the server (runs in a child process) -----------------------------------------------------


def _serve(latency: float, ready: Any) -> None:
    counts: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if latency:
                time.sleep(latency)
            method = self.path.rsplit("/", 1)[-1]
            counts[method] = counts.get(method, 0) + 1  # a dict update is atomic under the GIL
            self._answer(b'{"success":true}')

        def do_GET(self) -> None:  # the request counts, for the benchmark to check delivery
            self._answer(json.dumps(counts).encode())

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 64

    httpd = Server(("127.0.0.1", 0), Handler)
    ready.send(httpd.server_address[1])
    httpd.serve_forever()


class LoopbackServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 in a child process."""

    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(latency, child), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{parent.recv()}"

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = requests.get(self.url + "/counts", timeout=5).json()
        return counts

    def close(self) -> None:
        self._process.terminate()
        self._process.join()


# -- spans ------------------------------------------------------------------------------------


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def event_spans(count: int, users: int) -> list[ReadableSpan]:
    """``count`` finished event spans as ``identify`` + ``feature`` make them."""
    collect = _Collect()
    provider = TracerProvider()
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("benchmark")
    for i in range(count):
        user = i % users
        attributes: dict[str, Any] = {
            "bucket.event": "Sent message",
            "bucket.attributes.position": "popover",
            "bucket.attributes.index": i,
            "enduser.id": f"user-{user}",
            "bucket.user.name": f"User {user}",
            "bucket.company.id": f"company-{user}",
            "bucket.company.plan": "enterprise",
        }
        tracer.start_span("Sent message", attributes=attributes).end()
    return collect.spans


def exporter(url: str, concurrency: int | None = None) -> BucketSpanExporter:
    """An exporter with ``max_concurrency`` (None: the default)."""
    return BucketSpanExporter(
        KEY, endpoint=url, max_concurrency=concurrency, dedupe_window=0, timeout=60
    )


def timed_export(exp: BucketSpanExporter, batches: Sequence[Sequence[ReadableSpan]]) -> float:
    start = time.perf_counter()
    for batch in batches:
        if exp.export(batch) is not SpanExportResult.SUCCESS:
            raise SystemExit("an export failed: the benchmark's server did not answer")
    return time.perf_counter() - start


# -- (a) concurrency --------------------------------------------------------------------------


def concurrency() -> tuple[float, float, float]:
    spans = event_spans(EVENTS, USERS)
    plan = plan_calls(spans)
    calls = [len(phase) for phase in plan.phases]
    assert calls == [USERS, USERS, EVENTS], calls
    server = LoopbackServer(LATENCY)
    try:
        default, eight, one = exporter(server.url), exporter(server.url, 8), exporter(server.url, 1)
        for exp in (default, eight, one):  # warm up: open connections, start threads
            timed_export(exp, [spans[:1]])
        before = sum(server.counts().values())
        adaptive = min(timed_export(default, [spans]) for _ in range(3))
        capped = min(timed_export(eight, [spans]) for _ in range(3))
        serial = timed_export(one, [spans])
        sent = sum(server.counts().values()) - before
        assert sent == 7 * sum(calls), f"the server got {sent} calls, expected {7 * sum(calls)}"
        for exp in (default, eight, one):
            exp.shutdown()
    finally:
        server.close()
    print(
        f"(a) {sum(calls)} calls ({calls[0]} user, {calls[1]} company, {calls[2]} event), "
        f"server latency {LATENCY * 1000:.0f} ms"
    )
    print(f"    max_concurrency=1 (one at a time):    {serial:7.3f} s")
    print(f"    max_concurrency=8 (best of 3):        {capped:7.3f} s ({serial / capped:.1f}x)")
    print(f"    default settings (best of 3):         {adaptive:7.3f} s ({serial / adaptive:.1f}x)")
    print(f"    speed-up of the default: {serial / adaptive:.1f}x one at a time (target >= 15x)")
    return serial, capped, adaptive


# -- (b) CPU per call ------------------------------------------------------------------------


CPU_EVENTS = 2000  # event spans for 4 users (each in a company of its own): 2,008 calls


def _posts(spans: Sequence[ReadableSpan]) -> list[tuple[str, bytes]]:
    return [
        (call.method, json.dumps(call.payload, separators=(",", ":")).encode())
        for phase in plan_calls(spans).phases
        for call in phase
    ]


def _requests_loop(url: str, posts: list[tuple[str, bytes]]) -> Callable[[], None]:
    session = requests.Session()
    headers = {"Content-Type": "application/json", "User-Agent": "benchmark"}
    base = f"{url}/{KEY}/"

    def run() -> None:
        for method, body in posts:
            session.post(base + method, data=body, headers=headers, timeout=10).raise_for_status()

    return run


def _urllib3_loop(url: str, posts: list[tuple[str, bytes]]) -> Callable[[], None]:
    import urllib3

    host, port = url.rsplit("/", 1)[-1].split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=1)
    headers = {"Content-Type": "application/json", "User-Agent": "benchmark"}

    def run() -> None:
        for method, body in posts:
            response = pool.urlopen(
                "POST", f"/{KEY}/{method}", body=body, headers=headers, retries=False
            )
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}")

    return run


def _http_client_loop(url: str, posts: list[tuple[str, bytes]]) -> Callable[[], None]:
    import http.client

    host, port = url.rsplit("/", 1)[-1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json", "User-Agent": "benchmark"}

    def run() -> None:
        for method, body in posts:
            conn.request("POST", f"/{KEY}/{method}", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}")

    return run


def _exporter_run(exp: BucketSpanExporter, spans: Sequence[ReadableSpan]) -> Callable[[], None]:
    def run() -> None:
        if exp.export(spans) is not SpanExportResult.SUCCESS:
            raise SystemExit("an export failed: the benchmark's server did not answer")

    return run


def _measure(run: Callable[[], None]) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) of one run; CPU counts every thread."""
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


def cpu_per_call() -> dict[str, tuple[float, float]]:
    spans = event_spans(CPU_EVENTS, 4)
    posts = _posts(spans)
    calls = len(posts)
    server = LoopbackServer(0.0)
    rows: dict[str, Callable[[], None]] = {}
    exporters = [exporter(server.url), exporter(server.url, 1)]
    try:
        rows["BucketSpanExporter.export, default settings"] = _exporter_run(exporters[0], spans)
        rows["BucketSpanExporter.export, max_concurrency=1"] = _exporter_run(exporters[1], spans)
        rows["plain requests.Session().post loop"] = _requests_loop(server.url, posts)
        rows["plain urllib3.HTTPConnectionPool.urlopen loop"] = _urllib3_loop(server.url, posts)
        rows["plain http.client.HTTPConnection loop"] = _http_client_loop(server.url, posts)
        for run in rows.values():  # warm up: connections, threads
            run()
        best: dict[str, tuple[float, float]] = {}
        for _ in range(ROUNDS):  # alternate, so drift of the machine hits every row alike
            for name, run in rows.items():
                cpu, wall = _measure(run)
                if name not in best or cpu < best[name][0]:
                    best[name] = (cpu, wall)
        sent = sum(server.counts().values())
        assert sent == (ROUNDS + 1) * len(rows) * calls, f"the server got {sent} calls"
    finally:
        for exp in exporters:
            exp.shutdown()
        server.close()
    print(
        f"(b) {calls} calls per round ({CPU_EVENTS} event spans, 4 users), server in its own "
        f"process, client process CPU (all threads) per call, best of {ROUNDS} alternating rounds"
    )
    print(f"    {'client':<52} {'CPU per call':>12} {'calls/s':>9}")
    for name, (cpu, wall) in best.items():
        print(f"    {name:<52} {cpu / calls * 1e6:9.0f} us {calls / wall:9,.0f}")
    ours = best["BucketSpanExporter.export, default settings"]
    floor = best["plain http.client.HTTPConnection loop"]
    loop = best["plain requests.Session().post loop"]
    print(
        f"    default path: {ours[0] / floor[0]:.2f}x the http.client loop's CPU per call "
        f"(target <= 2.0x); {loop[1] / ours[1]:.2f}x the requests loop's calls/s (target >= 1.0x)"
    )
    return best


def main() -> None:
    start = time.perf_counter()
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    concurrency()
    cpu_per_call()
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
