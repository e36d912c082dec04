"""A small scriptable HTTP server on 127.0.0.1 that records every request it gets."""

from __future__ import annotations

import json
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What the server answers to one request."""

    status: int = 200
    body: str = '{"success": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (waits on an event: `release()` ends it)
    drop: bool = False  # close the connection without answering


@dataclass(frozen=True)
class Captured:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    reply_status: int | None

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def api_method(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        return self.path.strip("/").split("/")[0]


class CaptureServer:
    """Records requests; answers from a script of `Reply`s, then with `default`."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Captured] = []
        self.default = Reply()
        self._script: deque[Reply] = deque()
        self._cond = threading.Condition()
        self._release = threading.Event()
        self._rule: Any = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                reply = server._next(self.path, raw)
                if reply.delay:
                    server._release.wait(reply.delay)
                status = None if reply.drop else reply.status
                server._record(Captured("POST", self.path, dict(self.headers.items()), raw, status))
                if reply.drop:
                    self.close_connection = True
                    return
                data = reply.body.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # as real servers: many clients may connect at once

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that give up (timeouts, shutdown) are part of the tests

        self._httpd = Server(("127.0.0.1", port), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def reset(self) -> None:
        """Forget the requests, the script and the route; answer 200 again."""
        with self._cond:
            self.requests.clear()
            self._script.clear()
            self._rule = None
            self.default = Reply()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order."""
        with self._cond:
            self._script.extend(replies)

    def route(self, rule: Any) -> None:
        """Answer with ``rule(path, body) -> Reply | None`` (None: use the script/default)."""
        self._rule = rule

    def _next(self, path: str, raw: bytes) -> Reply:
        if self._rule is not None:
            reply = self._rule(path, raw)
            if reply is not None:
                return reply
        with self._cond:
            return self._script.popleft() if self._script else self.default

    def _record(self, captured: Captured) -> None:
        with self._cond:
            self.requests.append(captured)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Captured]:
        """Wait (on a condition, not a sleep) until `count` requests have been recorded."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def calls(self, method: str | None = None) -> list[Any]:
        """JSON bodies of answered-with-2xx requests, optionally for one API method."""
        with self._cond:
            return [
                r.json
                for r in self.requests
                if r.reply_status is not None
                and 200 <= r.reply_status < 300
                and (method is None or r.api_method == method)
            ]

    def release(self) -> None:
        """End every delayed reply now."""
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
