"""An HTTP/1.1 server with a fixed number of threads, whatever the number of connections.

``ThreadingHTTPServer`` gives every connection its own thread for as long as it stays open, and
OTLP clients keep their connections open between exports. Here one thread accepts, one waits
(with a selector) for any idle connection to send its next request, and a fixed set of threads
serves the connections that have one. An idle keep-alive connection costs a file descriptor,
not a thread; connections idle for longer than ``idle_timeout`` are closed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

__all__ = ["ConnectionHandler", "PooledHTTPServer"]

_log = logging.getLogger(__name__)


class ConnectionHandler(BaseHTTPRequestHandler):
    """A request handler that lives as long as its connection, served one request at a time
    by whichever pool thread is free."""

    server: PooledHTTPServer

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        # Unlike BaseRequestHandler, do not handle the connection here: the pool does.
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        self.idle_since = time.monotonic()

    def serve_ready(self) -> bool:
        """Serve requests while some are waiting; True when the connection stays open."""
        while True:
            self.close_connection = True
            self.handle_one_request()
            if self.close_connection or self.server.closing:
                return False
            if not self._buffered():
                self.idle_since = time.monotonic()
                return True

    def _buffered(self) -> bool:
        """Whether bytes of a next (pipelined) request are already here; never blocks."""
        sock = self.connection
        try:
            sock.setblocking(False)
            try:
                return bool(self.rfile.peek(1))  # type: ignore[attr-defined]
            finally:
                sock.settimeout(self.timeout)
        except (OSError, ValueError):
            return False


class PooledHTTPServer(HTTPServer):
    """Serves with ``threads`` pool threads plus an accepting and a waiting thread.

    Args:
        address: (host, port) to bind; port 0 picks a free one.
        handler: a `ConnectionHandler` subclass.
        threads: pool threads serving requests.
        max_connections: open connections beyond this are closed at once on accept.
        idle_timeout: seconds an idle keep-alive connection is kept.
    """

    request_queue_size = 128  # listen backlog: a burst of new connections must not wait a SYN retry

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[ConnectionHandler],
        *,
        threads: int,
        max_connections: int = 1024,
        idle_timeout: float = 60.0,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)
        self._handler_class = handler
        self.closing = False
        self._threads = threads
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._ready: queue.SimpleQueue[ConnectionHandler | None] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._to_park: deque[ConnectionHandler] = deque()
        self._lock = threading.Lock()
        self._open: set[ConnectionHandler] = set()
        self._workers: list[threading.Thread] = []
        self._poller = threading.Thread(target=self._poll, name="otel-bucket-bridge-idle")
        self._acceptor = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="otel-bucket-bridge"
        )

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def start(self) -> None:
        for thread in [self._acceptor, self._poller]:
            thread.daemon = True
            thread.start()
        for index in range(self._threads):
            worker = threading.Thread(target=self._work, name=f"otel-bucket-bridge-{index}")
            worker.daemon = True
            worker.start()
            self._workers.append(worker)

    def process_request(self, request: Any, client_address: Any) -> None:
        """On the accepting thread: wait (in the selector) for the connection's first request."""
        if self.closing or len(self._open) >= self._max_connections:
            self.shutdown_request(request)
            return
        try:
            handler = self._handler_class(request, client_address, self)
        except Exception:
            _log.debug("bridge: could not set up a connection", exc_info=True)
            self.shutdown_request(request)
            return
        with self._lock:
            self._open.add(handler)
        self._park(handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is normal; never print a traceback for it.
        _log.debug("bridge: error while serving %s", client_address, exc_info=True)

    def stop(self, timeout: float) -> None:
        """Stop accepting, answer requests already read, close every connection."""
        self.closing = True
        if self._acceptor.is_alive():
            self.shutdown()
        self.server_close()
        self._wake()
        self._poller.join(timeout)
        for _ in self._workers:
            self._ready.put(None)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            left = list(self._open)
        for handler in left:  # only when a worker is stuck past the timeout
            self._close(handler)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _park(self, handler: ConnectionHandler) -> None:
        if self.closing:
            self._close(handler)
            return
        self._to_park.append(handler)
        self._wake()

    def _close(self, handler: ConnectionHandler) -> None:
        with self._lock:
            if handler not in self._open:
                return
            self._open.discard(handler)
        with contextlib.suppress(Exception):
            handler.finish()
        self.shutdown_request(handler.connection)

    def _poll(self) -> None:
        while not self.closing:
            for key, _ in self._selector.select(timeout=1.0):
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                self._selector.unregister(key.fileobj)
                self._ready.put(key.data)
            while self._to_park:
                handler = self._to_park.popleft()
                try:
                    self._selector.register(handler.connection, selectors.EVENT_READ, handler)
                except (OSError, ValueError, KeyError):
                    self._close(handler)
            self._expire(time.monotonic() - self._idle_timeout)
        self._expire(float("inf"))  # stopping: idle connections are closed now
        while self._to_park:
            self._close(self._to_park.popleft())

    def _expire(self, before: float) -> None:
        for key in list(self._selector.get_map().values()):
            handler = key.data
            if isinstance(handler, ConnectionHandler) and handler.idle_since < before:
                self._selector.unregister(key.fileobj)
                self._close(handler)

    def _work(self) -> None:
        while True:
            handler = self._ready.get()
            if handler is None:
                return
            try:
                keep = handler.serve_ready()
            except Exception:
                self.handle_error(handler.connection, handler.client_address)
                keep = False
            if keep:
                self._park(handler)
            else:
                self._close(handler)
