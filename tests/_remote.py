"""A "remote-like" Bucket endpoint in its own process: real latency, scripted failures, records.

``RemoteServer`` starts ``tests._remote_server`` (an asyncio HTTP/1.1 server on 127.0.0.1) as a
child process and stops it by PID with bounded waits. It speaks the Tracking API's paths
(``POST {url}/{key}/{user|company|event}``), answers each call after ``latency`` seconds (a fixed
number, or ``(low, high)`` drawn uniformly per request) and by the first matching ``Rule``
(otherwise 200), and records every call it took::

    with RemoteServer(latency=(0.05, 0.2), rules=[Rule(503, method="user")]) as remote:
        install(tracer_provider=provider, tracking_key="k", endpoint=remote.url)
        ...
        remote.wait_for(delivered=240, method="event", timeout=30)
        calls = remote.calls()
        assert all(n == 1 for n in copies(calls, "seq").values())

Times (``received``, ``answered``) are ``time.monotonic()`` of the server process: on Linux the
same clock as the test's own ``time.monotonic()``.
"""

from __future__ import annotations

import bisect
import http.client
import json
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tests._running import Running, python

API_METHODS = ("user", "company", "event")

Latency = float | tuple[float, float]


@dataclass(frozen=True)
class Rule:
    """How to answer the calls it matches (the first matching rule of the script wins).

    A call matches when all the given conditions hold: its API ``method``; the server's time since
    the script started in ``[after, until)``; among the first ``first`` calls that reached this
    rule; its id (``id_of``) among the first ``first_ids`` distinct ids this rule saw (so a retry
    of the same user keeps failing: "503 forever for the first N users"); and a random draw below
    ``probability``.
    """

    status: int = 503
    method: str | None = None
    probability: float = 1.0
    first: int | None = None
    first_ids: int | None = None
    after: float = 0.0
    until: float | None = None
    retry_after: str | None = None  # the Retry-After header to send, e.g. "2"
    latency: Latency | None = None  # instead of the server's latency
    body: str | None = None  # the answer's body, instead of {"success":true}
    hang_up: bool = False  # close the connection instead of answering (recorded status None)
    above: int | None = None  # only while more calls than this are in flight (a capacity)
    id_prefix: str | None = None  # only for calls about ids that start with it

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        latency = data.get("latency")
        return cls(**{**data, "latency": tuple(latency) if isinstance(latency, list) else latency})


def id_of(method: str, body: Any) -> str:
    """The id a call is about: ``companyId`` for company calls, else ``userId``; "" if none."""
    if not isinstance(body, dict):
        return ""
    if method == "event" and not isinstance(body.get("event"), str):
        return ""
    value = body.get("companyId" if method == "company" else "userId")
    return "" if value is None or value == "" else str(value)


@dataclass(frozen=True)
class RemoteCall:
    """One call the server took."""

    method: str  # user, company, event (or the unknown last path segment it answered 404 to)
    key: str
    path: str
    body: str
    received: float  # the request was read whole
    answered: float  # the answer was written (or the connection closed by a hang_up rule)
    status: int | None  # None: hung up on purpose
    client_left: bool  # the client had closed the connection before the answer was due
    connection: int  # which connection (numbered from 1 in order of opening)
    in_flight: int  # calls in flight at the server when this one arrived, itself included

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        """Answered 2xx: the endpoint took the call, even if the client left before reading the
        answer (as a real API would have stored it)."""
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class RemoteStats:
    """The server's counters (since the last ``reset``) and its own CPU time."""

    requests: int
    in_flight: int
    max_in_flight: int
    connections: int
    max_connections: int
    opened: int  # connections opened since the server started
    delivered: dict[str, int]  # 2xx answers per API method
    cpu: float  # the server process's CPU seconds since it started


