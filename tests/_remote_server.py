"""The process behind ``tests._remote.RemoteServer``: a Bucket-like endpoint on one asyncio loop.

Run as ``python -m tests._remote_server '<script JSON>'``; it prints ``remote listening on <url>``
and serves until SIGTERM. One ``asyncio.Protocol`` per connection and one timer per request
(``loop.call_later``) hold hundreds of keep-alive connections and thousands of calls per second
on a fraction of a core: no thread and no task per request.

Calls are ``POST {base}/{key}/{user|company|event}``. Control paths (never recorded) start with
``/_``: ``GET /_calls?since=N``, ``GET /_stats``, ``GET /_wait?...``, ``POST /_script``,
``POST /_reset``, ``POST /_release`` (see ``tests._remote``).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests._remote import API_METHODS, Rule, id_of

_OK = b'{"success":true}'
_HEAD_LIMIT = 64 * 1024


class _Script:
    """The latency and failure rules in force, with each rule's own counters."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.latency: float | list[float] = spec.get("latency", 0.0)
        self.rules = [Rule.from_json(rule) for rule in spec.get("rules", [])]
        self.rng = random.Random(spec.get("seed", 0))
        self.started = time.monotonic()
        self.counts = [0] * len(self.rules)
        self.ids: list[set[str]] = [set() for _ in self.rules]

    def delay(self, latency: float | Sequence[float] | None) -> float:
        spec = self.latency if latency is None else latency
        if not isinstance(spec, int | float):
            return self.rng.uniform(spec[0], spec[1])
        return float(spec)

    def match(self, method: str, body: Any, now: float, in_flight: int) -> Rule | None:
        elapsed = now - self.started
        for index, rule in enumerate(self.rules):
            if rule.method is not None and rule.method != method:
                continue
            if rule.above is not None and in_flight <= rule.above:
                continue
            if rule.id_prefix is not None and not id_of(method, body).startswith(rule.id_prefix):
                continue
            if elapsed < rule.after or (rule.until is not None and elapsed >= rule.until):
                continue
            self.counts[index] += 1
            if rule.first is not None and self.counts[index] > rule.first:
                continue
            if rule.first_ids is not None:
                ids, key = self.ids[index], id_of(method, body)
                if key not in ids:
                    if len(ids) >= rule.first_ids:
                        continue
                    ids.add(key)
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            return rule
        return None


