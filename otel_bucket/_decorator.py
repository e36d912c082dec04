"""``feature``: one span per call of a decorated function, carrying ``bucket.event`` (section 5).

This runs on the application's hot path, so the per-call work is kept to what a hand-written
``tracer.start_as_current_span`` would do anyway: the tracer is cached per provider, the span's
attributes are passed at start in one dict (merged once per identity, not per call), and the span
is made current with a plain ``attach`` instead of two nested context managers.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Final, ParamSpec, Protocol, TypeVar, cast, overload

import wrapt
from opentelemetry import trace
from opentelemetry.context import Context, attach, detach, get_current
from opentelemetry.util.types import AttributeValue

from otel_bucket._conventions import (
    BUCKET_ATTRIBUTES_PREFIX,
    BUCKET_COMPANY_ID,
    BUCKET_EVENT,
    ENDUSER_ID,
    USER_ID,
)
from otel_bucket._identity import IDENTITY_KEY
from otel_bucket._runners import (
    record_failure,
    report_fault,
    run_async,
    run_async_generator,
    run_generator,
)
from otel_bucket._values import coerce_attributes

__all__ = [
    "TRACER_NAME",
    "FeatureDecorator",
    "FeatureState",
    "PreparedSpan",
    "feature",
    "forget_tracers",
    "tracer_version",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

TRACER_NAME: Final = "otel_bucket"
_PARENT_KEYS: Final = (ENDUSER_ID, USER_ID, BUCKET_COMPANY_ID)
_features: weakref.WeakSet[FeatureState] = weakref.WeakSet()
_features_lock = threading.Lock()

_get_tracer_provider = trace.get_tracer_provider
_set_span_in_context = trace.set_span_in_context


def forget_tracers() -> None:
    """Make every feature look its tracer up again (``install`` calls this)."""
    with _features_lock:
        states = list(_features)
    for state in states:
        state.cache = (None, None)


def tracer_version() -> str:
    """The version our tracer reports: the package's."""
    from otel_bucket import __version__

    return __version__


class FeatureState:
    """What one decorated function stamps on its spans, and its tracer cached per provider."""

    __slots__ = ("__weakref__", "attributes", "cache", "merged", "name", "provider")

    def __init__(
        self,
        name: str,
        attributes: dict[str, AttributeValue],
        provider: trace.TracerProvider | None,
    ) -> None:
        self.name = name
        self.attributes = attributes
        self.provider = provider
        self.cache: tuple[object, trace.Tracer | None] = (None, None)
        self.merged: tuple[object, dict[str, AttributeValue]] = (None, attributes)
        with _features_lock:
            _features.add(self)

    def prepare(self) -> tuple[trace.Tracer, dict[str, AttributeValue], Context]:
        """The tracer, the span's attributes and its parent context, as of now."""
        ctx = get_current()
        provider = self.provider
        if provider is None:
            provider = _get_tracer_provider()
        cache = self.cache
        tracer = cache[1]
        if cache[0] is not provider or tracer is None:
            tracer = provider.get_tracer(TRACER_NAME, tracer_version())
            self.cache = (provider, tracer)
        identity = ctx.get(IDENTITY_KEY)
        if identity is None:
            return tracer, self._with_parent_ids(ctx), ctx
        merged = self.merged  # one tuple, so threads never see a mismatched pair
        if merged[0] is not identity:
            merged = (identity, {**self.attributes, **identity.span_attributes})  # type: ignore[attr-defined]
            self.merged = merged
        return tracer, merged[1], ctx

    def _with_parent_ids(self, ctx: Context) -> dict[str, AttributeValue]:
        parent = trace.get_current_span(ctx)
        if not parent.is_recording():
            return self.attributes
        seen = getattr(parent, "attributes", None)  # SDK spans expose theirs; others may not
        if not seen:
            return self.attributes
        ids = {key: seen[key] for key in _PARENT_KEYS if key in seen}
        return {**self.attributes, **ids} if ids else self.attributes

    def later(self) -> PreparedSpan:
        """This call's span, prepared now (parent, identity) and started when first run."""
        return PreparedSpan(self.name, *self.prepare())


class PreparedSpan:
    """A span whose parent and attributes were taken at the call, started when the body runs.

    A generator or coroutine may run elsewhere than where it was called, e.g. a streaming
    response iterated after its request handler (and its ``identify`` block) returned.
    """

    __slots__ = ("attributes", "ctx", "name", "tracer")

    def __init__(
        self, name: str, tracer: trace.Tracer, attributes: dict[str, AttributeValue], ctx: Context
    ) -> None:
        self.name = name
        self.tracer = tracer
        self.attributes = attributes
        self.ctx = ctx

    def start(self) -> trace.Span:
        """Start (but do not make current) the span."""
        return self.tracer.start_span(self.name, self.ctx, attributes=self.attributes)


