"""What an event span carries and the tracer that starts it: shared by ``feature`` and ``track``.

This runs on the application's hot path, so the per-call work is kept to what a hand-written
``tracer.start_as_current_span`` would do anyway: the tracer (and its attribute limit) is cached
per provider, and the span's attributes are merged with the identity, ordered and fitted to the
limit once per identity, not per call.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Final, cast

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach, get_current
from opentelemetry.util.types import AttributeValue

from otel_bucket.ground._conventions import (
    BUCKET_ANONYMOUS,
    BUCKET_ATTRIBUTES_PREFIX,
    BUCKET_COMPANY_ID,
    BUCKET_EVENT,
    ENDUSER_ID,
    USER_ID,
)
from otel_bucket.ground._version import tracer_version
from otel_bucket.instrument._identity import IDENTITY_KEY, IDENTITY_VAR, Identity
from otel_bucket.instrument._limits import attribute_limit, keep_last, report_cut
from otel_bucket.instrument._runners import record_failure

__all__ = [
    "ACTIVE_SPAN",
    "TRACER_NAME",
    "EventSpans",
    "PreparedSpan",
    "compose",
    "forget_tracers",
    "parent_ids",
    "prefixed",
]

TRACER_NAME: Final = "otel_bucket"
_PARENT_KEYS: Final = (ENDUSER_ID, USER_ID, BUCKET_COMPANY_ID)
_NO_ATTRIBUTES: Final[Mapping[str, AttributeValue]] = {}

ACTIVE_SPAN: ContextVar[trace.Span | None] = ContextVar("otel_bucket_feature_span", default=None)
"""The span of the innermost feature call running here (``set_event_attributes`` adds to it)."""

_registry: weakref.WeakSet[EventSpans] = weakref.WeakSet()
_registry_lock = threading.Lock()

_get_tracer_provider = trace.get_tracer_provider

# (provider, tracer, attribute limit): one tuple, so threads never see a mismatched set
_Tracing = tuple[object, trace.Tracer | None, int | None]
_UNSET: Final[_Tracing] = (None, None, None)


def forget_tracers() -> None:
    """Make every feature look its tracer up again (``install`` calls this)."""
    with _registry_lock:
        states = list(_registry)
    for state in states:
        state.cache = _UNSET


def prefixed(attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    """Event attributes as span attributes: ``bucket.attributes.<k>``."""
    return {BUCKET_ATTRIBUTES_PREFIX + key: value for key, value in attributes.items()}


def compose(
    event: str,
    event_attributes: Mapping[str, AttributeValue],
    details: Mapping[str, AttributeValue],
    ids: Mapping[str, AttributeValue],
    limit: int | None,
) -> dict[str, AttributeValue]:
    """An event span's attributes, least important first, fitted to the attribute limit.

    The SDK evicts the oldest attributes of a full span, so the order is: company and user
    attributes, event attributes, the ids, then ``bucket.event`` last. Without a user id the span
    is marked ``bucket.anonymous``. What does not fit is cut from the front, with a warning.
    """
    attributes = {**details, **event_attributes, **ids}
    if ENDUSER_ID not in ids and USER_ID not in ids:
        attributes[BUCKET_ANONYMOUS] = True
    attributes[BUCKET_EVENT] = event
    fitted, cut = keep_last(attributes, limit)
    if cut and limit is not None:
        report_cut(f"the spans of event {event!r}", cut, limit)
    return fitted


def parent_ids(ctx: Context) -> Mapping[str, AttributeValue]:
    """The user and company ids of the current span, when it is recording and readable."""
    parent = trace.get_current_span(ctx)
    if not parent.is_recording():
        return _NO_ATTRIBUTES
    seen = getattr(parent, "attributes", None)  # SDK spans expose theirs; others may not
    if not seen:
        return _NO_ATTRIBUTES
    return {key: seen[key] for key in _PARENT_KEYS if key in seen}


class EventSpans:
    """The spans of one event: its attributes, its tracer cached per provider, and its
    attributes merged with the identity in effect (cached for the last identity seen)."""

    __slots__ = ("__weakref__", "alone", "attributes", "cache", "merged", "name", "provider")

    def __init__(
        self,
        name: str,
        attributes: dict[str, AttributeValue],
        provider: trace.TracerProvider | None,
    ) -> None:
        self.name = name
        self.attributes = attributes  # already prefixed
        self.provider = provider
        self.cache: _Tracing = _UNSET
        self.alone: tuple[object, dict[str, AttributeValue]] = (None, {})
        self.merged: tuple[object, object, dict[str, AttributeValue]] = (None, None, {})
        with _registry_lock:
            _registry.add(self)

    def tracing(self) -> _Tracing:
        """(provider, tracer, attribute limit) for the provider in effect now."""
        provider = self.provider
        if provider is None:
            provider = _get_tracer_provider()
        cache = self.cache
        if cache[0] is not provider:
            tracer = provider.get_tracer(TRACER_NAME, tracer_version())
            cache = self.cache = (provider, tracer, attribute_limit(tracer))
        return cache

    def prepare(self) -> tuple[trace.Tracer, dict[str, AttributeValue], Context]:
        """The tracer, the span's attributes and its parent context, as of now."""
        ctx = get_current()
        cache = self.tracing()
        identity = ctx.get(IDENTITY_KEY) or IDENTITY_VAR.get()
        if identity is None:
            return cache[1], self._without_identity(ctx, cache), ctx  # type: ignore[return-value]
        merged = self.merged
        if merged[0] is not identity or merged[1] is not cache:
            who: Identity = identity  # type: ignore[assignment]
            attributes = compose(self.name, self.attributes, who.details, who.ids, cache[2])
            merged = self.merged = (identity, cache, attributes)
        return cache[1], merged[2], ctx  # type: ignore[return-value]

    def _without_identity(self, ctx: Context, cache: _Tracing) -> dict[str, AttributeValue]:
        ids = parent_ids(ctx)
        if ids:
            return compose(self.name, self.attributes, _NO_ATTRIBUTES, ids, cache[2])
        alone = self.alone
        if alone[0] is not cache:
            attributes = compose(self.name, self.attributes, _NO_ATTRIBUTES, ids, cache[2])
            alone = self.alone = (cache, attributes)
        return alone[1]

    def later(self) -> PreparedSpan:
        """This call's span, prepared now (parent, identity) and started when first run."""
        return PreparedSpan(self.name, *self.prepare())


