"""OTLP span messages into the SDK's ``ReadableSpan``, keeping what the mapping reads.

Attribute values are converted as the Python SDK holds them: string, bool, int and double as
they are (an int64 that OTLP JSON sends as a string becomes an int), an array as a tuple of its
scalar elements. What the SDK cannot hold is dropped: ``kvlist`` values, ``bytes`` values, empty
values, and arrays nested in arrays or lists in arrays.

Of a span's attributes only those the mapping reads are kept (``bucket.*``, ``enduser.id`` and
``user.id``): a span waits in the bridge's queue and the exporter's backlog, and an HTTP span's
dozens of other attributes would only take memory there. The values kept are counted against a
budget per request (`Values`), so that the memory a request takes does not depend on how well
its body compresses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.util.types import AttributeValue

from otel_bucket.bridge._wire import TooMany
from otel_bucket.ground._conventions import ENDUSER_ID, USER_ID
from otel_bucket.instrument._sampling import is_relevant

__all__ = ["Values", "bucket_attributes", "readable"]

_SCALARS: Final = ("string_value", "bool_value", "int_value", "double_value")
_PREFIX: Final = "bucket."
_IDS: Final = frozenset((ENDUSER_ID, USER_ID))
_NO_RESOURCE: Final = Resource.get_empty()  # resources are not read (see _decode)


class Values:
    """How many attribute values (an array counts each element) one request may keep."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = 0

    def take(self, count: int) -> None:
        self.kept += count
        if self.kept > self.limit:
            raise TooMany(f"the request holds more than {self.limit} attribute values for Bucket")


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


def _converted(
    items: Iterable[tuple[str, AnyValue]], values: Values, *, only_bucket: bool = False
) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    count = 0
    for key, any_value in items:
        if only_bucket and not (key.startswith(_PREFIX) or key in _IDS):
            continue
        value = _value(any_value)
        if value is not None:
            count += 1 + len(value) if isinstance(value, tuple) else 1
            out[key] = value
    values.take(count)
    return out


def bucket_attributes(span: OtlpSpan) -> dict[str, AnyValue] | None:
    """The span's attributes (not converted yet), or None when they make no call."""
    raw = {kv.key: kv.value for kv in span.attributes}
    return raw if is_relevant(raw) else None


def _context(trace_id: bytes, span_id: bytes, flags: int) -> SpanContext | None:
    if len(trace_id) != 16 or len(span_id) != 8:
        return None
    return SpanContext(
        int.from_bytes(trace_id, "big"),
        int.from_bytes(span_id, "big"),
        is_remote=True,
        trace_flags=TraceFlags(flags & 0xFF),
    )


def readable(
    span: OtlpSpan, raw: dict[str, AnyValue], scope: InstrumentationScope, values: Values
) -> ReadableSpan:
    """The SDK span for ``span``, with those of the attributes ``raw`` (see `bucket_attributes`)
    that the mapping reads."""
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id, span.flags),
        parent=None,
        resource=_NO_RESOURCE,
        attributes=_converted(raw.items(), values, only_bucket=True),
        start_time=span.start_time_unix_nano or None,
        end_time=span.end_time_unix_nano or None,
        instrumentation_scope=scope,
    )
