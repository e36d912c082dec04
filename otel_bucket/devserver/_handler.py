"""HTTP plumbing of the devserver: a threading HTTP/1.1 server with keep-alive."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

from otel_bucket.devserver._app import TrackingApp
from otel_bucket.devserver._masking import mask_path, mask_text
from otel_bucket.devserver._routes import answer_get

__all__ = ["DevHTTPServer"]

logger = logging.getLogger(__name__)

_MAX_BODY: Final = 1024 * 1024  # far above any real call; bounds what one request may hold
_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self';"
    " base-uri 'none'; frame-ancestors 'none'"
)


class DevHTTPServer(ThreadingHTTPServer):
    """Serves one `TrackingApp`; remembers open connections so `close_connections` can end them."""

    daemon_threads = True
    # The default backlog of 5 resets connections when a hundred clients connect at once.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], app: TrackingApp) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections, so that no request thread outlives the server."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is normal; never print a traceback for it.
        logger.debug("devserver: error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connections
    disable_nagle_algorithm = True  # else a keep-alive client waits ~40 ms for each answer
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    server_version = "otel-bucket-devserver"
    server: DevHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            text = format % args
            path = getattr(self, "path", "")
            logger.debug("devserver: %s", mask_text(text, path) if path else text)

    def do_POST(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reply_json(411, {"success": False, "errors": ["send a Content-Length"]}, True)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            reason = f"Content-Length must be between 0 and {_MAX_BODY}"
            self._reply_json(413, {"success": False, "errors": [reason]}, True)
            return
        raw = self.rfile.read(length)
        try:
            answer = self.server.app.post(self.path, self.headers.get("Content-Type"), raw)
        except Exception as exc:  # e.g. the disk is full: say so, keep serving
            logger.exception("devserver: cannot handle POST %s", mask_path(self.path))
            self._reply_json(500, {"success": False, "errors": [f"devserver error: {exc}"]})
            return
        self._reply_json(answer.status, answer.body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            reply = answer_get(self.server.app, url.path, url.query, self.server.url)
        except Exception as exc:  # a page must fail alone, with an answer, never a dropped line
            logger.exception("devserver: cannot answer GET %s", mask_path(url.path))
            self._reply_json(500, {"success": False, "errors": [f"devserver error: {exc}"]})
            return
        self._reply(reply.status, reply.content_type, reply.body)

    def _reply_json(self, status: int, body: Any, close: bool = False) -> None:
        data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode(
            "utf-8", "backslashreplace"
        )
        self._reply(status, "application/json", data, close)

    def _reply(self, status: int, content_type: str, data: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if content_type.startswith("text/html"):
            # No script at all, nothing from elsewhere: even markup that slipped through could
            # not run or fetch anything.
            self.send_header("Content-Security-Policy", _POLICY)
            self.send_header("X-Content-Type-Options", "nosniff")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
