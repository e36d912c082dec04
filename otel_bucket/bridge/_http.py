"""HTTP/1.1 messages for the bridge's server: a request head parsed, an answer encoded.

Only what an OTLP/HTTP receiver needs: a request line, header fields (case-insensitive, a
repeated field joined with commas), keep-alive by version and ``Connection``. Anything malformed
is a `BadHead`, answered 400 (or 431 when the head is too large) and the connection closed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

__all__ = ["HEAD_LIMIT", "BadHead", "Request", "Response", "encode_response", "parse_head"]

HEAD_LIMIT: Final = 64 * 1024  # bytes of request line and header fields together
_MAX_FIELDS: Final = 100
_TOKEN: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class BadHead(ValueError):
    """The request head is malformed; ``status`` is the answer (400 or 431)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    """A request line and its header fields (names in lower case)."""

    method: str
    target: str
    version: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


@dataclass(frozen=True)
class Response:
    """An answer: status, content type, body, extra header fields; ``close`` ends the
    connection after it."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False

    def closing(self) -> Response:
        """This answer, ending the connection after it."""
        return self if self.close else dataclasses.replace(self, close=True)


def parse_head(head: bytes) -> Request:
    """The request in ``head`` (request line and fields, up to and including the blank line).

    Raises:
        BadHead: the head is malformed.
    """
    lines = head.split(b"\r\n")
    while lines and not lines[0]:  # RFC 9112 2.2: ignore empty lines before a request
        lines.pop(0)
    if not lines:
        raise BadHead("empty request")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN or not parts[1]:
        raise BadHead("malformed request line")
    version = parts[2].decode("latin-1")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadHead(f"unsupported HTTP version {version[:16]!r}")
    headers: dict[str, str] = {}
    fields = [line for line in lines[1:] if line]
    if len(fields) > _MAX_FIELDS:
        raise BadHead(f"more than {_MAX_FIELDS} header fields", 431)
    for line in fields:
        name, colon, value = line.partition(b":")
        if not colon or not name or not set(name) <= _TOKEN:
            raise BadHead("malformed header field")  # also a folded (obsolete) continuation
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(parts[0].decode("latin-1"), parts[1].decode("latin-1"), version, headers)


def encode_response(response: Response, server: str) -> bytes:
    """The answer as bytes, head and body."""
    reason = HTTPStatus(response.status).phrase
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Server: {server}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
    ]
    head.extend(f"{name}: {value}" for name, value in response.headers.items())
    if response.close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
