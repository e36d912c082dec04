"""``feature``: one span per call of a decorated function, carrying ``bucket.event`` (section 5).

What the span carries, and the tracer that starts it, are ``_event_span``'s; this module picks
the wrapper for the kind of function at decoration time. The sync wrapper is the hot path: it
makes the span current with a plain ``attach`` instead of two nested context managers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

import wrapt
from opentelemetry import trace
from opentelemetry.context import attach, detach

from otel_bucket.instrument._event_span import (
    ACTIVE_SPAN,
    TRACER_NAME,
    EventSpans,
    PreparedSpan,
    forget_tracers,
    prefixed,
)
from otel_bucket.instrument._runners import (
    record_failure,
    report_fault,
    run_async,
    run_async_generator,
    run_generator,
)
from otel_bucket.instrument._values import coerce_attributes

__all__ = [
    "TRACER_NAME",
    "FeatureDecorator",
    "PreparedSpan",
    "feature",
    "forget_tracers",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_set_span_in_context = trace.set_span_in_context
_activate = ACTIVE_SPAN.set
_deactivate = ACTIVE_SPAN.reset


def _sync_wrapper(state: EventSpans) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            tracer, attributes, ctx = state.prepare()
            span = tracer.start_span(state.name, ctx, attributes=attributes)
            token = attach(_set_span_in_context(span, ctx))
            active = _activate(span)
        except Exception:
            report_fault()
            return wrapped(*args, **kwargs)
        try:
            return wrapped(*args, **kwargs)
        except BaseException as exc:  # KeyboardInterrupt and SystemExit(1) end a call too
            record_failure(span, exc)
            raise
        finally:
            try:
                _deactivate(active)
                detach(token)
                span.end()
            except Exception:
                report_fault()

    return wrapper


def _deferred_wrapper(state: EventSpans, runner: Callable[..., Any]) -> Callable[..., Any]:
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
    static = prefixed(coerce_attributes(attributes, argument="attributes"))
    state = EventSpans(event, static, provider)
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
