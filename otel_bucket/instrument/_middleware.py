"""What the framework integrations share: calling a resolver safely, and keeping the identity in
effect where a framework runs application code after the middleware returned (response bodies).

A resolver is the application's code, but analytics must never take a request down: a resolver
that raises or returns something ``identify`` refuses is logged (at most once a minute, with the
traceback) and the request runs unidentified.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from otel_bucket.ground._throttle import Throttle
from otel_bucket.instrument._identity import (
    Identity,
    _Identified,
    enter_identity,
    identify,
    leave_identity,
    stamp_current,
)

__all__ = [
    "block_for",
    "call_resolver",
    "check_resolver",
    "identified_aiter",
    "identified_iter",
    "report_resolver_fault",
    "stamp_once",
]

_log = logging.getLogger("otel_bucket")
_faults = Throttle(60.0, time.monotonic)

T = TypeVar("T")


def check_resolver(resolver: object, argument: str = "resolver") -> None:
    """A resolver must be callable: fail when the middleware is built, not per request."""
    if not callable(resolver):
        raise TypeError(f"{argument} must be callable, got {type(resolver).__name__}")


def report_resolver_fault(where: str) -> None:
    """Log the exception being handled (a resolver's), at most once a minute."""
    if _faults.ready(1) is not None:
        _log.warning("otel-bucket: %s failed; the request runs unidentified", where, exc_info=True)


def call_resolver(resolver: Callable[[Any], object], request: object, where: str) -> object:
    """``resolver(request)``, or None (logged) when it raises."""
    try:
        return resolver(request)
    except Exception:
        report_resolver_fault(where)
        return None


def block_for(resolved: object, where: str) -> _Identified | None:
    """An ``identify`` block for what a resolver returned: ``identify`` keyword arguments, or
    None for an anonymous request. Anything else is logged and treated as anonymous."""
    if resolved is None:
        return None
    try:
        if not isinstance(resolved, Mapping):
            raise TypeError(
                f"expected a mapping of identify() arguments or None, got {type(resolved).__name__}"
            )
        return identify(**resolved)
    except (TypeError, ValueError):
        report_resolver_fault(where)
        return None


def stamp_once(identity: Identity) -> Callable[[], None]:
    """A callable that stamps the span current when first called (later calls do nothing).

    For frameworks that start their request span inside the app, after the middleware entered
    its block (Flask's instrumentation does, in a ``before_request`` hook): the span current when
    the app starts its response is the request's.
    """
    pending = [identity]

    def stamp() -> None:
        if pending:
            stamp_current(pending.pop())

    return stamp


def identified_iter(iterable: Iterable[T], identity: Identity) -> Iterator[T]:
    """Iterate ``iterable`` (and close it) with ``identity`` in effect during each step."""
    iterator = iter(iterable)
    try:
        while True:
            token = enter_identity(identity)  # on top of the step's own context
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                leave_identity(token)
            yield item
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            token = enter_identity(identity)  # on top of the step's own context
            try:
                close()
            finally:
                leave_identity(token)


async def identified_aiter(iterable: AsyncIterable[T], identity: Identity) -> AsyncIterator[T]:
    """The async twin of ``identified_iter``."""
    iterator = aiter(iterable)
    try:
        while True:
            token = enter_identity(identity)  # on top of the step's own context
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
            finally:
                leave_identity(token)
            yield item
    finally:
        aclose = getattr(iterable, "aclose", None)
        if aclose is not None:
            token = enter_identity(identity)  # on top of the step's own context
            try:
                await aclose()
            finally:
                leave_identity(token)
