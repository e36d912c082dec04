"""Request bodies: framing read from a real asyncio stream, inflation within a cap, and the bound
on body bytes held across connections."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib

import pytest

from otel_bucket.bridge._body import (
    BodyError,
    Buffers,
    Busy,
    TooLarge,
    UnsupportedEncoding,
    content_coding,
    inflate,
    read_body,
)


def fields(**named: str) -> dict[str, str]:
    return {name.replace("_", "-").lower(): value for name, value in named.items()}


def read(
    raw: bytes, headers: dict[str, str], limit: int, buffers: Buffers | None = None
) -> tuple[bytes, bytes]:
    """(the body read from a stream holding ``raw``, what the stream still holds after it)."""

    async def run() -> tuple[bytes, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        body = await read_body(reader, headers, limit, buffers or Buffers(10 * limit + 10))
        return body, await reader.read()

    return asyncio.run(run())


def test_plain_body_is_read_to_its_length() -> None:
    """A Content-Length body is read exactly; the next request's bytes stay unread."""
    assert read(b"hello" + b"NEXT", fields(Content_Length="5"), 100) == (b"hello", b"NEXT")


def test_chunked_body_with_extensions_and_trailers() -> None:
    """Chunked bodies (Node's gzip exporter sends one) are reassembled."""
    raw = b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT"
    assert read(raw, fields(Transfer_Encoding="chunked"), 100) == (b"hello world", b"NEXT")


CHUNKED = {"Transfer_Encoding": "chunked"}


@pytest.mark.parametrize(
    ("raw", "named", "message"),
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", CHUNKED, "chunk size"),
        (b"-5\r\nhello\r\n0\r\n\r\n", CHUNKED, "chunk size"),
        (b"5\r\nhel", CHUNKED, "middle of a chunk"),
        (b"5\r\nhelloXX0\r\n\r\n", CHUNKED, "malformed chunked"),
        (b"abc", {"Content_Length": "10"}, "shorter than its Content-Length"),
        (b"abc", {"Content_Length": "-1"}, "bad Content-Length"),
    ],
    ids=["hex", "negative", "short-chunk", "no-crlf", "short", "length"],
)
def test_malformed_framing(raw: bytes, named: dict[str, str], message: str) -> None:
    """Framing errors raise BodyError naming the problem; the bytes held are given back."""
    buffers = Buffers(10_000)
    with pytest.raises(BodyError, match=message):
        read(raw, fields(**named), 10_000, buffers)
    assert buffers.held == 0


TRUNCATED = gzip.compress(b"x" * 100)[:-6]


@pytest.mark.parametrize(
    ("raw", "message"), [(TRUNCATED, "truncated"), (b"not gzip", "not valid gzip")]
)
def test_malformed_compressed_data(raw: bytes, message: str) -> None:
    """gzip that is cut short or is not gzip raises BodyError."""
    with pytest.raises(BodyError, match=message):
        inflate(raw, content_coding(fields(Content_Encoding="gzip")), 10_000)


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "identity"])
def test_compressed_bodies(coding: str) -> None:
    """gzip (several members too) and deflate bodies are decompressed."""
    data = b"span bytes " * 1000
    if coding in ("gzip", "x-gzip"):
        raw = gzip.compress(data[:5000]) + gzip.compress(data[5000:])
    elif coding == "deflate":
        raw = zlib.compress(data)
    else:
        raw = data
    headers = fields(Content_Length=str(len(raw)), Content_Encoding=coding)
    body, _ = read(raw, headers, len(data))
    assert inflate(body, content_coding(headers), len(data)) == data


def test_unknown_content_encoding() -> None:
    """br, zstd and others are refused before anything is read."""
    with pytest.raises(UnsupportedEncoding, match="'br' is not supported"):
        content_coding(fields(Content_Encoding="br"))


def test_one_byte_over_the_cap_is_too_large() -> None:
    """The cap holds to the byte; a body over it is still read to its end."""
    raw = b"a" * 1001
    with pytest.raises(TooLarge) as info:
        read(raw + b"NEXT", fields(Content_Length=str(len(raw))), 1000)
    assert info.value.close is False
    assert read(raw, fields(Content_Length=str(len(raw))), 1001)[0] == raw


def test_one_byte_over_the_cap_once_inflated_is_too_large() -> None:
    """The cap applies to the inflated body, to the byte."""
    raw = gzip.compress(b"a" * 1001)
    wbits = content_coding(fields(Content_Encoding="gzip"))
    with pytest.raises(TooLarge):
        inflate(raw, wbits, 1000)
    assert inflate(raw, wbits, 1001) == b"a" * 1001


def test_gzip_bomb_never_inflates_beyond_the_cap() -> None:
    """64 MiB of zeros in 64 KiB of gzip, against a 1 MiB cap: refused, and inflating never
    holds much more than the cap (traced allocations)."""
    bomb = gzip.compress(bytes(64 * 1024 * 1024), 9)
    wbits = content_coding(fields(Content_Encoding="gzip"))
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            inflate(bomb, wbits, 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak


def test_declared_length_far_beyond_the_cap_closes_without_reading() -> None:
    """A Content-Length over twice the cap is refused before reading; the connection closes."""
    with pytest.raises(TooLarge) as info:
        read(b"x" * 10, fields(Content_Length=str(10**12)), 1000)
    assert info.value.close is True


def test_bodies_held_across_connections_are_bounded() -> None:
    """Body bytes are taken from a shared bound as they arrive: past it, Busy (503), and what
    the refused body had taken is given back."""
    buffers = Buffers(1500)
    first, _ = read(b"a" * 1000, fields(Content_Length="1000"), 2000, buffers)
    assert buffers.held == 1000
    with pytest.raises(Busy, match="holds 1000 bytes of request bodies"):
        read(b"b" * 1000, fields(Content_Length="1000"), 2000, buffers)
    assert buffers.held == 1000
    buffers.give(len(first))
    assert read(b"b" * 1000, fields(Content_Length="1000"), 2000, buffers)[0] == b"b" * 1000
