"""OTLP trace requests (binary protobuf or OTLP JSON) decoded into the SDK's ``ReadableSpan``.

The bridge hands these spans to ``BucketSpanExporter`` itself, so a span that arrives over OTLP
becomes exactly the calls it would make in a Python process. Decoding is done by the OTLP
protobuf definitions (``opentelemetry-proto``) and protobuf's own JSON parser.

What one request may cost is bounded before the costly part runs, whatever its compression ratio
(`Limits`): protobuf is walked without being parsed first (``_wire``), so that the spans are
counted, then parsed one at a time, and only those that may carry a Bucket attribute; JSON has
its values counted (``{``, ``[`` and ``,``, at the speed of ``bytes.count``) before ``json.loads``
builds them. Past a limit the request is refused whole (`TooMany`, answered with 413).

Resources are not read: the mapping never looks at them, and a resource's attributes are as
many as a request cares to send. The spans carry an empty resource.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope as OtlpScope
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_bucket.bridge._convert import Values, bucket_attributes, readable
from otel_bucket.bridge._wire import Budget, Slice, TooMany, WireError, outline
from otel_bucket.instrument._sampling import is_relevant

__all__ = [
    "JSON",
    "PROTOBUF",
    "VALUES_PER_SPAN",
    "BadRequest",
    "Decoded",
    "Limits",
    "TooMany",
    "decode_request",
]

PROTOBUF: Final = "protobuf"
JSON: Final = "json"
VALUES_PER_SPAN: Final = 16  # attribute values kept for Bucket per span, on average

# OTLP JSON writes these bytes fields as hex; protobuf's JSON parser expects base64.
_SPAN_IDS: Final = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_LINK_IDS: Final = ("traceId", "spanId", "trace_id", "span_id")


class BadRequest(ValueError):
    """The body is not an OTLP ``ExportTraceServiceRequest``: answered with 400."""


@dataclass(frozen=True)
class Limits:
    """What one request may hold (past it: `TooMany`, answered with 413).

    Attributes:
        max_spans: spans in all, with a Bucket attribute or not.
    """

    max_spans: int = 16_384

    @property
    def max_values(self) -> int:
        """Attribute values kept for Bucket (an array counts each element): 16 per span."""
        return VALUES_PER_SPAN * self.max_spans

    @property
    def max_nested(self) -> int:
        """Messages nested in the request's large spans, resources and scopes (``COUNT_ABOVE``
        bytes), counted before they are parsed: 4 per span."""
        return 4 * self.max_spans

    @property
    def max_attributes(self) -> int:
        """Attributes of the spans (and their resources) that are parsed: 128 per span, the
        SDKs' default limit per span."""
        return 128 * self.max_spans

    @property
    def max_json_values(self) -> int:
        """JSON values (objects, arrays and commas counted) in an OTLP JSON request."""
        return 32 * self.max_spans


@dataclass(frozen=True)
class Decoded:
    """What one request carried.

    Attributes:
        spans: the spans that carry a Bucket attribute (a user id, a company id or an event),
            as the SDK's ``ReadableSpan``; the others make no call and are left out.
        received: how many spans the request held in all.
        values: the attribute values the spans keep (see `Limits.max_values`).
    """

    spans: list[ReadableSpan]
    received: int
    values: int = 0


# A scope and its spans; the scope is built lazily, only when one of its spans carries a Bucket
# attribute.
_ScopeGroup = tuple[Callable[[], OtlpScope], Iterable[OtlpSpan]]


def decode_request(body: bytes, encoding: str, limits: Limits | None = None) -> Decoded:
    """Decode one ``POST /v1/traces`` body.

    Args:
        body: the request body, already decompressed.
        encoding: ``PROTOBUF`` or ``JSON``.
        limits: what the request may hold; the defaults when not given.

    Raises:
        BadRequest: the body cannot be decoded; the message says why.
        TooMany: the body holds more than ``limits`` allow; the message says what.
    """
    limits = limits or Limits()
    values = Values(limits.max_values)
    looked = Budget(limits.max_attributes, "attributes")
    if encoding == JSON:
        request, received = _parse_json(body, limits)
        groups: Iterable[_ScopeGroup] = (
            (functools.partial(getattr, scope_spans, "scope"), scope_spans.spans)
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
        )
        return Decoded(_collect(groups, values, looked), received, values.kept)
    try:
        scopes, received = outline(body, limits.max_spans)
        nested = Budget(limits.max_nested, "values in its large spans")
        groups = (
            (
                functools.partial(_merged, body, scope.scope, nested),
                _candidates(body, scope.spans, nested),
            )
            for scope in scopes
        )
        return Decoded(_collect(groups, values, looked), received, values.kept)
    except WireError as exc:
        raise BadRequest(f"not a protobuf ExportTraceServiceRequest: {exc}") from None


def _collect(groups: Iterable[_ScopeGroup], values: Values, looked: Budget) -> list[ReadableSpan]:
    spans: list[ReadableSpan] = []
    for get_scope, otlp_spans in groups:
        scope: InstrumentationScope | None = None
        for otlp_span in otlp_spans:
            looked.spend(len(otlp_span.attributes))
            raw = bucket_attributes(otlp_span)
            if raw is None:
                continue
            if scope is None:  # built once per scope, and only when a span needs it
                s = get_scope()
                scope = InstrumentationScope(s.name, s.version or None)
            spans.append(readable(otlp_span, raw, scope, values))
    return spans


def _candidates(body: bytes, slices: list[Slice], nested: Budget) -> Iterator[OtlpSpan]:
    """The spans that may carry a Bucket attribute, parsed one at a time. A span whose bytes
    hold none of the keys that make a call cannot, and is not parsed at all."""
    for where in slices:
        data = body[where[0] : where[1]]
        if b"user.id" in data or b"bucket.event" in data or b"bucket.company.id" in data:
            nested.check(body, where, OtlpSpan.DESCRIPTOR)
            yield _parse(OtlpSpan(), data)


def _merged(body: bytes, pieces: list[Slice], nested: Budget) -> OtlpScope:
    """A scope from its pieces, merged as protobuf merges a message field sent twice."""
    scope = OtlpScope()
    for where in pieces:
        nested.check(body, where, OtlpScope.DESCRIPTOR)
        _parse(scope, body[where[0] : where[1]])
    return scope


def _parse(message: Message, data: bytes) -> Any:
    try:
        message.MergeFromString(data)
    except (DecodeError, RecursionError) as exc:
        raise BadRequest(f"not a protobuf ExportTraceServiceRequest: {exc}") from None
    return message


def _parse_json(body: bytes, limits: Limits) -> tuple[ExportTraceServiceRequest, int]:
    """The request, and how many spans it held: protobuf's JSON parser is slow (about 10 times
    protobuf's), so spans without a Bucket attribute are counted and left out before it runs."""
    if body.count(b"{") + body.count(b"[") + body.count(b",") > limits.max_json_values:
        raise TooMany(f"the JSON request holds more than {limits.max_json_values} values")
    try:
        document = json.loads(body) if body else {}
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("not an OTLP JSON ExportTraceServiceRequest: expected an object")
    received = _prepare(document)
    if received > limits.max_spans:
        raise TooMany(f"the request holds more than {limits.max_spans} spans")
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
