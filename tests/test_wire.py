"""``_wire``: one HTTP/1.1 exchange by hand, against the raw-socket ``HostileServer`` on
127.0.0.1 answering each request with scripted bytes (so every framing a server may use is
seen)."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from otel_bucket.delivery._wire import Reply, exchange, request_head
from tests._hostile import Act, HostileServer

HEAD = request_head("/base/KEY/event", "127.0.0.1:9", {"Content-Type": "application/json"})


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


def connect(server: HostileServer) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def one(hostile: HostileServer, answer: bytes, close_after: bool = False) -> Reply:
    hostile.behaviour = lambda request: Act(raw=answer, close=close_after)
    with connect(hostile) as sock:
        return exchange(sock, HEAD, b'{"a":1}', 1024)


def test_the_request_is_a_plain_http_11_post(hostile: HostileServer) -> None:
    """One request line, Host, identity encoding, our headers and the exact Content-Length;
    two exchanges share the connection."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    hostile.behaviour = lambda request: Act(raw=ok)
    with connect(hostile) as sock:
        first = exchange(sock, HEAD, b'{"a":1}', 1024)
        second = exchange(sock, HEAD, b"{}", 1024)
    assert (first.status, first.body, first.reusable) == (200, b"ok", True)
    assert second.status == 200 and second.reusable
    received = [request.raw for request in hostile.requests]
    assert received[0] == (
        b"POST /base/KEY/event HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept-Encoding: identity\r\n"
        b'Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'
    )
    assert received[1].endswith(b"Content-Length: 2\r\n\r\n{}")


def test_a_chunked_error_answer_is_read_with_its_retry_after(hostile: HostileServer) -> None:
    reply = one(
        hostile,
        b"HTTP/1.1 503 Busy\r\nretry-after: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nslow \r\n4\r\ndown\r\n0\r\nX-Trailer: 1\r\n\r\n",
    )
    assert (reply.status, reply.retry_after, reply.body, reply.reusable) == (
        503,
        "3",
        b"slow down",
        True,
    )


def test_an_interim_100_continue_is_skipped(hostile: HostileServer) -> None:
    reply = one(
        hostile, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    )
    assert (reply.status, reply.reusable) == (202, True)


@pytest.mark.parametrize(
    ("answer", "reusable"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", False),  # bytes past it
    ],
)
def test_a_connection_is_kept_only_when_the_server_keeps_it_and_all_was_read(
    hostile: HostileServer, answer: bytes, reusable: bool
) -> None:
    reply = one(hostile, answer)
    assert reply.status in (200, 204) and reply.reusable is reusable


def test_a_long_body_is_read_to_the_limit_and_the_connection_dropped(
    hostile: HostileServer,
) -> None:
    reply = one(hostile, b"HTTP/1.1 400 Bad\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
    assert (reply.status, len(reply.body), reply.reusable) == (400, 1024, False)
    chunked = one(
        hostile,
        b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + b"y" * 5000 + b"\r\n",
    )
    assert (chunked.status, chunked.body, chunked.reusable) == (400, b"y" * 1024, False)


def test_a_body_ended_by_the_connection_is_read_to_its_end(hostile: HostileServer) -> None:
    reply = one(hostile, b"HTTP/1.1 500 Oops\r\nLocation: /x\r\n\r\nall of it", close_after=True)
    assert (reply.status, reply.location, reply.body, reply.reusable) == (
        500,
        "/x",
        b"all of it",
        False,
    )


def test_a_body_that_breaks_off_keeps_the_status(hostile: HostileServer) -> None:
    reply = one(hostile, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", close_after=True)
    assert (reply.status, reply.body, reply.reusable) == (200, b"part", False)
    broken = one(
        hostile,
        b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        close_after=True,
    )
    assert (broken.status, broken.body, broken.reusable) == (503, b"", False)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"", http.client.RemoteDisconnected),  # closed without a word: a hiccup
        (b"SMTP ready\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 abc OK\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 101 + b"\r\n", http.client.HTTPException),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000, http.client.LineTooLong),
        (b"HTTP/1.1 200 OK\r\nX: y", http.client.IncompleteRead),  # cut inside the head
    ],
)
def test_a_malformed_answer_raises_http_clients_errors(
    hostile: HostileServer, answer: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        one(hostile, answer, close_after=True)