def _sync_wrapper(state: FeatureState) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            tracer, attributes, ctx = state.prepare()
            span = tracer.start_span(state.name, ctx, attributes=attributes)
            token = attach(_set_span_in_context(span, ctx))
        except Exception:
            report_fault()
            return wrapped(*args, **kwargs)
        try:
            return wrapped(*args, **kwargs)
        except Exception as exc:
            record_failure(span, exc)
            raise
        finally:
            try:
                detach(token)
                span.end()
            except Exception:
                report_fault()

    return wrapper


def _deferred_wrapper(state: FeatureState, runner: Callable[..., Any]) -> Callable[..., Any]:
    # Calling the function creates the coroutine or generator (so bad arguments fail at the
    # call, as without the decorator); the span starts when it first runs.
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        body = wrapped(*args, **kwargs)
        try:
            prepared = state.later()
        except Exception:
            report_fault()
            return body
        return runner(prepared, body)

    return wrapper


def _decorate(
    func: Any,
    event: str | None,
    attributes: Mapping[str, object] | None,
    provider: trace.TracerProvider | None,
) -> Any:
    if not callable(func) and not isinstance(func, classmethod | staticmethod):
        raise TypeError(f"feature must decorate a function, got {type(func).__name__}")
    target = func.__func__ if isinstance(func, classmethod | staticmethod) else func
    if event is None:
        event = getattr(target, "__name__", None)
        if not isinstance(event, str) or not event:
            raise TypeError("feature needs an event name for a callable without __name__")
    static: dict[str, AttributeValue] = {BUCKET_EVENT: event}
    for key, value in coerce_attributes(attributes, argument="attributes").items():
        static[BUCKET_ATTRIBUTES_PREFIX + key] = value
    state = FeatureState(event, static, provider)
    if inspect.isasyncgenfunction(target):
        wrapper = _deferred_wrapper(state, run_async_generator)
    elif inspect.iscoroutinefunction(target):
        wrapper = _deferred_wrapper(state, run_async)
    elif inspect.isgeneratorfunction(target):
        wrapper = _deferred_wrapper(state, run_generator)
    else:
        wrapper = _sync_wrapper(state)
    return wrapt.FunctionWrapper(func, wrapper)


class FeatureDecorator(Protocol):
    """What ``feature("Name", ...)`` returns: a decorator that keeps the function's type."""

    @overload
    def __call__(self, func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
    @overload
    def __call__(self, func: staticmethod[P, R], /) -> staticmethod[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def feature(event: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...
@overload
def feature(event: staticmethod[P, R], /) -> staticmethod[P, R]: ...
@overload
def feature(event: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def feature(
    event: str | None = None,
    /,
    *,
    attributes: Mapping[str, object] | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> FeatureDecorator: ...


def feature(
    event: Any = None,
    /,
    *,
    attributes: Mapping[str, object] | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Any:
    """Mark a function as a feature: each call starts a span that becomes a Bucket event.

    Usable as ``@feature`` (the event is the function's ``__name__``) and as
    ``@feature("Name", attributes={...})``. The span is a child of the current span and carries
    ``bucket.event``, ``bucket.attributes.*`` and the user and company in effect. Exceptions are
    recorded on the span and re-raised unchanged.

    Args:
        event: the event name, or the function when used bare as ``@feature``.
        attributes: the event's attributes (values made sendable, never raised).
        tracer_provider: the provider to use; default the global one, looked up lazily.

    Raises:
        TypeError: ``event`` is neither a string nor a function, ``attributes`` is not a
            mapping, or ``tracer_provider`` is not a TracerProvider.
        ValueError: ``event`` or an attribute key is empty.
    """
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise TypeError(
            f"tracer_provider must be a TracerProvider, got {type(tracer_provider).__name__}"
        )
    if event is not None and not isinstance(event, str):
        if callable(event) or isinstance(event, classmethod | staticmethod):
            return _decorate(event, None, attributes, tracer_provider)
        raise TypeError(f"event must be a string, got {type(event).__name__}")
    if event is not None and not event.strip():
        raise ValueError("event must not be empty")
    coerce_attributes(attributes, argument="attributes")  # fail at the call, not later

    def decorator(func: Any) -> Any:
        return _decorate(func, event, attributes, tracer_provider)

    return cast(FeatureDecorator, decorator)
