"""The bridge's decoding: OTLP protobuf and JSON into ReadableSpans."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.internal.encoder import _VarintBytes as varint
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from otel_bucket.bridge._decode import JSON, PROTOBUF, BadRequest, Limits, TooMany, decode_request
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
    assert dict(first.resource.attributes) == {}  # not read: the mapping never looks at it
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


def test_only_the_attributes_the_mapping_reads_are_kept() -> None:
    """A span keeps its bucket.* attributes and user ids; an HTTP span's other attributes would
    only take memory in the queue and the backlog."""
    spans = make_spans(
        {"enduser.id": "u", "user.id": "v", "bucket.event": "E", "http.route": "/x", "n": 1}
    )
    (span,) = decode_request(encode_spans(spans).SerializeToString(), PROTOBUF).spans
    assert dict(span.attributes or {}) == {"enduser.id": "u", "user.id": "v", "bucket.event": "E"}


# -- limits: refused before the costly part runs --------------------------------------------------


def _field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _request(*scopes: bytes) -> bytes:
    """A request of one ResourceSpans holding ``scopes`` (each the content of a ScopeSpans)."""
    return _field(1, b"".join(_field(2, scope) for scope in scopes))


def _span(*pairs: tuple[str, AnyValue], extra: bytes = b"") -> bytes:
    span = OtlpSpan(name="op", attributes=[KeyValue(key=k, value=v) for k, v in pairs])
    return _field(2, span.SerializeToString() + extra)


USER_U = ("enduser.id", AnyValue(string_value="u"))


@pytest.mark.parametrize(
    ("body", "encoding", "message"),
    [
        (_request(b"\x12\x00" * 11), PROTOBUF, "more than 10 spans"),
        (_request(_span(USER_U, extra=b"\x4a\x00" * 40_000)), PROTOBUF, "more than 40 values"),
        (_request(_span(USER_U, extra=b"\x4a\x00" * 1281)), PROTOBUF, "more than 1280 attributes"),
        (
            _request(_span(USER_U, ("bucket.user.a", array(*[AnyValue(int_value=1)] * 160)))),
            PROTOBUF,
            "more than 160 attribute values for Bucket",
        ),
        (b"[" + b"{}," * 320 + b"{}]", JSON, "more than 320 values"),
        (
            json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{}] * 11}]}]}).encode(),
            JSON,
            "more than 10 spans",
        ),
    ],
    ids=["spans", "large-span", "attributes", "values", "json-values", "json-spans"],
)
def test_requests_past_a_limit_are_refused(body: bytes, encoding: str, message: str) -> None:
    """Past a limit (here for 10 spans), TooMany says which; spans are counted before any is
    parsed, a large span's values before it is parsed, JSON values before json.loads."""
    with pytest.raises(TooMany, match=message):
        decode_request(body, encoding, Limits(max_spans=10))


def test_spans_without_a_bucket_key_are_not_parsed() -> None:
    """A span whose bytes hold no user id, event or company id is counted but never parsed, so
    a damaged one does not fail the request (as in JSON); the framing around it is checked."""
    damaged = _field(2, b"\x0a\x05ab")  # a name of 5 bytes holding 2
    body = _request(damaged + _span(USER_U))
    decoded = decode_request(body, PROTOBUF)
    assert decoded.received == 2
    assert [dict(s.attributes or {}) for s in decoded.spans] == [{"enduser.id": "u"}]
    with pytest.raises(BadRequest, match="truncated"):
        decode_request(_request(damaged[:-1]), PROTOBUF)


def test_a_scope_sent_in_pieces_is_merged() -> None:
    """A message field sent twice is merged, as protobuf's parser does."""
    scope = _field(1, _field(1, b"shop")) + _field(1, _field(2, b"1.2"))
    (span,) = decode_request(_request(scope + _span(USER_U)), PROTOBUF).spans
    assert span.instrumentation_scope is not None
    assert (span.instrumentation_scope.name, span.instrumentation_scope.version) == ("shop", "1.2")
