"""Reading a request body: ``Content-Length`` or chunked, gzip or deflate, within a size cap.

The cap applies to the decompressed body and is enforced while decompressing, in pieces: a small
gzip bomb never makes the bridge hold more than the cap. A body that is refused (too large,
malformed, or refused before it was read) is read and thrown away when it is not much larger
than the cap, so the client reads the answer and the connection stays usable; a larger one ends
the connection after the answer.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from email.message import Message
from typing import Final, Protocol

__all__ = ["BodyError", "TooLarge", "UnsupportedEncoding", "discard_body", "read_body"]

_PIECE: Final = 64 * 1024
_MAX_LINE: Final = 1024  # a chunk-size line or a trailer line
_MAX_TRAILERS: Final = 64
_GZIP: Final = 16 + zlib.MAX_WBITS
_ZLIB: Final = zlib.MAX_WBITS
_CODINGS: Final = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": _ZLIB}


class Readable(Protocol):
    """What the body is read from: the handler's buffered socket file."""

    def read(self, size: int = ..., /) -> bytes: ...

    def readline(self, size: int | None = ..., /) -> bytes: ...


class BodyError(ValueError):
    """The body cannot be read: answered with 400.

    Attributes:
        close: the rest of the body is unread (or the framing is broken), so the connection
            must be closed after the answer.
    """

    close: bool = True


class TooLarge(BodyError):
    """The body (decompressed) is larger than the cap: answered with 413."""


class UnsupportedEncoding(ValueError):
    """A ``Content-Encoding`` other than gzip, deflate or identity: answered with 415."""


def _raw_pieces(rfile: Readable, headers: Message) -> Iterator[bytes]:
    """The body as sent, in pieces of at most 64 KiB."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        yield from _chunked(rfile)
        return
    text = headers.get("Content-Length", "").strip() or "0"
    if not text.isdigit():  # also refuses "-1" and "+5", which int() would take
        raise BodyError(f"bad Content-Length: {text[:32]!r}")
    left = int(text)
    while left:
        piece = rfile.read(min(left, _PIECE))
        if not piece:
            raise BodyError("the body is shorter than its Content-Length")
        left -= len(piece)
        yield piece


def _line(rfile: Readable) -> bytes:
    line = rfile.readline(_MAX_LINE + 1)
    if not line.endswith(b"\n"):
        raise BodyError("malformed chunked body")
    return line


def _chunked(rfile: Readable) -> Iterator[bytes]:
    while True:
        size_text = _line(rfile).split(b";", 1)[0].strip()
        try:
            if not size_text or size_text.lstrip(b"0123456789abcdefABCDEF"):
                raise ValueError
            size = int(size_text, 16)
        except ValueError:
            raise BodyError("malformed chunk size in a chunked body") from None
        if size == 0:
            for _ in range(_MAX_TRAILERS):
                if _line(rfile).strip() == b"":
                    return
            raise BodyError("too many trailer lines in a chunked body")
        while size:
            piece = rfile.read(min(size, _PIECE))
            if not piece:
                raise BodyError("a chunked body ended in the middle of a chunk")
            size -= len(piece)
            yield piece
        if _line(rfile).strip() != b"":
            raise BodyError("malformed chunked body")


class _Inflater:
    """Incremental gzip/deflate with an output cap; gzip may have several members."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._d = zlib.decompressobj(wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes | None:
        """Decompress ``data``; None when the output would exceed ``room`` bytes."""
        out = bytearray()
        while data:
            self._started = True
            try:
                out += self._d.decompress(data, room - len(out) + 1)
            except zlib.error as exc:
                raise BodyError(f"the body is not valid {self._name}: {exc}") from None
            if len(out) > room:
                return None
            data = b""
            if self._d.eof and self._d.unused_data:
                if self._wbits != _GZIP:
                    raise BodyError("data after the end of the deflate stream")
                data = self._d.unused_data  # the next gzip member
                self._d = zlib.decompressobj(self._wbits)
        return bytes(out)

    def finish(self) -> None:
        if self._started and not self._d.eof:
            raise BodyError(f"the {self._name} body is truncated")

    @property
    def _name(self) -> str:
        return "gzip" if self._wbits == _GZIP else "deflate"


def _coding(headers: Message) -> int | None:
    coding = headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in _CODINGS:
        raise UnsupportedEncoding(
            f"Content-Encoding {coding[:32]!r} is not supported: use gzip, deflate or none"
        )
    return _CODINGS[coding]


def read_body(rfile: Readable, headers: Message, limit: int) -> bytes:
    """The request body, decompressed, of at most ``limit`` bytes.

    Raises:
        UnsupportedEncoding: before anything is read (discard the body with `discard_body`).
        TooLarge: the body is larger than ``limit`` once decompressed.
        BodyError: the body is malformed (framing, length, compressed data).
    """
    wbits = _coding(headers)
    inflater = None if wbits is None else _Inflater(wbits)
    if _declared_length(headers) > 2 * limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    out = bytearray()
    problem: BodyError | None = None
    seen = 0
    for piece in _raw_pieces(rfile, headers):
        seen += len(piece)
        if problem is not None:
            if seen > 2 * limit:  # not worth reading to the end: close instead
                raise problem
            continue
        try:
            data = piece if inflater is None else inflater.feed(piece, limit - len(out))
        except BodyError as exc:
            problem = exc
            continue
        if data is None or seen > limit or len(out) + len(data) > limit:
            problem = TooLarge(f"the body is larger than {limit} bytes")
            continue
        out += data
    if problem is not None:
        problem.close = False  # read to its end: the connection can serve the next request
        raise problem
    if inflater is not None:
        inflater.finish()
    return bytes(out)


def _declared_length(headers: Message) -> int:
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return 0
    text = headers.get("Content-Length", "").strip()
    return int(text) if text.isdigit() else 0


def discard_body(rfile: Readable, headers: Message, limit: int) -> bool:
    """Read and drop a body that will not be used; False when the connection must close
    instead (the body is malformed, or more than twice ``limit`` long)."""
    if _declared_length(headers) > 2 * limit:
        return False
    seen = 0
    try:
        for piece in _raw_pieces(rfile, headers):
            seen += len(piece)
            if seen > 2 * limit:
                return False
    except (BodyError, OSError):
        return False
    return True
