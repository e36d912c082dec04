"""One HTTP/1.1 exchange on a connected socket, by hand: the request in one ``sendall``, then the
answer's status line, its headers and at most ``limit`` bytes of its body.

``http.client`` writes a request header by header and parses every answer's headers through
the ``email`` package: for calls whose answers we barely read (a status, ``Retry-After``,
``Location``, the start of an error body) that cost as much as the rest of an attempt. The
errors are ``http.client``'s own, so they are told apart as before: a server that closes
without a word raises ``RemoteDisconnected`` (a hiccup), anything malformed an
``HTTPException``. A body that breaks off or drips past the deadline does not hide the status:
what was read is returned and the connection is not used again.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass

__all__ = ["Reply", "exchange", "request_head"]

_MAX_LINE = 65536  # bytes in a status or header line (as http.client)
_MAX_HEADERS = 100  # header lines in an answer (as http.client)
_CHUNK = 65536  # bytes asked of the socket at a time


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None
    location: str | None
    body: bytes
    reusable: bool  # read to its end, and the server keeps the connection open


def request_head(target: str, host: str, headers: dict[str, str]) -> bytes:
    """A POST's request line and headers, up to the value of ``Content-Length``."""
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")


def exchange(sock: socket.socket, head: bytes, body: bytes, limit: int) -> Reply:
    """Send one request (``head`` from ``request_head``) and read its answer."""
    sock.sendall(b"%s%d\r\n\r\n%s" % (head, len(body), body))
    reader = _Reader(sock)
    while True:
        status, keep_alive, fields = reader.head()
        if not 100 <= status < 200:
            break  # an interim answer (100 Continue) is followed by the real one
    retry_after, location = fields.get("retry-after"), fields.get("location")
    try:
        data, complete = reader.body(status, fields, limit)
    except (OSError, http.client.HTTPException, ValueError):
        return Reply(status, retry_after, location, b"", False)  # the status counts
    reusable = complete and keep_alive and not reader.buffer
    return Reply(status, retry_after, location, data, reusable)


class _Reader:
    __slots__ = ("buffer", "sock", "started")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.started = False  # a byte of the answer arrived

    def _fill(self) -> bool:
        data = self.sock.recv(_CHUNK)
        if not data:
            return False
        self.started = True
        self.buffer += data
        return True

    def line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > _MAX_LINE:
                raise http.client.LineTooLong("header line")
            if not self._fill():
                if not self.started:
                    raise http.client.RemoteDisconnected(
                        "Remote end closed connection without response"
                    )
                raise http.client.IncompleteRead(bytes(self.buffer))

    def take(self, count: int) -> bytes:
        """``count`` bytes, or fewer if the connection ends first."""
        while len(self.buffer) < count and self._fill():
            pass
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def head(self) -> tuple[int, bool, dict[str, str]]:
        """The status, whether the connection stays open, and the headers we use."""
        parts = self.line().decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise http.client.BadStatusLine(" ".join(parts))
        version, status = parts[0], int(parts[1])
        if not 100 <= status <= 999:
            raise http.client.BadStatusLine(" ".join(parts))
        fields: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            line = self.line()
            if not line:
                break
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise http.client.HTTPException(f"malformed header line: {name[:40]!r}")
            name = name.strip().lower()
            value = value.strip()
            if name in fields and name in ("content-length", "transfer-encoding", "connection"):
                fields[name] += f", {value}"
            else:
                fields[name] = value
        else:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        tokens = {t.strip() for t in fields.get("connection", "").lower().split(",")}
        keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        return status, keep_alive, fields

    def body(self, status: int, fields: dict[str, str], limit: int) -> tuple[bytes, bool]:
        """At most ``limit`` bytes of the body, and whether it was read to its end."""
        if status in (204, 304):
            return b"", True
        coding = fields.get("transfer-encoding", "").lower()
        if coding:
            if coding.rsplit(",", 1)[-1].strip() != "chunked":
                return self.take(limit), False  # delimited by the connection's end
            return self._chunked(limit)
        length = fields.get("content-length")
        if length is None:
            return self.take(limit), False  # delimited by the connection's end
        count = int(length)  # two that were joined ("5, 5") raise ValueError here too
        if count < 0:
            raise ValueError("Content-Length")
        data = self.take(min(count, limit))
        return data, len(data) == count

    def _chunked(self, limit: int) -> tuple[bytes, bool]:
        out = bytearray()
        while True:
            size = int(self.line().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.line():  # trailers, up to the empty line
                    pass
                return bytes(out), True
            if len(out) + size > limit:
                out += self.take(limit - len(out))
                return bytes(out), False
            chunk = self.take(size)
            if len(chunk) < size or self.take(2) != b"\r\n":
                return bytes(out + chunk), False
            out += chunk
