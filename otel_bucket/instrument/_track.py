"""``track`` records one event now; ``set_event_attributes`` adds to the running feature's event.

Both share ``_event_span`` with ``feature``: a ``track`` span carries exactly what a feature span
with the same name and attributes would (identity, order, attribute limit, anonymous marker).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import get_current

from otel_bucket.instrument._event_span import (
    ACTIVE_SPAN,
    EventSpans,
    compose,
    parent_ids,
    prefixed,
)
from otel_bucket.instrument._identity import IDENTITY_KEY, IDENTITY_VAR, Identity
from otel_bucket.instrument._limits import attribute_limit, report_cut
from otel_bucket.instrument._runners import report_fault
from otel_bucket.instrument._values import coerce_attributes

__all__ = ["set_event_attributes", "track"]

_log = logging.getLogger("otel_bucket")

_global = EventSpans("track", {}, None)  # the tracer of the global provider, cached
_by_provider: weakref.WeakKeyDictionary[trace.TracerProvider, EventSpans] = (
    weakref.WeakKeyDictionary()
)
_said_outside = False


def _check_event(event: object) -> str:
    if not isinstance(event, str):
        raise TypeError(f"event must be a string, got {type(event).__name__}")
    if not event.strip():
        raise ValueError("event must not be empty")
    return event


def track(
    event: str,
    attributes: Mapping[str, object] | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
) -> None:
    """Record one use of ``event`` now, for the user and company in effect.

    Starts and ends one short span named ``event``, a child of the current span, carrying what a
    ``@feature(event, attributes=...)`` call would: ``bucket.event``, ``bucket.attributes.*``
    and the identity in effect. For an event that is a branch of a function rather than a whole
    function (``if sent: track("Sent message", {"channel": "email"})``).

    Args:
        event: the event name.
        attributes: the event's attributes (values made sendable as for ``feature``).
        tracer_provider: the provider to use; default the global one, looked up now.

    Raises:
        TypeError: ``event`` is not a string, ``attributes`` not a mapping with string keys, or
            ``tracer_provider`` not a TracerProvider.
        ValueError: ``event`` or an attribute key is empty.
    """
    name = _check_event(event)
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise TypeError(
            f"tracer_provider must be a TracerProvider, got {type(tracer_provider).__name__}"
        )
    event_attributes = prefixed(coerce_attributes(attributes, argument="attributes"))
    try:
        spans = _global if tracer_provider is None else _spans_of(tracer_provider)
        _, tracer, limit = spans.tracing()
        assert tracer is not None
        ctx = get_current()
        identity = ctx.get(IDENTITY_KEY) or IDENTITY_VAR.get()
        if isinstance(identity, Identity):
            attrs = compose(name, event_attributes, identity.details, identity.ids, limit)
        else:
            attrs = compose(name, event_attributes, {}, parent_ids(ctx), limit)
        tracer.start_span(name, ctx, attributes=attrs).end()
    except Exception:
        report_fault()


def _spans_of(provider: trace.TracerProvider) -> EventSpans:
    spans = _by_provider.get(provider)
    if spans is None:
        spans = _by_provider.setdefault(provider, EventSpans("track", {}, provider))
    return spans


def set_event_attributes(attributes: Mapping[str, object]) -> None:
    """Add attributes to the event of the feature call running now.

    Inside a ``@feature`` function (or anything it calls, in the same context) this adds
    ``bucket.attributes.<k>`` to that call's span, values made sendable as for ``feature``:
    per-call data such as ``set_event_attributes({"rows": len(rows)})``. An attribute is only
    added into a free slot of the span's attribute limit, never by evicting another (a warning
    says what was left out). Outside any feature call it does nothing (said once, at debug).

    Raises:
        TypeError: ``attributes`` is not a mapping, or a key is not a string.
        ValueError: a key is empty.
    """
    global _said_outside
    wanted = prefixed(coerce_attributes(attributes, argument="attributes"))
    span = ACTIVE_SPAN.get()
    if span is None:
        if not _said_outside:
            _said_outside = True
            _log.debug("otel-bucket: set_event_attributes() outside a feature call does nothing")
        return
    try:
        if not wanted or not span.is_recording():
            return
        limit = attribute_limit(span)
        held = getattr(span, "attributes", None)
        if limit is not None and isinstance(held, Mapping) and len(held) + len(wanted) > limit:
            free = limit - len(held)
            chosen = {}
            for key, value in wanted.items():
                if key in held:
                    chosen[key] = value
                elif free > 0:
                    chosen[key] = value
                    free -= 1
            report_cut(f"event {getattr(span, 'name', '?')!r}", len(wanted) - len(chosen), limit)
            wanted = chosen
        span.set_attributes(wanted)
    except Exception:
        report_fault()
