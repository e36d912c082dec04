"""The bridge's HTTP endpoints: ``POST /v1/traces`` (OTLP/HTTP), ``GET /health``, ``GET /stats``."""

from __future__ import annotations

import hmac
import json
import logging
import socketserver
import time
from typing import TYPE_CHECKING, Any, Final

from otel_bucket.bridge._body import (
    BodyError,
    TooLarge,
    UnsupportedEncoding,
    discard_body,
    read_body,
)
from otel_bucket.bridge._connections import ConnectionHandler, PooledHTTPServer
from otel_bucket.bridge._decode import JSON, PROTOBUF, BadRequest, decode_request
from otel_bucket.bridge._reply import CONTENT_TYPES, encode, export_response, status

if TYPE_CHECKING:
    from otel_bucket.bridge._bridge import Bridge

__all__ = ["TRACES_PATH", "BridgeHTTPServer"]

_log = logging.getLogger("otel_bucket.bridge")

TRACES_PATH: Final = "/v1/traces"
_MEDIA: Final = {
    "application/x-protobuf": PROTOBUF,
    "application/protobuf": PROTOBUF,
    "application/json": JSON,
}


class BridgeHTTPServer(PooledHTTPServer):
    """The pooled server, knowing the `Bridge` its handlers feed."""

    def __init__(self, address: tuple[str, int], bridge: Bridge, threads: int) -> None:
        self.bridge = bridge
        super().__init__(address, _Handler, threads=threads)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (a DNS query); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(ConnectionHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: OTLP clients reuse their connections
    disable_nagle_algorithm = True  # else a keep-alive client waits ~40 ms for each answer
    timeout = 10  # seconds a started request may stall on the socket
    server_version = "otel-bucket-bridge"
    server: BridgeHTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("bridge: %s %s", self.client_address[0], format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request is written by the handler itself, with more to say

    # -- POST /v1/traces ----------------------------------------------------------------------

    def do_POST(self) -> None:
        started = time.perf_counter()
        summary = self._export()
        _log.debug(
            "bridge: %s POST %s %s in %.1f ms",
            self.client_address[0],
            self.path[:200],
            summary,
            (time.perf_counter() - started) * 1000,
        )

    def _export(self) -> str:
        """Serve one export request; return what the log line says about it."""
        bridge = self.server.bridge
        if self.path.split("?", 1)[0] != TRACES_PATH:
            return self._refuse(404, PROTOBUF, f"no such endpoint: POST {TRACES_PATH}")
        if not self._authorized():
            return self._refuse(401, PROTOBUF, "missing or wrong bearer token")
        media = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        encoding = _MEDIA.get(media)
        if encoding is None:
            message = f"Content-Type {media[:64]!r} is not application/x-protobuf or JSON"
            return self._refuse(415, PROTOBUF, message)
        busy = bridge.busy()
        if busy is not None:
            return self._refuse(503, encoding, busy[1], retry_after=busy[0])
        try:
            body = read_body(self.rfile, self.headers, bridge.max_body)
        except UnsupportedEncoding as exc:
            return self._refuse(415, encoding, str(exc))
        except TooLarge as exc:
            return self._fail(413, encoding, str(exc), close=exc.close)
        except BodyError as exc:
            return self._fail(400, encoding, str(exc), close=exc.close)
        try:
            decoded = decode_request(body, encoding)
        except BadRequest as exc:
            return self._fail(400, encoding, str(exc))
        rejected, reason = bridge.rejected(decoded.spans)
        if not bridge.offer(decoded.spans, received=decoded.received, rejected=rejected):
            retry_after, message = bridge.busy() or (2, "the bridge's queue is full")
            return self._fail(503, encoding, message, retry_after=retry_after)
        self._send(200, encoding, encode(export_response(rejected, reason), encoding))
        return (
            f"200 {encoding} {len(body)} B: {decoded.received} span(s), "
            f"{len(decoded.spans)} for Bucket, {rejected} rejected"
        )

    def _authorized(self) -> bool:
        expected = self.server.bridge.listen_key
        if expected is None:
            return True
        scheme, _, token = self.headers.get("Authorization", "").strip().partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
        return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))

    def _refuse(
        self, code: int, encoding: str, message: str, *, retry_after: int | None = None
    ) -> str:
        """Answer before the body was read: read and drop it first, so the client sees the
        answer rather than a reset connection."""
        keep = discard_body(self.rfile, self.headers, self.server.bridge.max_body)
        return self._fail(code, encoding, message, retry_after=retry_after, close=not keep)

    def _fail(
        self,
        code: int,
        encoding: str,
        message: str,
        *,
        retry_after: int | None = None,
        close: bool = False,
    ) -> str:
        self.server.bridge.count_refusal(code)
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="otel-bucket-bridge"'
        self._send(code, encoding, encode(status(code, message), encoding), headers, close)
        return f"{code}: {message}"

    def _send(
        self,
        code: int,
        encoding: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self._send_bytes(code, CONTENT_TYPES[encoding], body, headers, close)

    def _send_bytes(
        self,
        code: int,
        content_type: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        close = close or self.server.closing
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    # -- GET /health, GET /stats --------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        bridge = self.server.bridge
        if not discard_body(self.rfile, self.headers, bridge.max_body):
            self.close_connection = True  # a GET with a body it could not skip
        if path == TRACES_PATH:
            self._json(405, {"error": f"use POST {TRACES_PATH}"}, {"Allow": "POST"})
        elif path == "/health":
            busy = bridge.busy()
            if busy is None:
                self._json(200, {"status": "ok"})
            else:
                answer = {"status": "unavailable", "reason": busy[1]}
                self._json(503, answer, {"Retry-After": str(busy[0])})
        elif path == "/stats":
            if self._authorized():
                self._json(200, bridge.stats())
            else:
                self._json(401, {"error": "missing or wrong bearer token"})
        else:
            self._json(404, {"error": "no such endpoint: see /health, /stats, POST /v1/traces"})
        _log.debug("bridge: %s GET %s", self.client_address[0], path[:200])

    def _json(self, code: int, payload: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, sort_keys=True).encode("utf-8")
        self._send_bytes(code, "application/json", body, headers)
