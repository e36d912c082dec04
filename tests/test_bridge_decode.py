"""The bridge's decoding: OTLP protobuf and JSON into ReadableSpans, and bodies within a cap."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import zlib
from email.message import Message
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from otel_bucket.bridge._body import BodyError, TooLarge, UnsupportedEncoding, read_body
from otel_bucket.bridge._decode import JSON, PROTOBUF, BadRequest, decode_request
from tests._spans import make_spans, payloads

TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
SPAN_ID = "EEE19B7EC3C1B174"


def request_with(attributes: dict[str, AnyValue], name: str = "op") -> bytes:
    """A protobuf request with one span carrying ``attributes`` (and a user id)."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = name
    span.start_time_unix_nano = 1_764_000_000_123_000_000
    span.attributes.append(KeyValue(key="enduser.id", value=AnyValue(string_value="u1")))
    for key, value in attributes.items():
        span.attributes.append(KeyValue(key=key, value=value))
    return request.SerializeToString()


def array(*values: AnyValue) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=list(values)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (AnyValue(string_value="plain"), "plain"),
        (AnyValue(string_value=""), ""),
        (AnyValue(int_value=-(2**63)), -(2**63)),
        (AnyValue(int_value=2**63 - 1), 2**63 - 1),
        (AnyValue(double_value=0.25), 0.25),
        (AnyValue(bool_value=False), False),
        (array(AnyValue(string_value="a"), AnyValue(string_value="b")), ("a", "b")),
        (array(AnyValue(int_value=1), AnyValue(int_value=2)), (1, 2)),
        (array(AnyValue(int_value=1), AnyValue(string_value="x")), (1, "x")),
        (array(AnyValue(string_value="a"), AnyValue(), array()), ("a",)),
        (array(), ()),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, AnyValue) else repr(v),
)
def test_attribute_values_as_the_sdk_holds_them(value: AnyValue, expected: object) -> None:
    """string, int64, double, bool and arrays arrive as the Python SDK would hold them."""
    decoded = decode_request(request_with({"bucket.user.v": value}), PROTOBUF)
    (span,) = decoded.spans
    assert span.attributes is not None
    assert span.attributes["bucket.user.v"] == expected
    assert type(span.attributes["bucket.user.v"]) is type(expected)


@pytest.mark.parametrize(
    "value",
    [
        AnyValue(bytes_value=b"\x00\x01"),
        AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k")])),
        AnyValue(),
    ],
    ids=["bytes", "kvlist", "empty"],
)
def test_values_the_sdk_cannot_hold_are_dropped(value: AnyValue) -> None:
    """bytes, kvlist and empty values are left out; the span is still used."""
    decoded = decode_request(request_with({"bucket.user.v": value}), PROTOBUF)
    (span,) = decoded.spans
    assert span.attributes == {"enduser.id": "u1"}


def test_sdk_spans_round_trip_to_the_same_calls() -> None:
    """Spans encoded by the SDK's own OTLP encoder map to exactly the calls they map to
    in-process: names, start times and every attribute type survive."""
    spans = make_spans(
        {
            "enduser.id": 42,
            "bucket.user.name": "Ada",
            "bucket.user.roles": ("admin", "dev"),
            "bucket.company.id": "acme",
            "bucket.company.seats": 12,
        },
        {"enduser.id": 42, "bucket.event": "Exported", "bucket.attributes.ratio": 0.5},
        {"bucket.attributes.flag": True, "bucket.event": "Anonymous"},
        {"http.route": "/health"},
        start=1_764_000_000_000_000_000,
    )
    body = encode_spans(spans).SerializeToString()
    decoded = decode_request(body, PROTOBUF)
    assert decoded.received == 4
    assert [s.name for s in decoded.spans] == ["op", "op", "op"]  # the /health span: no call
    assert payloads(decoded.spans) == payloads(spans)
    first = decoded.spans[0]
    assert first.context is not None and spans[0].context is not None
    assert first.context.trace_id == spans[0].context.trace_id
    assert first.resource.attributes.get("service.name") == spans[0].resource.attributes.get(
        "service.name"
    )
    assert first.instrumentation_scope is not None
    assert first.instrumentation_scope.name == "tests"


