"""A scripted raw-socket HTTP server on 127.0.0.1 that misbehaves on purpose.

Each request is read whole (request line, headers, ``Content-Length`` body), then handed to a
behaviour ``(request) -> Act``: answer normally, drip the answer a byte at a time, send a body
that never ends, wait first, or hang up. The server records every request and whether the client
hung up before the answer was sent in full.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    """One request the server read."""

    index: int  # 0-based, in arrival order
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    raw: bytes = b""  # the request as it came, head and body


@dataclass(frozen=True)
class Act:
    """What to do with one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"success":true}'
    delay: float = 0.0  # seconds before answering (cut short by ``release``)
    drip: float = 0.0  # seconds between two bytes of the answer
    drip_body: bool = False  # send the headers at once and drip only the body
    endless: bool = False  # announce a huge body and stream it until the client hangs up
    hang_up: bool = False  # close the connection without answering
    raw: bytes | None = None  # send these bytes as the whole answer, framing and all
    close: bool = False  # close the connection after answering


Behaviour = Callable[[Request], Act]


class HostileServer:
    """Serves each connection on its own thread, by the current ``behaviour``."""

    def __init__(self, behaviour: Behaviour | None = None, port: int = 0) -> None:
        self.behaviour: Behaviour = behaviour or (lambda request: Act())
        self.requests: list[Request] = []
        self.hung_up: list[int] = []  # indexes of requests whose client left mid-answer
        self.bytes_sent = 0
        self._lock = threading.Condition()
        self._release = threading.Event()
        self._closed = False
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(128)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        """Wait on a condition (not a sleep) until ``count`` requests arrived."""
        with self._lock:
            self._lock.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._closed = True
        self._release.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while not self._closed:
                request = self._read(reader)
                if request is None:
                    return
                act = self.behaviour(request)
                if not self._answer(conn, request, act):
                    return

    def _read(self, reader: object) -> Request | None:
        try:
            line = reader.readline()  # type: ignore[attr-defined]
            if not line:
                return None
            raw = line
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                header_line = reader.readline()  # type: ignore[attr-defined]
                raw += header_line
                header = header_line.decode("latin-1")
                if header in ("\r\n", "\n", ""):
                    break
                name, _, value = header.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = reader.read(int(headers.get("content-length", "0")))  # type: ignore[attr-defined]
        except (OSError, ValueError):
            return None
        with self._lock:
            request = Request(len(self.requests), method, path, headers, body, raw + body)
            self.requests.append(request)
            self._lock.notify_all()
        return request

    def _answer(self, conn: socket.socket, request: Request, act: Act) -> bool:
        """Send the answer; False when the connection is over."""
        if act.delay:
            self._release.wait(act.delay)
        if act.hang_up:
            return False
        if act.raw is not None:
            try:
                conn.sendall(act.raw)
            except OSError:
                return False
            self._count(len(act.raw))
            return not act.close
        length = str(10**12) if act.endless else str(len(act.body))
        head = [f"HTTP/1.1 {act.status} X", f"Content-Length: {length}"]
        head += [f"{k}: {v}" for k, v in act.headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + (b"" if act.endless else act.body)
        try:
            if act.drip:
                start = len(data) - len(act.body) if act.drip_body else 0
                conn.sendall(data[:start])
                for i in range(start, len(data)):
                    conn.sendall(data[i : i + 1])
                    self._count(1)
                    if self._release.wait(act.drip):
                        break
            else:
                conn.sendall(data)
                self._count(len(data))
            while act.endless and not self._closed:
                conn.sendall(b"x" * 65536)
                self._count(65536)
        except OSError:
            with self._lock:
                self.hung_up.append(request.index)
            return False
        return not act.endless and not act.close

    def _count(self, sent: int) -> None:
        with self._lock:
            self.bytes_sent += sent