class PreparedSpan:
    """A span whose parent and attributes were taken at the call, started when the body runs.

    A generator or coroutine may run elsewhere than where it was called, e.g. a streaming
    response iterated after its request handler (and its ``identify`` block) returned. This is
    the ``Scope`` the runners drive: the span is current (and the active feature span) during
    each step of the body only.
    """

    __slots__ = ("attributes", "ctx", "name", "span", "tracer")

    def __init__(
        self, name: str, tracer: trace.Tracer, attributes: dict[str, AttributeValue], ctx: Context
    ) -> None:
        self.name = name
        self.tracer = tracer
        self.attributes = attributes
        self.ctx = ctx
        self.span: trace.Span | None = None

    def start(self) -> None:
        self.span = self.tracer.start_span(self.name, self.ctx, attributes=self.attributes)

    def enter(self) -> object:
        span = self.span
        if span is None:
            return None
        return attach(trace.set_span_in_context(span)), ACTIVE_SPAN.set(span)

    def leave(self, token: object) -> None:
        otel, active = cast("tuple[Token[Context], Token[trace.Span | None]]", token)
        ACTIVE_SPAN.reset(active)
        detach(otel)

    def fail(self, exc: BaseException) -> None:
        if self.span is not None:
            record_failure(self.span, exc)

    def end(self) -> None:
        if self.span is not None:
            self.span.end()
