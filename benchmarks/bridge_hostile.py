"""An ``otel-bucket bridge`` process under attack: memory under a compression flood, and the time
a valid request waits beside slow and idle clients.

Run: ``python benchmarks/bridge_hostile.py`` (about 30 s; Linux, for the bridge's peak memory).

(a) Flood. 16 concurrent requests of each kind, tens of KB on the wire each: 838,860 spans that
    have only a trace id (the flood of issue 21: 40,736 bytes of gzip, 16 MiB inflated), one span
    with 8 million empty attributes, OTLP JSON with 5 million empty objects. Reported: the
    answers, the bridge process's peak resident memory (VmHWM) against its memory when idle,
    and its CPU time. Target: a few hundred MB at most.
(b) Slow clients. The median time of ``GET /health`` and of a valid ``POST /v1/traces`` (3 spans,
    protobuf) over 20 tries, side by side: alone; beside 64 connections that each send a request
    head one byte every 0.5 s; beside 1,100 idle connections (more than ``--max-connections``,
    1,024); and beside 64 dripping connections with ``--listen-key`` set. Target: a valid POST
    is not delayed by more than a second.
"""

from __future__ import annotations

import gzip
import os
import re
import resource
import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from bridge import KEY, cpu_of, start_bridge  # this folder is first on sys.path
from google.protobuf.internal.encoder import _VarintBytes
from opentelemetry.proto.trace.v1.trace_pb2 import Span

INFLATED = 16 * 1024 * 1024 - 64  # just within the bridge's default cap on bodies
DEAD = "http://127.0.0.1:9"  # no call leaves the bridge in either part


def _len_field(number: int, payload: bytes) -> bytes:
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def _in_one_scope(spans: bytes) -> bytes:
    return gzip.compress(_len_field(1, _len_field(2, spans)), 9)


def flood_of_spans() -> bytes:
    span = _len_field(2, Span(trace_id=b"\x01" * 16).SerializeToString())
    return _in_one_scope(span * (INFLATED // len(span)))


def flood_of_attributes() -> bytes:
    user = b"\x4a\x0f\x0a\x0aenduser.id\x12\x01\x0a"  # KeyValue(enduser.id = "") in field 9
    return _in_one_scope(_len_field(2, user + b"\x4a\x00" * (INFLATED // 2)))


def flood_of_json() -> bytes:
    spans = b"{}," * (INFLATED // 3 - 20)
    return gzip.compress(b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + spans + b"{}]}]}]}", 9)


def peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) / 1024


def flood() -> None:
    kinds: list[tuple[str, Callable[[], bytes], str]] = [
        ("838,860 spans", flood_of_spans, "application/x-protobuf"),
        ("8 M attributes", flood_of_attributes, "application/x-protobuf"),
        ("5 M JSON objects", flood_of_json, "application/json"),
    ]
    print("(a) 16 concurrent flood requests of each kind against one bridge process:")
    proc, url = start_bridge(DEAD)
    try:
        time.sleep(1)  # settled: imports done
        idle = peak_mb(proc.pid)
        cpu = cpu_of(proc.pid)
        for name, make, content_type in kinds:
            body = make()
            headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                sent = [
                    pool.submit(
                        requests.post, f"{url}/v1/traces", data=body, headers=headers, timeout=120
                    )
                    for _ in range(16)
                ]
                codes = sorted({future.result().status_code for future in sent})
            print(
                f"  {name:>16} ({len(body):,} B of gzip each): answered {codes} in "
                f"{time.perf_counter() - started:.2f} s; peak RSS so far {peak_mb(proc.pid):.0f} MB"
            )
        print(
            f"  peak RSS {peak_mb(proc.pid):.0f} MB (idle {idle:.0f} MB), "
            f"{cpu_of(proc.pid) - cpu:.1f} s of CPU for the 48 requests"
        )
    finally:
        proc.terminate()
        proc.wait(60)


# -- (b) slow clients ----------------------------------------------------------------------------


class Clients:
    """``count`` connections sending ``data`` a byte every ``every`` s (none: they stay idle)."""

    def __init__(self, url: str, count: int, data: bytes, every: float) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._stop = threading.Event()
        self._sockets = [socket.create_connection((host, int(port))) for _ in range(count)]
        for sock in self._sockets:
            threading.Thread(target=self._drip, args=(sock, data, every), daemon=True).start()

    def _drip(self, sock: socket.socket, data: bytes, every: float) -> None:
        for byte in data:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            if self._stop.wait(every):
                return

    def close(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            sock.close()


def _median_ms(call: Callable[[], requests.Response], tries: int = 20) -> str:
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        try:
            status = call().status_code
        except requests.RequestException as exc:
            return f"failed ({type(exc).__name__})"
        times.append((time.perf_counter() - started) * 1000)
        assert status == 200, status
    return f"{statistics.median(times):7.1f} ms"


def slow_clients() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for index in range(3):
        provider.get_tracer("b").start_span("x", attributes={"enduser.id": f"u{index}"}).end()
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    head = b"POST /v1/traces HTTP/1.1\r\nHost: bridge\r\n" + b"X-Padding: slow\r\n" * 200
    cases = [
        ("alone", 0, b"", False),
        ("64 dripping heads", 64, head, False),
        ("1,100 idle connections", 1100, b"", False),
        ("64 dripping, --listen-key", 64, head, True),
    ]
    print("(b) median of 20 requests, GET /health and a valid POST (3 spans):")
    for name, count, data, keyed in cases:
        args = ("--listen-key", KEY) if keyed else ()
        proc, url = start_bridge(DEAD, *args)
        clients = Clients(url, count, data, 0.5)
        try:
            time.sleep(1)  # every slow connection open and started
            auth = {"Authorization": f"Bearer {KEY}"} if keyed else {}
            headers = {"Content-Type": "application/x-protobuf", **auth}
            health = _median_ms(lambda u=url: requests.get(f"{u}/health", timeout=40))
            post = _median_ms(
                lambda u=url, h=headers: requests.post(
                    f"{u}/v1/traces", data=body, headers=h, timeout=40
                )
            )
            print(f"  {name:>26}: /health {health}, POST {post}")
        finally:
            clients.close()
            proc.terminate()
            proc.wait(60)


def main() -> None:
    # 1,100 client sockets: raise this process's soft limit on open files if it is lower.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 and (hard == resource.RLIM_INFINITY or hard >= 2048):
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    print(f"{os.cpu_count()} CPUs")
    flood()
    slow_clients()


if __name__ == "__main__":
    main()
