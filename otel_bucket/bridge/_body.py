"""Request bodies: read as sent (``Content-Length`` or chunked), then inflated within a cap.

Reading happens on the server's event loop and costs no thread; the bytes held that way across
all connections are bounded (`Buffers`: a request that would pass the bound is answered 503).
Inflating (gzip or deflate) happens on a decoding thread, in pieces, and stops at the cap: a
small gzip bomb never makes the bridge hold more than the cap. A body that is refused (too
large, or refused before it was read) is read and thrown away when it is not much larger than
the cap, so the client reads the answer and the connection stays usable; a larger one ends the
connection after the answer.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Final

__all__ = [
    "BodyError",
    "Buffers",
    "Busy",
    "TooLarge",
    "UnsupportedEncoding",
    "content_coding",
    "discard_body",
    "inflate",
    "read_body",
]

_PIECE: Final = 64 * 1024
_MAX_LINE: Final = 1024  # a chunk-size line or a trailer line
_MAX_TRAILERS: Final = 64
_GZIP: Final = 16 + zlib.MAX_WBITS
_ZLIB: Final = zlib.MAX_WBITS
_CODINGS: Final = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": _ZLIB}


class BodyError(ValueError):
    """The body cannot be read: answered with 400.

    Attributes:
        close: the rest of the body is unread (or the framing is broken), so the connection
            must be closed after the answer.
    """

    close: bool = True


class TooLarge(BodyError):
    """The body (decompressed) is larger than the cap: answered with 413."""


class Busy(BodyError):
    """The bodies held across connections would pass their bound: answered with 503."""


class UnsupportedEncoding(ValueError):
    """A ``Content-Encoding`` other than gzip, deflate or identity: answered with 415."""


class Buffers:
    """Bytes of request bodies held at once, across connections; used on the loop's thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, count: int) -> None:
        if self.held + count > self.limit:
            raise Busy(f"the bridge holds {self.held} bytes of request bodies; retry later")
        self.held += count

    def give(self, count: int) -> None:
        self.held -= count


def content_coding(headers: Mapping[str, str]) -> int | None:
    """The zlib ``wbits`` for the body's ``Content-Encoding``; None for identity.

    Raises:
        UnsupportedEncoding: another coding.
    """
    coding = headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in _CODINGS:
        raise UnsupportedEncoding(
            f"Content-Encoding {coding[:32]!r} is not supported: use gzip, deflate or none"
        )
    return _CODINGS[coding]


def _chunked(headers: Mapping[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _declared_length(headers: Mapping[str, str]) -> int | None:
    """``Content-Length`` (0 when absent); None for a chunked body."""
    if _chunked(headers):
        return None
    text = headers.get("content-length", "").strip() or "0"
    if not text.isdigit():  # also refuses "-1" and "+5", which int() would take
        raise BodyError(f"bad Content-Length: {text[:32]!r}")
    return int(text)


async def _pieces(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> AsyncIterator[bytes]:
    """The body as sent, in pieces of at most 64 KiB."""
    left = _declared_length(headers)
    if left is None:
        async for piece in _chunks(reader):
            yield piece
        return
    while left:
        piece = await reader.read(min(left, _PIECE))
        if not piece:
            raise BodyError("the body is shorter than its Content-Length")
        left -= len(piece)
        yield piece


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise BodyError("malformed chunked body") from None
    if len(line) > _MAX_LINE:
        raise BodyError("malformed chunked body")
    return line


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size_text = (await _line(reader)).split(b";", 1)[0].strip()
        if not size_text or size_text.lstrip(b"0123456789abcdefABCDEF") or len(size_text) > 16:
            raise BodyError("malformed chunk size in a chunked body")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(_MAX_TRAILERS):
                if (await _line(reader)).strip() == b"":
                    return
            raise BodyError("too many trailer lines in a chunked body")
        while size:
            piece = await reader.read(min(size, _PIECE))
            if not piece:
                raise BodyError("a chunked body ended in the middle of a chunk")
            size -= len(piece)
            yield piece
        if (await _line(reader)).strip() != b"":
            raise BodyError("malformed chunked body")


async def read_body(
    reader: asyncio.StreamReader, headers: Mapping[str, str], limit: int, buffers: Buffers
) -> bytes:
    """The body as sent (compressed or not), of at most ``limit`` bytes, its bytes taken from
    ``buffers`` as they arrive (give ``len(body)`` back when done with it).

    Raises:
        TooLarge: the body is larger than ``limit``.
        Busy: ``buffers`` cannot take it.
        BodyError: the framing is malformed.
    """
    declared = _declared_length(headers)
    if declared is not None and declared > 2 * limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    out = bytearray()
    seen = 0
    try:
        async for piece in _pieces(reader, headers):
            seen += len(piece)
            if seen <= limit:
                buffers.take(len(piece))
                out += piece
            elif seen > 2 * limit:  # not worth reading to the end: close instead
                raise TooLarge(f"the body is larger than {limit} bytes")
            elif out:  # too large, but read to the end: the connection stays usable
                buffers.give(len(out))
                out = bytearray()
    except BaseException:
        buffers.give(len(out))
        raise
    if seen > limit:
        error = TooLarge(f"the body is larger than {limit} bytes")
        error.close = False
        raise error
    return bytes(out)


async def discard_body(
    reader: asyncio.StreamReader, headers: Mapping[str, str], limit: int
) -> bool:
    """Read and drop a body that will not be used; False when the connection must close
    instead (the body is malformed, or more than twice ``limit`` long)."""
    try:
        declared = _declared_length(headers)
        if declared is not None and declared > 2 * limit:
            return False
        seen = 0
        async for piece in _pieces(reader, headers):
            seen += len(piece)
            if seen > 2 * limit:
                return False
    except (BodyError, OSError, asyncio.IncompleteReadError):
        return False
    return True


class _Inflater:
    """Incremental gzip/deflate with an output cap; gzip may have several members."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._d = zlib.decompressobj(wbits)

    def feed(self, data: bytes, room: int) -> bytes | None:
        """Decompress ``data``; None when the output would exceed ``room`` bytes."""
        out = bytearray()
        while data:
            try:
                out += self._d.decompress(data, room - len(out) + 1)
            except zlib.error as exc:
                raise BodyError(f"the body is not valid {self._name}: {exc}") from None
            if len(out) > room:
                return None
            data = self._d.unconsumed_tail
            if not data and self._d.eof and self._d.unused_data:
                if self._wbits != _GZIP:
                    raise BodyError("data after the end of the deflate stream")
                data = self._d.unused_data  # the next gzip member
                self._d = zlib.decompressobj(self._wbits)
        return bytes(out)

    def finish(self) -> None:
        if not self._d.eof:
            raise BodyError(f"the {self._name} body is truncated")

    @property
    def _name(self) -> str:
        return "gzip" if self._wbits == _GZIP else "deflate"


def inflate(raw: bytes, wbits: int | None, limit: int) -> bytes:
    """``raw`` decompressed (as it is for identity), of at most ``limit`` bytes; decompressed
    in pieces, so that a bomb stops at the cap.

    Raises:
        TooLarge: more than ``limit`` bytes once decompressed.
        BodyError: the compressed data is malformed.
    """
    if wbits is None or not raw:
        return raw
    inflater = _Inflater(wbits)
    out = bytearray()
    for start in range(0, len(raw), _PIECE):
        data = inflater.feed(raw[start : start + _PIECE], limit - len(out))
        if data is None:
            error = TooLarge(f"the body is larger than {limit} bytes")
            error.close = False
            raise error
        out += data
    inflater.finish()
    return bytes(out)
