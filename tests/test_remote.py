"""The remote-like endpoint (tests/_remote.py) does what it says: latency, scripts, records."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests._remote import (
    Latency,
    RemoteServer,
    Rule,
    copies,
    events_before_their_user,
    max_in_flight,
)


@pytest.fixture(scope="module")
def remote() -> Iterator[RemoteServer]:
    """One server process for the module; each test scripts it and resets its records."""
    with RemoteServer() as server:
        yield server
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)  # stopped (and reaped) by PID when the block ended


def _connect(remote: RemoteServer) -> http.client.HTTPConnection:
    host, port = remote.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def _post(
    conn: http.client.HTTPConnection, method: str, body: Any, key: str = "k"
) -> tuple[int, dict[str, str], bytes]:
    conn.request("POST", f"/{key}/{method}", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def _user(n: int) -> dict[str, Any]:
    return {"userId": f"u{n}", "attributes": {"n": n}}


def _event(n: int, user: int = 0) -> dict[str, Any]:
    return {"event": "Sent", "userId": f"u{user}", "attributes": {"seq": n}}


def test_latency_fixed_and_range_are_honoured(remote: RemoteServer) -> None:
    """Each call is answered after the fixed latency, or one drawn from the range."""
    cases: list[tuple[Latency, float, float]] = [(0.2, 0.2, 0.2), ((0.05, 0.15), 0.05, 0.15)]
    for latency, low, high in cases:
        remote.script(latency=latency)
        remote.reset()
        conn = _connect(remote)
        for n in range(6):
            started = time.monotonic()
            assert _post(conn, "event", _event(n))[0] == 200
            assert time.monotonic() - started >= low
        calls = remote.calls()
        assert len(calls) == 6
        waits = [call.answered - call.received for call in calls]
        assert all(low <= wait <= high + 0.1 for wait in waits), waits
        if low != high:
            assert len({round(wait, 3) for wait in waits}) > 1, "a range draws per request"


def test_failures_follow_the_script(remote: RemoteServer) -> None:
    """Rules by method, first calls, first ids, probability, time window and hang-up."""
    remote.script(
        rules=[
            Rule(429, method="company", first=2, retry_after="3"),
            Rule(503, method="user", first_ids=2),
            Rule(500, method="event", probability=0.5),
            Rule(502, method="user", after=3600),  # not yet in force
            Rule(504, method="user", until=3600),  # in force now
        ],
        seed=7,
    )
    remote.reset()
    conn = _connect(remote)
    company = {"companyId": "c1", "userId": "u1"}
    answers = [_post(conn, "company", company) for _ in range(3)]
    assert [a[0] for a in answers] == [429, 429, 200]
    assert answers[0][1]["Retry-After"] == "3"
    assert b"429" in answers[0][2] and answers[2][2] == b'{"success":true}'
    # the first two users fail every time (retries too); a third one falls through to the 504
    users = [_post(conn, "user", _user(n))[0] for n in (1, 2, 1, 2, 3, 1)]
    assert users == [503, 503, 503, 503, 504, 503]
    events = [_post(conn, "event", _event(n))[0] for n in range(40)]
    assert set(events) == {200, 500} and 8 < events.count(500) < 32
    assert _post(conn, "user", {"attributes": {}})[0] == 400  # no userId: the API's 400
    assert _post(conn, "events", _event(0))[0] == 404  # only user, company and event exist
    recorded = remote.calls()
    assert [c.status for c in recorded] == [*(a[0] for a in answers), *users, *events, 400, 404]
    remote.script(rules=[Rule(hang_up=True)])
    with pytest.raises(http.client.RemoteDisconnected):
        _post(conn, "event", _event(99))
    assert remote.calls(since=len(recorded))[0].status is None


def test_records_are_complete_and_ordered(remote: RemoteServer) -> None:
    """Every call from several connections is recorded whole, with its times and status."""
    remote.script(latency=0.01)
    remote.reset()

    def client(worker: int) -> None:
        conn = _connect(remote)
        for n in range(worker * 20, worker * 20 + 20):
            _post(conn, "user", _user(n), key="my-key")
            _post(conn, "event", _event(n, user=n), key="my-key")

    threads = [threading.Thread(target=client, args=(w,)) for w in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    calls = remote.calls()
    assert len(calls) == 200
    assert {c.key for c in calls} == {"my-key"} and {c.path.count("/") for c in calls} == {2}
    assert sorted(c.json["userId"] for c in calls if c.method == "user") == sorted(
        f"u{n}" for n in range(100)
    )
    assert copies(calls, "seq") == dict.fromkeys(range(100), 1)
    assert events_before_their_user(calls) == []  # each client sent the user first
    assert all(c.received < c.answered and c.status == 200 and not c.client_left for c in calls)
    assert len({c.connection for c in calls}) == 5  # keep-alive: one connection per client
    assert [c.answered for c in calls] == sorted(c.answered for c in calls)
    assert remote.stats().delivered == {"user": 100, "event": 100}


def test_concurrency_and_connections_are_counted(remote: RemoteServer) -> None:
    """300 connections with a call in flight each: counted live, in the stats and the records."""
    remote.script(latency=60)
    remote.reset()
    request = (
        b"POST /k/event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
    )
    socks = []
    try:
        for n in range(300):
            sock = socket.create_connection(("127.0.0.1", int(remote.url.rsplit(":", 1)[1])))
            body = json.dumps(_event(n)).encode()
            sock.sendall(request % (len(body), body))
            socks.append(sock)
        stats = remote.wait_for(in_flight=300, timeout=20)
        assert stats.in_flight == stats.max_in_flight == 300
        assert stats.connections >= 300
        remote.release()  # answer them all now instead of in 60 s
        for sock in socks:
            sock.settimeout(10)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in socks:
            sock.close()
    calls = remote.calls()
    assert len(calls) == 300 and max_in_flight(calls) == 300
    assert max(c.in_flight for c in calls) == 300
    assert remote.wait_for(delivered=300, method="event", timeout=5).delivered == {"event": 300}
    started = calls[-1].received
    assert max_in_flight(calls, start=started, end=started) == 300


def test_a_client_leaving_before_the_answer_is_recorded(remote: RemoteServer) -> None:
    """A call whose client hung up is still taken (as the API would), marked client_left."""
    remote.script(latency=0.3)
    remote.reset()
    body = json.dumps(_event(1)).encode()
    with socket.create_connection(("127.0.0.1", int(remote.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"POST /k/event HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        remote.wait_for(in_flight=1)
    remote.wait_for(delivered=1, method="event")
    [call] = remote.calls()
    assert call.client_left and call.ok and copies([call], "seq") == {1: 1}
