"""OTLP trace requests (binary protobuf or OTLP JSON) decoded into the SDK's ``ReadableSpan``.

The bridge hands these spans to ``BucketSpanExporter`` itself, so a span that arrives over OTLP
becomes exactly the calls it would make in a Python process. Decoding is done by the OTLP
protobuf definitions (``opentelemetry-proto``) and protobuf's own JSON parser; nothing here
parses the wire format by hand.

Attribute values are converted as the Python SDK holds them: string, bool, int and double as
they are (an int64 that OTLP JSON sends as a string becomes an int), an array as a tuple of its
scalar elements. What the SDK cannot hold is dropped: ``kvlist`` values, ``bytes`` values, empty
values, and arrays nested in arrays or lists in arrays.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.util.types import AttributeValue

from otel_bucket._sampling import is_relevant

__all__ = ["JSON", "PROTOBUF", "BadRequest", "Decoded", "decode_request"]

PROTOBUF: Final = "protobuf"
JSON: Final = "json"

# OTLP JSON writes these bytes fields as hex; protobuf's JSON parser expects base64.
_SPAN_IDS: Final = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_LINK_IDS: Final = ("traceId", "spanId", "trace_id", "span_id")
_SCALARS: Final = ("string_value", "bool_value", "int_value", "double_value")


class BadRequest(ValueError):
    """The body is not an OTLP ``ExportTraceServiceRequest``: answered with 400."""


@dataclass(frozen=True)
class Decoded:
    """What one request carried.

    Attributes:
        spans: the spans that carry a Bucket attribute (a user id, a company id or an event),
            as the SDK's ``ReadableSpan``; the others make no call and are left out.
        received: how many spans the request held in all.
    """

    spans: list[ReadableSpan]
    received: int


def decode_request(body: bytes, encoding: str) -> Decoded:
    """Decode one ``POST /v1/traces`` body.

    Args:
        body: the request body, already decompressed.
        encoding: ``PROTOBUF`` or ``JSON``.

    Raises:
        BadRequest: the body cannot be decoded; the message says why.
    """
    if encoding == JSON:
        request, received = _parse_json(body)
    else:
        request = _parse_protobuf(body)
        received = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    spans: list[ReadableSpan] = []
    for resource_spans in request.resource_spans:
        resource: Resource | None = None
        for scope_spans in resource_spans.scope_spans:
            scope: InstrumentationScope | None = None
            for otlp_span in scope_spans.spans:
                raw = {kv.key: kv.value for kv in otlp_span.attributes}
                if not is_relevant(raw):
                    continue
                if resource is None:  # built once per resource, and only when a span needs it
                    resource = Resource(_attributes(resource_spans.resource.attributes))
                if scope is None:
                    s = scope_spans.scope
                    scope = InstrumentationScope(s.name, s.version or None)
                spans.append(_readable(otlp_span, raw, resource, scope))
    return Decoded(spans, received)


def _parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as exc:
        raise BadRequest(f"not a protobuf ExportTraceServiceRequest: {exc}") from None
    return request


def _parse_json(body: bytes) -> tuple[ExportTraceServiceRequest, int]:
    """The request, and how many spans it held: protobuf's JSON parser is slow (about 10 times
    protobuf's), so spans without a Bucket attribute are counted and left out before it runs."""
    try:
        document = json.loads(body) if body else {}
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("not an OTLP JSON ExportTraceServiceRequest: expected an object")
    received = _prepare(document)
    request = ExportTraceServiceRequest()
    try:
        # Unknown fields are ignored, as OTLP asks of JSON receivers; lowerCamelCase names,
        # integer enums and int64 values written as strings are all protobuf's JSON mapping.
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, TypeError, ValueError) as exc:
        raise BadRequest(f"not an OTLP JSON ExportTraceServiceRequest: {exc}") from None
    return request, received


def _objects(value: object) -> Iterable[dict[str, Any]]:
    """The dicts in a JSON list; anything malformed is left for the protobuf parser to reject."""
    if isinstance(value, list):
        return (item for item in value if isinstance(item, dict))
    return ()


def _prepare(document: dict[str, Any]) -> int:
    """Count the spans, leave out those without a Bucket attribute, and turn the hex ids of the
    others into the base64 that protobuf's JSON parser expects; return the count."""
    received = 0
    for resource_spans in _objects(document.get("resourceSpans", document.get("resource_spans"))):
        scopes = resource_spans.get("scopeSpans", resource_spans.get("scope_spans"))
        for scope_spans in _objects(scopes):
            spans = scope_spans.get("spans")
            if not isinstance(spans, list):
                continue
            received += len(spans)
            kept = [span for span in spans if not isinstance(span, dict) or _relevant(span)]
            scope_spans["spans"] = kept
            for span in _objects(kept):
                _convert_ids(span, _SPAN_IDS)
                for link in _objects(span.get("links")):
                    _convert_ids(link, _LINK_IDS)
    return received


def _relevant(span: dict[str, Any]) -> bool:
    keys: dict[str, None] = {}
    for kv in _objects(span.get("attributes")):
        key = kv.get("key")
        if isinstance(key, str):
            keys[key] = None
    return is_relevant(keys)


def _convert_ids(holder: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = holder.get(key)
        if isinstance(value, str):
            try:
                holder[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                raise BadRequest(f"{key} is not a hex string: {value[:64]!r}") from None


def _scalar(value: AnyValue) -> str | bool | int | float | None:
    kind = value.WhichOneof("value")
    if kind in _SCALARS:
        scalar: str | bool | int | float = getattr(value, kind)
        return scalar
    return None  # bytes, kvlist, nested arrays, empty values: nothing the SDK holds


def _value(value: AnyValue) -> AttributeValue | None:
    if value.WhichOneof("value") == "array_value":
        items = (_scalar(item) for item in value.array_value.values)
        # The SDK holds sequences as tuples; mixed types stay mixed, and the mapping joins
        # them into one string as it does any sequence.
        return tuple(item for item in items if item is not None)
    return _scalar(value)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for kv in pairs:
        value = _value(kv.value)
        if value is not None:
            out[kv.key] = value
    return out


def _context(trace_id: bytes, span_id: bytes, flags: int) -> SpanContext | None:
    if len(trace_id) != 16 or len(span_id) != 8:
        return None
    return SpanContext(
        int.from_bytes(trace_id, "big"),
        int.from_bytes(span_id, "big"),
        is_remote=True,
        trace_flags=TraceFlags(flags & 0xFF),
    )


def _readable(
    span: OtlpSpan,
    raw: dict[str, AnyValue],
    resource: Resource,
    scope: InstrumentationScope,
) -> ReadableSpan:
    attributes: dict[str, AttributeValue] = {}
    for key, any_value in raw.items():
        value = _value(any_value)
        if value is not None:
            attributes[key] = value
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id, span.flags),
        parent=None,
        resource=resource,
        attributes=attributes,
        start_time=span.start_time_unix_nano or None,
        end_time=span.end_time_unix_nano or None,
        instrumentation_scope=scope,
    )