def otlp_json(**span_fields: Any) -> bytes:
    """An OTLP JSON request as the specification writes it."""
    span = {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "parentSpanId": "",
        "name": "checkout",
        "kind": 2,
        "startTimeUnixNano": "1764000000123000000",
        "endTimeUnixNano": "1764000000456000000",
        "attributes": [
            {"key": "enduser.id", "value": {"stringValue": "u-7"}},
            {"key": "bucket.event", "value": {"stringValue": "Checked out"}},
            {"key": "bucket.attributes.items", "value": {"intValue": "9007199254740993"}},
            {"key": "bucket.attributes.total", "value": {"doubleValue": 99.5}},
            {"key": "bucket.attributes.gift", "value": {"boolValue": True}},
            {
                "key": "bucket.attributes.sizes",
                "value": {"arrayValue": {"values": [{"intValue": 1}, {"intValue": "2"}]}},
            },
        ],
        "links": [{"traceId": TRACE_ID.lower(), "spanId": SPAN_ID}],
        "status": {"code": 1},
        **span_fields,
    }
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]
                },
                "scopeSpans": [{"scope": {"name": "shop-js"}, "spans": [span]}],
                "schemaUrl": "",
                "someFutureField": {"x": 1},
            }
        ]
    }
    return json.dumps(document).encode()


def test_otlp_json_with_hex_ids_camel_case_and_int64_strings() -> None:
    """OTLP JSON (hex ids, lowerCamelCase, int64 as strings, enums as ints) decodes; unknown
    fields are ignored as OTLP asks of JSON receivers."""
    decoded = decode_request(otlp_json(), JSON)
    (span,) = decoded.spans
    assert span.name == "checkout"
    assert span.start_time == 1_764_000_000_123_000_000
    assert span.context is not None
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.context.span_id == int(SPAN_ID, 16)
    assert span.resource.attributes["service.name"] == "shop"
    assert dict(span.attributes or {}) == {
        "enduser.id": "u-7",
        "bucket.event": "Checked out",
        "bucket.attributes.items": 9007199254740993,  # beyond a double's precision: exact
        "bucket.attributes.total": 99.5,
        "bucket.attributes.gift": True,
        "bucket.attributes.sizes": (1, 2),
    }
    assert payloads(decoded.spans) == [
        ("user", {"userId": "u-7", "timestamp": "2025-11-24T16:00:00.123Z"}),
        (
            "event",
            {
                "event": "Checked out",
                "userId": "u-7",
                "attributes": {
                    "items": 9007199254740993,
                    "total": 99.5,
                    "gift": True,
                    "sizes": "1,2",
                },
                "timestamp": "2025-11-24T16:00:00.123Z",
            },
        ),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "expected an object"),
        (b"\xff\xfe\x00", "not JSON"),
        (otlp_json(traceId="not-hex"), "traceId is not a hex string"),
        (otlp_json(name=["a list"]), "not an OTLP JSON ExportTraceServiceRequest"),
        (otlp_json(startTimeUnixNano="soon"), "not an OTLP JSON ExportTraceServiceRequest"),
        (b'{"resourceSpans": 3}', "not an OTLP JSON ExportTraceServiceRequest"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
    ids=["truncated", "array", "not-utf8", "hex", "name", "time", "shape", "deep"],
)
def test_malformed_json_is_a_bad_request(body: bytes, message: str) -> None:
    """Malformed JSON raises BadRequest with a message that says what is wrong."""
    with pytest.raises(BadRequest, match=message):
        decode_request(body, JSON)


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05abc", b"\x0a" + b"\x0a\x7f" * 200])
def test_malformed_protobuf_is_a_bad_request(body: bytes) -> None:
    """Bytes that are not an ExportTraceServiceRequest raise BadRequest."""
    with pytest.raises(BadRequest, match="not a protobuf ExportTraceServiceRequest"):
        decode_request(body, PROTOBUF)


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_empty_body_is_an_empty_request(encoding: str) -> None:
    """An empty body is a request with no spans (a success, per OTLP)."""
    decoded = decode_request(b"", encoding)
    assert decoded.spans == []
    assert decoded.received == 0


# -- bodies ------------------------------------------------------------------------------------


def headers(**fields: str) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


def test_plain_body_is_read_to_its_length() -> None:
    """A Content-Length body is read exactly; the next request's bytes stay unread."""
    stream = io.BytesIO(b"hello" + b"NEXT")
    assert read_body(stream, headers(Content_Length="5"), 100) == b"hello"
    assert stream.read() == b"NEXT"


