"""One HTTP attempt: POST a body, get a small, bounded ``Answer`` back, never an exception.

The default path keeps one persistent urllib3 connection per sender thread (urllib3 makes the
connection and verifies TLS; ``_wire`` writes the request and reads the answer on its socket by
hand, a fraction of what ``http.client`` costs, itself a third of a ``requests`` call) and puts
every attempt under the watchdog's wall-clock deadline. A proxy, urllib3 1.x, or a session the user
passed in go through ``requests`` instead.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from otel_bucket.delivery._watchdog import cut, watchdog
from otel_bucket.delivery._wire import exchange, request_head
from otel_bucket.ground._fork import after_fork_in_child
from otel_bucket.ground._redact import redact

__all__ = [
    "Answer",
    "NoTransport",
    "SessionTransport",
    "Transport",
    "make_transport",
    "new_session",
]

_log = logging.getLogger(__name__)

BODY_LIMIT = 1024  # bytes of an answer's body we read at most; the rest is never read
_IDLE_CHECK = 1.0  # seconds idle after which a kept-alive connection is checked before use

_URLLIB3_2 = version("urllib3").startswith("2.")  # 1.x builds TLS connections differently


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status, or why there was none."""

    status: int | None
    retry_after: str | None = None
    location: str | None = None
    body: str = ""  # the first ``BODY_LIMIT`` bytes of a non-2xx answer
    error: str = ""  # why there was no answer: "connection refused", "TLS error: ...", ...
    unreachable: bool = False  # no answer because no connection could be made, or in time
    timed_out: bool = False  # no answer in time (a sign of an overloaded endpoint)


class Transport(Protocol):
    """Posts one call; ``seconds`` is the wall-clock budget of the whole attempt."""

    def post(self, method: str, body: bytes, seconds: float) -> Answer: ...

    def cut(self) -> None:
        """End every attempt in flight now (the process is ending)."""

    def close(self) -> None: ...


def _ca_bundle() -> str | None:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def new_session(endpoint: str, pool_size: int) -> requests.Session:
    """A session for one endpoint: ``pool_size`` pooled connections, no urllib3 retries (ours
    are above it), and the environment's proxy and CA settings read once."""
    session = requests.Session()
    # requests re-reads proxies, CA bundle and ~/.netrc from the environment on every request;
    # read what applies to our one endpoint once instead.
    session.proxies.update(requests.utils.get_environ_proxies(endpoint))
    bundle = _ca_bundle()
    if bundle:
        session.verify = bundle
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def make_transport(
    endpoint: str, tracking_key: str, headers: dict[str, str], pool_size: int
) -> Transport:
    """The fastest transport that keeps every promise for this endpoint and environment."""
    proxied = bool(requests.utils.get_environ_proxies(endpoint))
    if proxied or not _URLLIB3_2:
        return SessionTransport(
            new_session(endpoint, pool_size), endpoint, tracking_key, headers, own=True
        )
    return DirectTransport(endpoint, tracking_key, headers)


_HICCUPS = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)
_TIMEOUTS = (socket.timeout, TimeoutError, requests.exceptions.Timeout)