class RemoteServer:
    """The remote-like endpoint as a context manager (see the module docstring)."""

    def __init__(
        self, latency: Latency = 0.0, rules: Sequence[Rule] = (), *, seed: int = 0, port: int = 0
    ) -> None:
        self._spec = {**_script(latency, rules, seed), "port": port}
        self._process: Running | None = None
        self.url = ""

    def __enter__(self) -> RemoteServer:
        self._process = Running(python("-m", "tests._remote_server", json.dumps(self._spec)))
        try:
            self.url = self._process.expect(r"remote listening on (\S+)", timeout=30)[1]
        except BaseException:
            self._process.kill()
            raise
        self._port = int(self.url.rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.proc.pid

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, wait at most ``timeout``, then SIGKILL."""
        if self._process is None:
            return
        try:
            self._process.terminate(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def _request(self, verb: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=timeout + 5)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(verb, path, body=data)
            response = conn.getresponse()
            text = response.read()
            if response.status != 200:
                raise RuntimeError(f"{verb} {path}: {response.status} {text!r}")
            return json.loads(text)
        finally:
            conn.close()

    def calls(self, since: int = 0) -> list[RemoteCall]:
        """The calls answered since the last ``reset`` (from the ``since``-th on), in order of
        answer."""
        rows = self._request("GET", f"/_calls?since={since}", timeout=60)["calls"]
        return [RemoteCall(*row) for row in rows]

    def stats(self) -> RemoteStats:
        return RemoteStats(**self._request("GET", "/_stats"))

    def wait_for(
        self,
        delivered: int = 0,
        method: str | None = None,
        *,
        in_flight: int = 0,
        timeout: float = 10,
    ) -> RemoteStats:
        """Wait (the server answers when it happens, or at ``timeout``) until ``delivered`` 2xx
        answers of ``method`` (any, if None) and ``in_flight`` calls in flight at once."""
        query = f"delivered={delivered}&in_flight={in_flight}&timeout={timeout}"
        if method is not None:
            query += f"&method={method}"
        return RemoteStats(**self._request("GET", f"/_wait?{query}", timeout=timeout))

    def release(self) -> RemoteStats:
        """Answer every call in flight now (their latency cut short)."""
        return RemoteStats(**self._request("POST", "/_release"))

    def reset(self) -> None:
        """Forget the records and the maxima (calls in flight still finish and are recorded)."""
        self._request("POST", "/_reset")

    def script(self, latency: Latency = 0.0, rules: Sequence[Rule] = (), seed: int = 0) -> None:
        """Replace the latency and the rules (their counters and clock start again)."""
        self._request("POST", "/_script", _script(latency, rules, seed))


def _script(latency: Latency, rules: Sequence[Rule], seed: int) -> dict[str, Any]:
    return {"latency": latency, "rules": [asdict(rule) for rule in rules], "seed": seed}


# -- reading the records ----------------------------------------------------------------------


def copies(calls: Iterable[RemoteCall], attribute: str) -> Counter[Any]:
    """How many times each value of the event attribute ``attribute`` was delivered (``ok``):
    exactly once is every count being 1."""
    return Counter(
        call.json.get("attributes", {}).get(attribute)
        for call in calls
        if call.method == "event" and call.ok
    )


def in_flight_timeline(calls: Iterable[RemoteCall]) -> list[tuple[float, int]]:
    """``(time, calls in flight from then on)`` at every arrival and answer, in time order."""
    edges = sorted(
        [(c.received, 1) for c in calls] + [(c.answered, -1) for c in calls],
        key=lambda edge: (edge[0], edge[1]),  # an answer before an arrival at the same instant
    )
    timeline, level = [], 0
    for when, step in edges:
        level += step
        timeline.append((when, level))
    return timeline


def max_in_flight(calls: Iterable[RemoteCall], start: float = 0.0, end: float = 1e300) -> int:
    """The most calls in flight at once between ``start`` and ``end`` (server clock)."""
    timeline = in_flight_timeline(calls)
    times = [when for when, _ in timeline]
    first = max(bisect.bisect_right(times, start) - 1, 0)
    return max((level for when, level in timeline[first:] if when <= end), default=0)


def events_before_their_user(calls: Sequence[RemoteCall]) -> list[RemoteCall]:
    """Delivered events whose user had no delivered user call answered before the event
    arrived (the exporter sends an event after the user call of that event)."""
    first_user: dict[str, float] = {}
    for call in calls:
        if call.method == "user" and call.ok:
            user = id_of("user", call.json)
            first_user[user] = min(first_user.get(user, call.answered), call.answered)
    return [
        call
        for call in calls
        if call.method == "event"
        and call.ok
        and first_user.get(id_of("event", call.json), float("inf")) > call.received
    ]