def test_chunked_body_with_extensions_and_trailers() -> None:
    """Chunked bodies (Node's gzip exporter sends one) are reassembled."""
    raw = b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT"
    stream = io.BytesIO(raw)
    assert read_body(stream, headers(Transfer_Encoding="chunked"), 100) == b"hello world"
    assert stream.read() == b"NEXT"


TRUNCATED = gzip.compress(b"x" * 100)[:-6]
CHUNKED = {"Transfer_Encoding": "chunked"}


@pytest.mark.parametrize(
    ("raw", "fields", "message"),
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", CHUNKED, "chunk size"),
        (b"-5\r\nhello\r\n0\r\n\r\n", CHUNKED, "chunk size"),
        (b"5\r\nhel", CHUNKED, "middle of a chunk"),
        (b"5\r\nhelloXX0\r\n\r\n", CHUNKED, "malformed chunked"),
        (b"abc", {"Content_Length": "10"}, "shorter than its Content-Length"),
        (b"abc", {"Content_Length": "-1"}, "bad Content-Length"),
        (TRUNCATED, {"Content_Length": str(len(TRUNCATED)), "Content_Encoding": "gzip"}, "trunc"),
        (b"not gzip", {"Content_Length": "8", "Content_Encoding": "gzip"}, "not valid gzip"),
    ],
    ids=["hex", "negative", "short-chunk", "no-crlf", "short", "length", "truncated", "garbage"],
)
def test_malformed_bodies(raw: bytes, fields: dict[str, str], message: str) -> None:
    """Framing and compression errors raise BodyError naming the problem."""
    with pytest.raises(BodyError, match=message):
        read_body(io.BytesIO(raw), headers(**fields), 10_000)


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
    fields = headers(Content_Length=str(len(raw)), Content_Encoding=coding)
    assert read_body(io.BytesIO(raw), fields, len(data)) == data


def test_unknown_content_encoding() -> None:
    """br, zstd and others are refused before anything is read."""
    with pytest.raises(UnsupportedEncoding, match="'br' is not supported"):
        read_body(io.BytesIO(b"x"), headers(Content_Length="1", Content_Encoding="br"), 10)


@pytest.mark.parametrize("coding", ["", "gzip"])
def test_one_byte_over_the_cap_is_too_large(coding: str) -> None:
    """The cap holds to the byte, compressed or not; the body is still read to its end."""
    data = b"a" * 1001
    raw = gzip.compress(data) if coding else data
    stream = io.BytesIO(raw + b"NEXT")
    fields = headers(Content_Length=str(len(raw)), Content_Encoding=coding or "identity")
    with pytest.raises(TooLarge) as info:
        read_body(stream, fields, 1000)
    assert info.value.close is False
    assert stream.read() == b"NEXT"
    assert read_body(io.BytesIO(raw), fields, 1001) == data


def test_gzip_bomb_never_inflates_beyond_the_cap() -> None:
    """64 MiB of zeros in 64 KiB of gzip, against a 1 MiB cap: refused, and the decoder
    never holds much more than the cap (traced allocations)."""
    bomb = gzip.compress(bytes(64 * 1024 * 1024), 9)
    fields = headers(Content_Length=str(len(bomb)), Content_Encoding="gzip")
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            read_body(io.BytesIO(bomb), fields, 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak


def test_declared_length_far_beyond_the_cap_closes_without_reading() -> None:
    """A Content-Length over twice the cap is refused before reading; the connection closes."""
    stream = io.BytesIO(b"x" * 10)
    with pytest.raises(TooLarge) as info:
        read_body(stream, headers(Content_Length=str(10**12)), 1000)
    assert info.value.close is True
    assert stream.tell() == 0


def test_json_spans_without_bucket_attributes_are_counted_and_skipped() -> None:
    """Spans with no Bucket attribute are counted but never reach protobuf's (slow) JSON parser,
    so even a malformed one among them does not fail the request."""
    document = json.loads(otlp_json())
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({"name": "GET /", "attributes": [{"key": "http.route", "value": {}}]})
    spans.append({"name": ["not", "a", "name"], "startTimeUnixNano": "soon"})
    decoded = decode_request(json.dumps(document).encode(), JSON)
    assert decoded.received == 3
    assert [span.name for span in decoded.spans] == ["checkout"]