class _State:
    """Everything the server knows: the script, the records and the counters."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.script = _Script(spec)
        self.records: list[list[Any]] = []
        self.pending: dict[int, tuple[asyncio.TimerHandle, Any]] = {}
        self.delivered: Counter[str] = Counter()
        self.waiters: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self.tasks: set[asyncio.Future[None]] = set()
        self.next_id = 0
        self.in_flight = self.max_in_flight = 0
        self.connections = self.max_connections = self.opened = 0

    def reset(self) -> None:
        self.records.clear()
        self.delivered.clear()
        self.max_in_flight = self.in_flight
        self.max_connections = self.connections

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self.records),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "connections": self.connections,
            "max_connections": self.max_connections,
            "opened": self.opened,
            "delivered": dict(self.delivered),
            "cpu": time.process_time(),
        }

    def reached(self, want: dict[str, Any]) -> bool:
        if "in_flight" in want and self.in_flight < want["in_flight"]:
            return False
        method = want.get("method")
        count = sum(self.delivered.values()) if method is None else self.delivered[method]
        return count >= int(want.get("delivered", 0))

    def wake(self) -> None:
        if not self.waiters:
            return
        for waiter in [w for w in self.waiters if self.reached(w[0])]:
            self.waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(None)


class _Connection(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.buffer = bytearray()
        self.busy = False
        self.closed = False
        self.keep_alive = True
        self.transport: asyncio.Transport | None = None
        state.opened += 1
        self.number = state.opened

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state.connections += 1
        self.state.max_connections = max(self.state.max_connections, self.state.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self.next_request()

    def next_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _HEAD_LIMIT:
                self.close()
            return
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        verb, target, *_ = [*lines[0].split(" "), "", ""]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        declared = headers.get("content-length", "0")
        if "transfer-encoding" in headers or not declared.isdigit():  # our clients send a length
            self.busy = True
            del self.buffer[: end + 4]
            self.write(411, b"", {}, close=True)
            return
        length = int(declared)
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.busy = True
        self.keep_alive = headers.get("connection", "").lower() != "close"
        if target.startswith("/_"):
            task = asyncio.ensure_future(control(self, verb, target, body))
            self.state.tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self.state.tasks.discard)
        else:
            accept(self, verb, target, body)

    def write(self, status: int, body: bytes, headers: dict[str, str], close: bool = False) -> None:
        if self.closed or self.transport is None:
            return
        close = close or not self.keep_alive
        reason = _reason(status)
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
        head += [f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        if close:
            head.append("Connection: close")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        self.busy = False
        if close:
            self.close()
        elif self.buffer:
            self.next_request()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _body(rule: Rule) -> bytes:
    if rule.body is not None:
        return rule.body.encode()
    if 200 <= rule.status < 300:
        return _OK
    return b'{"success":false,"error":"scripted %d"}' % rule.status


def accept(conn: _Connection, verb: str, target: str, raw: bytes) -> None:
    """Take one API call: answer it after its latency, by the script."""
    state = conn.state
    received = time.monotonic()
    path = urlsplit(target).path
    parts = path.strip("/").split("/")
    method = parts[-1]
    body: Any = None
    if verb != "POST" or len(parts) < 2 or method not in API_METHODS:
        status, reply, rule = 404, b'{"success":false,"error":"no such method"}', None
    else:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if id_of(method, body) == "":
            status, reply, rule = 400, b'{"success":false,"error":"invalid body"}', None
        else:
            rule = state.script.match(method, body, received, state.in_flight + 1)
            status = 200 if rule is None else rule.status
            reply = _OK if rule is None else _body(rule)
    headers = {} if rule is None or rule.retry_after is None else {"Retry-After": rule.retry_after}
    hang_up = rule is not None and rule.hang_up
    key = parts[-2] if len(parts) >= 2 else ""
    record = [method, key, path, raw.decode("utf-8", "replace"), received, 0.0, status]
    record += [False, conn.number, state.in_flight + 1]
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    args = (conn, record, reply, headers, hang_up)
    state.next_id += 1
    ident = state.next_id
    delay = state.script.delay(None if rule is None else rule.latency)
    handle = asyncio.get_running_loop().call_later(delay, finish, ident, *args)
    state.pending[ident] = (handle, args)
    state.wake()


def finish(
    ident: int,
    conn: _Connection,
    record: list[Any],
    reply: bytes,
    headers: dict[str, str],
    hang_up: bool,
) -> None:
    """Answer (or hang up on) one call whose latency is over, and record it."""
    state = conn.state
    state.pending.pop(ident, None)
    state.in_flight -= 1
    record[5] = time.monotonic()
    record[7] = conn.closed
    if hang_up:
        record[6] = None
        conn.close()
    else:
        conn.write(record[6], reply, headers)
    state.records.append(record)
    if 200 <= (record[6] or 0) < 300:
        state.delivered[record[0]] += 1
    state.wake()


async def control(conn: _Connection, verb: str, target: str, body: bytes) -> None:
    """Answer a control request (``/_...``): records, stats, waits and scripts."""
    state = conn.state
    url = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    if url.path == "/_calls":
        since = int(query.get("since", 0))
        reply: Any = {"calls": state.records[since:], "next": len(state.records)}
    elif url.path == "/_stats":
        reply = state.stats()
    elif url.path == "/_wait":
        want: dict[str, Any] = {k: int(query[k]) for k in ("delivered", "in_flight") if k in query}
        want["method"] = query.get("method")
        if not state.reached(want):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (want, future)
            state.waiters.append(waiter)
            try:
                await asyncio.wait_for(future, float(query.get("timeout", 10)))
            except asyncio.TimeoutError:
                state.waiters.remove(waiter)
        reply = state.stats()
    elif url.path == "/_release":
        for ident, (handle, args) in list(state.pending.items()):
            handle.cancel()
            finish(ident, *args)
        reply = state.stats()
    elif url.path == "/_reset":
        state.reset()
        reply = state.stats()
    elif url.path == "/_script" and verb == "POST":
        state.script = _Script(json.loads(body))
        reply = state.stats()
    else:
        conn.write(404, b"{}", {})
        return
    conn.write(200, json.dumps(reply).encode(), {})


def _stop(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)


async def serve(spec: dict[str, Any]) -> None:
    state = _State(spec)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(state), "127.0.0.1", spec.get("port", 0), backlog=2048
    )
    port = server.sockets[0].getsockname()[1]
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop, stop)
    print(f"remote listening on http://127.0.0.1:{port}", flush=True)
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))
