"""The bridge's HTTP endpoints: ``POST /v1/traces`` (OTLP/HTTP), ``GET /health``, ``GET /stats``.

Everything up to a whole body runs on the server's event loop: routing, authentication, refusals
and reading. Inflating, decoding and queueing a body run on one of the decoding threads, which
also encode the answer; ``/health`` and ``/stats`` are answered on the loop at once.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Final, Protocol

from opentelemetry.sdk.trace import ReadableSpan

from otel_bucket.bridge._body import (
    BodyError,
    Buffers,
    Busy,
    TooLarge,
    UnsupportedEncoding,
    content_coding,
    inflate,
)
from otel_bucket.bridge._connections import HTTPServer, Incoming
from otel_bucket.bridge._decode import (
    JSON,
    PROTOBUF,
    BadRequest,
    Decoded,
    Limits,
    TooMany,
    decode_request,
)
from otel_bucket.bridge._http import Request, Response
from otel_bucket.bridge._reply import CONTENT_TYPES, encode, export_response, status

__all__ = ["TRACES_PATH", "BridgeHTTPServer", "Fed"]

_log = logging.getLogger("otel_bucket.bridge")

TRACES_PATH: Final = "/v1/traces"
_MEDIA: Final = {
    "application/x-protobuf": PROTOBUF,
    "application/protobuf": PROTOBUF,
    "application/json": JSON,
}
_BUFFERED_BODIES: Final = 4  # bodies of max_body bytes held at once, across connections


class Fed(Protocol):
    """What the server needs of the bridge it feeds (``_bridge.Bridge``): its settings, and where
    decoded spans go. The server takes it as this interface and never imports the bridge."""

    host: str
    port: int
    threads: int
    request_timeout: float
    max_body: int
    limits: Limits
    listen_key: str | None
    retry_after: int

    def busy(self) -> tuple[int, str] | None: ...
    def rejected(self, spans: Sequence[ReadableSpan]) -> tuple[int, str]: ...
    def offer(self, decoded: Decoded, *, rejected: int) -> bool: ...
    def count_refusal(self, status: int) -> None: ...
    def stats(self) -> dict[str, Any]: ...


class BridgeHTTPServer(HTTPServer):
    """The server, knowing the bridge it feeds (as ``Fed``)."""

    def __init__(self, bridge: Fed, *, max_connections: int) -> None:
        super().__init__(
            bridge.host,
            bridge.port,
            threads=bridge.threads,
            max_connections=max_connections,
            request_timeout=bridge.request_timeout,
        )
        self.bridge = bridge
        self._buffers = Buffers(_BUFFERED_BODIES * bridge.max_body)

    async def handle(self, incoming: Incoming) -> Response:
        method = incoming.request.method
        if method == "POST":
            started = time.perf_counter()
            response, summary = await self._export(incoming)
            _log.debug(
                "bridge: %s POST %s %s in %.1f ms",
                incoming.client,
                incoming.request.path[:200],
                summary,
                (time.perf_counter() - started) * 1000,
            )
            return response
        keep = await incoming.discard_body(self.bridge.max_body)
        response = (
            self._get(incoming.request)
            if method == "GET"
            else _json(
                405, {"error": f"use GET or POST, not {method[:16]}"}, {"Allow": "GET, POST"}
            )
        )
        _log.debug("bridge: %s %s %s", incoming.client, method[:16], incoming.request.path[:200])
        return response if keep else response.closing()

    # -- POST /v1/traces ----------------------------------------------------------------------

    async def _export(self, incoming: Incoming) -> tuple[Response, str]:
        """Serve one export request; return the answer and what the log line says about it."""
        bridge, request = self.bridge, incoming.request
        if request.path != TRACES_PATH:
            return await self._refuse(
                incoming, 404, PROTOBUF, f"no such endpoint: POST {TRACES_PATH}"
            )
        if not self._authorized(request):
            return await self._refuse(incoming, 401, PROTOBUF, "missing or wrong bearer token")
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        encoding = _MEDIA.get(media)
        if encoding is None:
            message = f"Content-Type {media[:64]!r} is not application/x-protobuf or JSON"
            return await self._refuse(incoming, 415, PROTOBUF, message)
        busy = bridge.busy()
        if busy is not None:
            return await self._refuse(incoming, 503, encoding, busy[1], retry_after=busy[0])
        try:
            wbits = content_coding(request.headers)
        except UnsupportedEncoding as exc:
            return await self._refuse(incoming, 415, encoding, str(exc))
        try:
            raw = await incoming.read_body(bridge.max_body, self._buffers)
        except Busy as exc:
            return self._fail(503, encoding, str(exc), retry_after=bridge.retry_after, close=True)
        except TooLarge as exc:
            return self._fail(413, encoding, str(exc), close=exc.close)
        except BodyError as exc:
            return self._fail(400, encoding, str(exc), close=exc.close)
        try:
            return await self.in_thread(functools.partial(self._receive, raw, wbits, encoding))
        finally:
            self._buffers.give(len(raw))

    def _receive(self, raw: bytes, wbits: int | None, encoding: str) -> tuple[Response, str]:
        """On a decoding thread: inflate, decode and queue a body read whole."""
        bridge = self.bridge
        try:
            body = inflate(raw, wbits, bridge.max_body)
            decoded = decode_request(body, encoding, bridge.limits)
        except (TooLarge, TooMany) as exc:
            return self._fail(413, encoding, str(exc))
        except (BodyError, BadRequest) as exc:  # the body was read whole: the connection is fine
            return self._fail(400, encoding, str(exc))
        rejected, reason = bridge.rejected(decoded.spans)
        if not bridge.offer(decoded, rejected=rejected):
            retry_after, message = bridge.busy() or (bridge.retry_after, "the bridge is full")
            return self._fail(503, encoding, message, retry_after=retry_after)
        answer = encode(export_response(rejected, reason), encoding)
        summary = (
            f"200 {encoding} {len(body)} B: {decoded.received} span(s), "
            f"{len(decoded.spans)} for Bucket, {rejected} rejected"
        )
        return Response(200, CONTENT_TYPES[encoding], answer), summary

    def _authorized(self, request: Request) -> bool:
        expected = self.bridge.listen_key
        if expected is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
        return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))

    async def _refuse(
        self,
        incoming: Incoming,
        code: int,
        encoding: str,
        message: str,
        *,
        retry_after: int | None = None,
    ) -> tuple[Response, str]:
        """Answer before the body was read: read and drop it first, so the client sees the
        answer rather than a reset connection."""
        keep = await incoming.discard_body(self.bridge.max_body)
        return self._fail(code, encoding, message, retry_after=retry_after, close=not keep)

    def _fail(
        self,
        code: int,
        encoding: str,
        message: str,
        *,
        retry_after: int | None = None,
        close: bool = False,
    ) -> tuple[Response, str]:
        self.bridge.count_refusal(code)
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="otel-bucket-bridge"'
        body = encode(status(code, message), encoding)
        return Response(code, CONTENT_TYPES[encoding], body, headers, close), f"{code}: {message}"

    # -- GET /health, GET /stats --------------------------------------------------------------

    def _get(self, request: Request) -> Response:
        bridge = self.bridge
        if request.path == TRACES_PATH:
            return _json(405, {"error": f"use POST {TRACES_PATH}"}, {"Allow": "POST"})
        if request.path == "/health":
            busy = bridge.busy()
            if busy is None:
                return _json(200, {"status": "ok"})
            answer = {"status": "unavailable", "reason": busy[1]}
            return _json(503, answer, {"Retry-After": str(busy[0])})
        if request.path == "/stats":
            if self._authorized(request):
                return _json(200, bridge.stats())
            return _json(401, {"error": "missing or wrong bearer token"})
        return _json(404, {"error": "no such endpoint: see /health, /stats, POST /v1/traces"})


def _json(code: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, sort_keys=True).encode("utf-8")
    return Response(code, "application/json", body, headers or {})
