"""A walk over the protobuf wire format of an OTLP trace request that parses nothing.

protobuf's parser builds a whole message at once, and a small body can hold a great many small
messages: 16 MiB of two-byte empty spans is eight million of them, over a gigabyte once parsed.
So the bridge first walks the three outer levels of the request here (request, ``ResourceSpans``,
``ScopeSpans``), finding each scope and span as a slice of the body and counting the spans as it
goes: a request with too many is refused before anything is parsed, and the spans
are then parsed one at a time. A slice that is large (``COUNT_ABOVE``) has the messages nested in
it counted before it is parsed, against a budget for the whole request, since one large span can
hold millions of attributes too.

Only the framing is checked here; protobuf's own parser judges the content of each slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["COUNT_ABOVE", "Budget", "Scope", "Slice", "TooMany", "WireError", "outline"]

COUNT_ABOVE: Final = 64 * 1024
"""Bytes above which a slice has its nested messages counted before it is parsed."""

# Field numbers of opentelemetry/proto/trace/v1/trace.proto and trace_service.proto.
_RESOURCE_SPANS: Final = 1  # ExportTraceServiceRequest.resource_spans
_SCOPE_SPANS: Final = 2  # ResourceSpans.scope_spans
_SCOPE: Final = 1  # ScopeSpans.scope
_SPANS: Final = 2  # ScopeSpans.spans
_LEN: Final = 2  # the wire type of messages, strings and bytes


class WireError(ValueError):
    """The body is not framed as protobuf."""


class TooMany(ValueError):
    """A limit on spans or values was passed (the message says which)."""


Slice = tuple[int, int]  # start and end of a field's value in the body


@dataclass
class Scope:
    """One ``ScopeSpans``: its scope (in pieces, merged as protobuf does) and its spans."""

    scope: list[Slice] = field(default_factory=list)
    spans: list[Slice] = field(default_factory=list)


def _fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end of the value) of each field in ``data[pos:end]``."""
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = _varint(data, pos - 1, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == _LEN:
            length = data[pos] if pos < end else 0x80
            pos += 1
            if length >= 0x80:
                length, pos = _varint(data, pos - 1, end)
            start, pos = pos, pos + length
        elif wire == 0:
            start = pos
            _, pos = _varint(data, pos, end)
        elif wire == 1:
            start, pos = pos, pos + 8
        elif wire == 5:
            start, pos = pos, pos + 4
        else:
            raise WireError(f"wire type {wire}")  # groups, never used by OTLP
        if pos > end:
            raise WireError("truncated field")
        yield number, wire, start, pos


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise WireError("truncated or overlong varint")


def outline(body: bytes, max_spans: int) -> tuple[list[Scope], int]:
    """The request's scopes and spans as slices of ``body``, and the span count. (Resources are
    skipped: the bridge does not read them.)

    Raises:
        WireError: the framing is broken.
        TooMany: more than ``max_spans`` spans (found before the rest is walked).
    """
    scopes: list[Scope] = []
    count = 0
    for number, wire, start, end in _fields(body, 0, len(body)):
        if number != _RESOURCE_SPANS or wire != _LEN:
            continue  # an unknown field, as protobuf skips it
        for number, wire, r_start, r_end in _fields(body, start, end):
            if number != _SCOPE_SPANS or wire != _LEN:
                continue  # the resource, or an unknown field
            scope = Scope()
            scopes.append(scope)
            for number, wire, s_start, s_end in _fields(body, r_start, r_end):
                if wire != _LEN:
                    continue
                if number == _SPANS:
                    count += 1
                    if count > max_spans:
                        raise TooMany(f"the request holds more than {max_spans} spans")
                    scope.spans.append((s_start, s_end))
                elif number == _SCOPE:
                    scope.scope.append((s_start, s_end))
    return scopes, count


class Budget:
    """How many messages of some kind one request may hold: `check` counts those nested in its
    large slices before they are parsed; `spend` takes any other count (attributes looked at)."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.left = limit
        self._what = what

    def spend(self, count: int) -> None:
        """Take ``count`` from the budget; `TooMany` when it is spent."""
        self.left -= count
        if self.left < 0:
            raise TooMany(f"the request holds more than {self.limit} {self._what}")

    def check(self, body: bytes, where: Slice, descriptor: Descriptor) -> None:
        """Count the messages nested in a large slice before it is parsed.

        Raises:
            WireError: the framing inside the slice is broken.
            TooMany: the request's large slices hold more than ``limit`` messages in all.
        """
        if where[1] - where[0] <= COUNT_ABOVE:
            return
        stack = [(where[0], where[1], descriptor)]
        while stack:
            start, end, message = stack.pop()
            nested = _message_fields(message)
            for number, wire, f_start, f_end in _fields(body, start, end):
                sub = nested.get(number) if wire == _LEN else None
                if sub is not None:
                    self.spend(1)
                    stack.append((f_start, f_end, sub))


_NESTED: dict[str, dict[int, Descriptor]] = {}


def _message_fields(message: Descriptor) -> dict[int, Descriptor]:
    """The fields of ``message`` that hold messages, by number."""
    nested = _NESTED.get(message.full_name)
    if nested is None:
        nested = {
            f.number: f.message_type
            for f in message.fields
            if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type is not None
        }
        _NESTED[message.full_name] = nested
    return nested
