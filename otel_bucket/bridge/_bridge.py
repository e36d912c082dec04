"""``Bridge``: the OTLP/HTTP receiver, its span queue and export worker, and the exporter."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan

from otel_bucket.bridge._decode import Decoded, Limits
from otel_bucket.bridge._queue import HIGH_WATER, ExportWorker, SpanQueue
from otel_bucket.bridge._server import BridgeHTTPServer
from otel_bucket.export._exporter import BucketSpanExporter
from otel_bucket.export._mapping import plan_calls
from otel_bucket.ground._conventions import BUCKET_EVENT, ENDUSER_ID, USER_ID

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_MAX_SPANS", "DEFAULT_PORT", "Bridge", "BridgeError"]

DEFAULT_PORT: Final = 4318  # OTLP/HTTP's port
DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024
DEFAULT_MAX_SPANS: Final = 16_384
# Retry-After (s) of every 503. The Python and Node OTLP exporters give an export 10 s in all by
# default and stop retrying when the next wait would pass that: Retry-After 2 lets them try at
# 0, 2, 4, 6 and 8 s (the most of the 10 s any value covers), where 10 gave up at once.
RETRY_AFTER: Final = 2


def _may_lack_a_user(attributes: Mapping[str, object]) -> bool:
    """An event span whose user id is not plainly valid (a non-blank string or an integer,
    which the mapping always takes): the only spans whose event the mapping may drop."""
    if BUCKET_EVENT not in attributes:
        return False
    for key in (ENDUSER_ID, USER_ID):
        value = attributes.get(key)
        if isinstance(value, str) and value.strip():
            return False
        if isinstance(value, int) and not isinstance(value, bool):
            return False
    return True


class BridgeError(Exception):
    """The bridge cannot start (an address it cannot bind); the message is one line."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def _seconds(name: str, value: object, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not minimum <= value < float("inf"):
        op = ">=" if minimum == 0 else ">"
        raise ValueError(f"{name} must be a finite number {op} 0, got {value!r}")
    return float(value)


def _listen_key(value: object) -> str | None:
    if value is None:
        value = os.environ.get("BUCKET_BRIDGE_TOKEN") or None
        if value is None:
            return None
    if not isinstance(value, str):
        raise TypeError(f"listen_key must be a string, got {type(value).__name__}")
    if not value or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("listen_key must be a non-empty token without spaces")
    return value


