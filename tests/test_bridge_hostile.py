"""A real ``otel-bucket bridge`` process under attack: compression floods, slow and idle clients."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from google.protobuf.internal.encoder import _VarintBytes as varint
from google.rpc import status_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests._bridge import PROTO, bridge_process, otlp_events, peak_rss_mb

pytestmark = pytest.mark.slow

LIMIT = 16 * 1024 * 1024  # the bridge's default max body


def _field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _request(spans: bytes) -> bytes:
    """An ExportTraceServiceRequest holding one ResourceSpans, one ScopeSpans and ``spans``."""
    return _field(1, _field(2, spans))


def many_spans() -> bytes:
    """The issue's flood: about 40 KB of gzip holding 838,860 spans that have only a trace id."""
    one = _field(2, Span(trace_id=b"\x01" * 16).SerializeToString())
    return gzip.compress(_request(one * ((LIMIT - 16) // len(one))), 9)


def many_attributes() -> bytes:
    """One span with a user id and eight million empty attributes, in 16 KB of gzip."""
    user = KeyValue(key="enduser.id", value=AnyValue(string_value="u")).SerializeToString()
    span = _field(9, user) + b"\x4a\x00" * ((LIMIT - 64) // 2)
    return gzip.compress(_request(_field(2, span)), 9)


def many_json_values() -> bytes:
    """OTLP JSON with five million empty objects for spans, in 20 KB of gzip."""
    spans = b"{}," * 5_000_000
    return gzip.compress(b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + spans + b"{}]}]}]}", 9)


FLOODS = {
    "protobuf spans": (many_spans, "application/x-protobuf", "more than 16384 spans"),
    "protobuf attributes": (
        many_attributes,
        "application/x-protobuf",
        "more than 65536 values in its large spans",
    ),
    "json values": (many_json_values, "application/json", "more than 524288 values"),
}


def post(url: str, body: bytes, content_type: str, gzipped: bool = False) -> requests.Response:
    headers = {"Content-Type": content_type}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return requests.post(f"{url}/v1/traces", data=body, headers=headers, timeout=60)


def test_compression_floods_are_refused_while_decoding_with_memory_bounded() -> None:
    """16 concurrent requests of each kind of flood (tens of KB on the wire, millions of spans,
    attributes or JSON values once inflated) are refused with 413 naming the limit, before they
    are decoded whole; the bridge stays well under 300 MB and goes on serving."""
    with bridge_process() as (proc, url):
        for name, (make, content_type, message) in FLOODS.items():
            body = make()
            assert len(body) < 64 * 1024, name
            with ThreadPoolExecutor(16) as pool:
                sent = [pool.submit(post, url, body, content_type, True) for _ in range(16)]
                answers = [future.result() for future in sent]
            assert [a.status_code for a in answers] == [413] * 16, name
            if content_type == "application/json":
                assert message in answers[0].json()["message"], name
            else:
                assert message in status_pb2.Status.FromString(answers[0].content).message, name
        peak = peak_rss_mb(proc.proc.pid)
        assert peak < 300, f"peak RSS {peak:.0f} MB"
        assert post(url, otlp_events("u1", 3), PROTO["Content-Type"]).status_code == 200


# -- slow and idle clients ---------------------------------------------------------------------


@contextlib.contextmanager
def dripping(
    url: str, count: int, data: bytes, every: float, prefix: bytes = b""
) -> Iterator[list[socket.socket]]:
    """``count`` connections, each sending ``prefix`` at once, then ``data`` one byte every
    ``every`` seconds."""
    host, port = url.removeprefix("http://").split(":")
    stop = threading.Event()
    sockets = [socket.create_connection((host, int(port)), timeout=10) for _ in range(count)]

    def drip(sock: socket.socket) -> None:
        if prefix:
            sock.sendall(prefix)
        for byte in data:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return  # the bridge closed it
            if stop.wait(every):
                return

    threads = [threading.Thread(target=drip, args=(sock,), daemon=True) for sock in sockets]
    for thread in threads:
        thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for sock in sockets:
            sock.close()


SLOW_HEAD = b"POST /v1/traces HTTP/1.1\r\nHost: bridge\r\n" + b"X-Padding: slow\r\n" * 200


@pytest.mark.parametrize("listen_key", [None, "hostile-token"], ids=["open", "listen-key"])
def test_slow_clients_lock_no_one_out(listen_key: str | None) -> None:
    """64 connections dripping a request head (a byte every 0.5 s, well inside any per-read
    timeout) hold no thread: /health and a valid POST are answered at once, with or without a
    listen key."""
    args = ("--listen-key", listen_key) if listen_key else ()
    auth = {"Authorization": f"Bearer {listen_key}"} if listen_key else {}
    with bridge_process(*args) as (_, url), dripping(url, 64, SLOW_HEAD, 0.5):
        for _ in range(3):
            assert requests.get(f"{url}/health", timeout=10).status_code == 200
            answer = requests.post(
                f"{url}/v1/traces", data=otlp_events("u1", 2), headers={**PROTO, **auth}, timeout=10
            )
            assert answer.status_code == 200


def test_more_idle_connections_than_the_limit_shed_the_oldest() -> None:
    """Past --max-connections (1,024 by default), a new connection is served and the oldest
    idle connection is closed instead."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1400:
        if hard != resource.RLIM_INFINITY and hard < 1400:
            pytest.skip(f"1,100 sockets do not fit in this process's limit of {hard} files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1400, hard))
    try:
        with bridge_process() as (_, url), dripping(url, 1100, b"", 1.0) as idle:
            assert requests.get(f"{url}/health", timeout=10).status_code == 200
            answer = post(url, otlp_events("u1", 2), PROTO["Content-Type"])
            assert answer.status_code == 200
            # The first connections opened were shed: the bridge closed them.
            idle[0].settimeout(10)
            assert idle[0].recv(1) == b""
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_request_has_a_deadline_not_a_timeout_per_read() -> None:
    """A body dripped a byte every 0.2 s never stalls a read, yet the request ends at its
    deadline (--request-timeout) with 408 and a closed connection."""
    head = b"POST /v1/traces HTTP/1.1\r\nHost: b\r\nContent-Type: application/x-protobuf\r\n"
    head += b"Content-Length: 1000\r\n\r\n"
    with (
        bridge_process("--request-timeout", "2") as (_, url),
        dripping(url, 1, b"x" * 1000, 0.2, prefix=head) as (sock,),
    ):
        sock.settimeout(15)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b"Connection: close" in answer