def failed(exc: BaseException, key: str, expired: bool = False) -> Answer:
    """The answer of an attempt that raised: why, and whether the endpoint looks unreachable
    (a connection closed or reset mid-way is a hiccup of a reachable server)."""
    chain = _chain(exc)
    hiccup = any(isinstance(err, _HICCUPS) for err in chain)
    timed_out = expired or any(isinstance(err, _TIMEOUTS) for err in chain)
    return Answer(
        None,
        error=cause(exc, key, expired),
        unreachable=expired or not hiccup,
        timed_out=timed_out,
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: causes, contexts, and the errors requests and urllib3 carry
    in ``reason`` or ``args``."""
    out: list[BaseException] = []
    todo = [exc]
    while todo and len(out) < 12:
        err = todo.pop(0)
        if err in out:
            continue
        out.append(err)
        inner = [getattr(err, "reason", None), err.__cause__, err.__context__, *err.args]
        todo.extend(e for e in inner if isinstance(e, BaseException))
    return out


def cause(exc: BaseException, key: str, expired: bool = False) -> str:
    """A short, key-free reason for an attempt that got no HTTP answer."""
    if expired:
        return "no answer before the deadline"
    chain = _chain(exc)
    for err in chain:
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, ssl.SSLError | requests.exceptions.SSLError):
            return redact(f"TLS error: {getattr(err, 'reason', None) or err}", key)
        if isinstance(err, socket.timeout | TimeoutError | requests.exceptions.Timeout):
            return "timeout"
        if isinstance(err, socket.gaierror):
            return redact(f"name resolution failed: {err}", key)
    for err in chain:
        if isinstance(err, _HICCUPS):
            return "connection closed by the server without an answer"
        if isinstance(err, http.client.HTTPException):
            return redact(f"malformed answer ({type(err).__name__})", key)
    return redact(f"{type(exc).__name__}: {exc}", key)


class DirectTransport:
    """One persistent urllib3 connection per sender thread, each attempt under the watchdog;
    the request and the answer go through ``_wire``."""

    def __init__(self, endpoint: str, tracking_key: str, headers: dict[str, str]) -> None:
        parts = urlsplit(endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        prefix = f"{parts.path.rstrip('/')}/{tracking_key}/"
        host = f"[{self._host}]" if ":" in self._host else self._host
        if self._port is not None and self._port != (443 if self._https else 80):
            host = f"{host}:{self._port}"
        self._heads = {
            m: request_head(prefix + m, host, headers) for m in ("user", "company", "event")
        }
        self._key = tracking_key
        self._headers = headers
        self._bundle = _ca_bundle()
        self._local = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        after_fork_in_child(self, DirectTransport._after_fork)

    def _after_fork(self) -> None:
        # The parent's sockets are the parent's: the child opens its own.
        self._local = threading.local()
        self._connections = weakref.WeakSet()
        self._lock = threading.Lock()

    def _connection(self, seconds: float) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                bundle = self._bundle
                is_dir = bundle is not None and os.path.isdir(bundle)
                conn = urllib3.connection.HTTPSConnection(
                    self._host,
                    self._port,
                    timeout=seconds,
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=None if is_dir else (bundle or requests.utils.DEFAULT_CA_BUNDLE_PATH),
                    ca_cert_dir=bundle if is_dir else None,
                )
            else:
                conn = urllib3.connection.HTTPConnection(self._host, self._port, timeout=seconds)
            self._local.conn = conn
            with self._lock:
                self._connections.add(conn)
        return conn

    def post(self, method: str, body: bytes, seconds: float) -> Answer:
        deadline = time.monotonic() + seconds
        conn = self._connection(seconds)
        watchdog.arm(deadline, conn)
        try:
            return self._attempt(conn, method, body, seconds, deadline)
        except Exception as exc:  # OSError, HTTPException, whatever the socket raised
            conn.close()
            return failed(exc, self._key, time.monotonic() >= deadline)
        finally:
            watchdog.disarm()

    def _attempt(
        self, conn: Any, method: str, body: bytes, seconds: float, deadline: float
    ) -> Answer:
        conn.timeout = seconds
        sock = conn.sock
        reused = sock is not None
        if reused:
            # Closed by the server while idle? Only worth a look after a pause: no server closes
            # a keep-alive connection within a second of an answer (and a request that finds it
            # closed anyway is sent once more on a fresh one, below).
            idle = time.monotonic() - getattr(conn, "otel_bucket_used", 0.0) > _IDLE_CHECK
            if idle and urllib3.util.wait_for_read(sock, timeout=0.0):
                conn.close()
                reused = False
            else:
                sock.settimeout(seconds)
        head = self._heads[method]
        try:
            reply = exchange(self._socket(conn), head, body, BODY_LIMIT)
        except (ConnectionError, http.client.RemoteDisconnected):
            if not reused or time.monotonic() >= deadline:
                raise
            # A kept-alive connection the server had just closed: once more on a fresh one.
            conn.close()
            conn.timeout = max(deadline - time.monotonic(), 0.001)
            reply = exchange(self._socket(conn), head, body, BODY_LIMIT)
        conn.otel_bucket_used = time.monotonic()
        if not reply.reusable:  # more than we read, or the server ends it: never read on
            conn.close()
        if 200 <= reply.status < 300:
            return Answer(reply.status)
        return Answer(
            reply.status,
            retry_after=reply.retry_after,
            location=reply.location,
            body=reply.body.decode("utf-8", "replace"),
        )

    @staticmethod
    def _socket(conn: Any) -> socket.socket:
        """The connection's socket, connecting (and verifying TLS) first if it has none."""
        if conn.sock is None:
            conn.connect()
        sock: socket.socket = conn.sock
        return sock

    def cut(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            cut(conn)

    def close(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close()


class SessionTransport:
    """Through a ``requests.Session``: the user's own, or ours when a proxy applies."""

    def __init__(
        self,
        session: requests.Session,
        endpoint: str,
        tracking_key: str,
        headers: dict[str, str],
        *,
        own: bool,
    ) -> None:
        self.session = session
        self._base = f"{endpoint}/{tracking_key}/"
        self._key = tracking_key
        self._headers = headers
        self._own = own

    def post(self, method: str, body: bytes, seconds: float) -> Answer:
        try:
            response = self.session.post(
                self._base + method,
                data=body,
                headers=self._headers,
                timeout=(seconds, seconds),
                allow_redirects=False,
                stream=True,
            )
        except Exception as exc:
            return failed(exc, self._key)
        status = response.status_code
        raw = response.raw
        try:
            data = raw.read(BODY_LIMIT)
        except Exception:  # the answer broke off; the status is what counts
            data = b""
        if getattr(raw, "length_remaining", None) == 0:
            raw.release_conn()  # read to the end: the connection can serve the next call
        else:
            response.close()  # more than we read, or unknown: never read on
        if 200 <= status < 300:
            return Answer(status)
        return Answer(
            status,
            retry_after=response.headers.get("Retry-After"),
            location=response.headers.get("Location"),
            body=data.decode("utf-8", "replace"),
        )

    def cut(self) -> None:
        pass  # requests hides its sockets: attempts end at their own deadline

    def close(self) -> None:
        if self._own:
            self.session.close()


class NoTransport:
    """For an exporter that must send nothing (its endpoint is malformed)."""

    def post(self, method: str, body: bytes, seconds: float) -> Answer:
        return Answer(None, error="no valid endpoint", unreachable=True)

    def cut(self) -> None:
        pass

    def close(self) -> None:
        pass