class Bridge:
    """An OTLP/HTTP traces receiver that turns spans into Bucket calls with ``exporter``.

    Args:
        exporter: maps and delivers the spans; built from the ``BUCKET_*`` environment when
            not given. The bridge shuts it down when it stops.
        host: the address to bind; loopback by default.
        port: the port to bind (4318, OTLP/HTTP's); 0 picks a free one (see `url`).
        listen_key: when set (else ``BUCKET_BRIDGE_TOKEN``), requests must carry
            ``Authorization: Bearer <listen_key>`` (``/health`` excepted).
        max_body: the largest body accepted, after decompression (413 above it).
        max_spans: the most spans one request may hold (413 above it); a request may also keep
            at most 16 attribute values per span of it for Bucket.
        queue_size: spans held between the HTTP handlers and the exporter (503 when full).
        threads: threads decoding request bodies; connections cost none.
        max_connections: connections open at once; a new one beyond it closes the oldest idle.
        request_timeout: seconds a request may take to arrive, head and body (408 after it).
        drain_timeout: seconds `stop` may spend exporting what is queued.
        backlog_limit: calls the exporter holds in memory at most (default: its
            ``memory_limit``). With no spool, or a full one, requests are refused from 90 % of
            it on, so an outage never pushes calls out of memory into nothing; with a spool
            that has room they are accepted, and memory's oldest calls spill to the spool.
    """

    def __init__(
        self,
        exporter: BucketSpanExporter | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        listen_key: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_spans: int = DEFAULT_MAX_SPANS,
        queue_size: int = 16_384,
        threads: int = 2,
        max_connections: int = 1024,
        request_timeout: float = 30.0,
        drain_timeout: float = 20.0,
        backlog_limit: int | None = None,
    ) -> None:
        if exporter is not None and not isinstance(exporter, BucketSpanExporter):
            raise TypeError(f"exporter must be a BucketSpanExporter, got {type(exporter).__name__}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
        self.drain_timeout = _seconds("drain_timeout", drain_timeout, minimum=0.0)
        self.request_timeout = _seconds("request_timeout", request_timeout, minimum=0.001)
        self.host = host
        self.port = port
        self.listen_key = _listen_key(listen_key)
        self.max_body = _positive_int("max_body", max_body)
        self.limits = Limits(_positive_int("max_spans", max_spans))
        self.threads = _positive_int("threads", threads)
        self.max_connections = _positive_int("max_connections", max_connections)
        self.retry_after = RETRY_AFTER
        if backlog_limit is not None:
            _positive_int("backlog_limit", backlog_limit)
        self._queue = SpanQueue(_positive_int("queue_size", queue_size))
        self.exporter = exporter if exporter is not None else BucketSpanExporter()
        self._backlog_limit = backlog_limit or self.exporter.memory_limit
        self._worker = ExportWorker(self.exporter, self._queue, backlog_limit=self._backlog_limit)
        self._server: BridgeHTTPServer | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(
            ("requests", "received_spans", "queued_spans", "rejected_spans"), 0
        )
        self._refusals: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Bridge(host={self.host!r}, port={self.port!r}, exporter={self.exporter!r})"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:4318`` (OTLP clients add ``/v1/traces``)."""
        if self._server is None:
            raise RuntimeError("the bridge is not started")
        return self._server.url

    def start(self) -> Bridge:
        """Bind and serve in background threads.

        Raises:
            BridgeError: the address cannot be bound; the message is one readable line.
        """
        with self._lock:
            if self._server is not None:
                return self
            server = BridgeHTTPServer(self, max_connections=self.max_connections)
            try:
                server.start()
            except (OSError, OverflowError, ValueError) as exc:
                server.stop(0)
                reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
                raise BridgeError(
                    f"cannot listen on {self.host}:{self.port}: {reason.lower()}"
                ) from None
            self._server = server
            self._worker.start()
            return self

    def stop(self) -> None:
        """Stop accepting, answer the requests already read, export what is queued (within
        ``drain_timeout``), then shut the exporter down. Safe to call twice."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            server = self._server
        if server is not None:
            server.stop(timeout=5.0)
        self._worker.stop(self.drain_timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until `stop` has been called; True when it has."""
        return self._stopped.wait(timeout)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every span accepted so far was handed to the exporter and the calls it
        holds were sent (within the exporter's ``timeout`` at most); False when calls still
        wait (a retry, a slow or down Bucket)."""
        deadline = time.monotonic() + timeout
        if not self._queue.join(timeout):
            return False
        left = max(deadline - time.monotonic(), 0.0)
        return self.exporter.force_flush(int(left * 1000))

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the HTTP handlers ------------------------------------------------------------

    def busy(self) -> tuple[int, str] | None:
        """Why new data is refused now, with a Retry-After in seconds; None when accepted."""
        if self._stopped.is_set() or (self._server is not None and self._server.closing):
            return RETRY_AFTER, "the bridge is shutting down"
        in_memory = self.exporter.memory_pending
        full = self._worker.stalled or in_memory >= self._backlog_limit * HIGH_WATER
        if full and not self.exporter.spool_has_room():
            return RETRY_AFTER, (
                f"{in_memory} call(s) wait in memory for delivery to Bucket and there is no "
                "spool with room for more; retry later"
            )
        if not self._queue.has_room(1):
            return RETRY_AFTER, f"the bridge's queue is full ({self._queue.capacity} spans)"
        return None

    def rejected(self, spans: Sequence[ReadableSpan]) -> tuple[int, str]:
        """How many spans cannot become what they ask for, and why (OTLP partial success):
        events without a user, found by the exporter's own mapping."""
        # Only spans that might lack a user are mapped (again) here; which of them really do is
        # the mapping's own decision.
        doubtful = [span for span in spans if _may_lack_a_user(span.attributes or {})]
        if not doubtful:
            return 0, ""
        plan = plan_calls(doubtful)
        count = plan.dropped_events + plan.skipped_spans
        if not count:
            return 0, ""
        return count, (
            f"{count} span(s) carry bucket.event without enduser.id or user.id: the Bucket "
            "Tracking API needs a user for every event, so these events are dropped"
        )

    def offer(self, decoded: Decoded, *, rejected: int) -> bool:
        """Queue a request's spans whole; False when they do not fit (answer 503)."""
        if not self._queue.offer(decoded.spans, decoded.values):
            return False
        with self._lock:
            self._counts["requests"] += 1
            self._counts["received_spans"] += decoded.received
            self._counts["queued_spans"] += len(decoded.spans)
            self._counts["rejected_spans"] += rejected
        return True

    def count_refusal(self, status: int) -> None:
        """Count a request answered with an error ``status``."""
        with self._lock:
            self._refusals[str(status)] = self._refusals.get(str(status), 0) + 1

    def stats(self) -> dict[str, Any]:
        """Counters as JSON-ready data (never the tracking key)."""
        with self._lock:
            counts = dict(self._counts)
            refusals = dict(self._refusals)
        busy = self.busy()
        server = self._server
        return {
            "accepting": busy is None,
            "reason": None if busy is None else busy[1],
            "endpoint": self.exporter.settings.endpoint,
            "queue": {"depth": self._queue.depth, "capacity": self._queue.capacity},
            "memory_pending": self.exporter.memory_pending,
            "spool_has_room": self.exporter.spool_has_room(),
            "connections": 0 if server is None else server.open_connections,
            **counts,
            "refused": refusals,
            "worker": self._worker.counts,
            "exporter": dataclasses.asdict(self.exporter.stats),
        }
