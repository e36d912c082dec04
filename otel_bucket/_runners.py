"""How a feature span wraps coroutines and generators, and the guard for our own faults.

A coroutine's span covers the whole await. A generator's span covers the whole iteration (one
event per call), but it is current only while the generator's own code runs: it is detached
before every ``yield``, so the consumer's spans are never its children.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Coroutine, Generator
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import attach, detach

from otel_bucket._throttle import Throttle

__all__ = [
    "SpanStarter",
    "record_failure",
    "report_fault",
    "run_async",
    "run_async_generator",
    "run_generator",
]

_log = logging.getLogger("otel_bucket._decorator")

_faults = Throttle(60.0, time.monotonic)  # one logged fault of our own a minute at most


class SpanStarter(Protocol):
    """Starts one call's span (not made current)."""

    def start(self) -> trace.Span: ...


def report_fault() -> None:
    """Log (at most once a minute) the exception being handled: a fault of ours, not the app's."""
    if _faults.ready(1) is not None:
        _log.warning("otel-bucket bookkeeping failed; the function ran untracked", exc_info=True)


def record_failure(span: trace.Span, exc: BaseException) -> None:
    """Record the application's exception on the span; our own faults are swallowed."""
    try:
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    except Exception:
        report_fault()


def _end(span: trace.Span | None) -> None:
    if span is None:
        return
    try:
        span.end()
    except Exception:
        report_fault()


def _start(starter: SpanStarter) -> trace.Span | None:
    try:
        return starter.start()
    except Exception:
        report_fault()
        return None


def _current(span: trace.Span | None) -> object:
    """Make ``span`` current for one step; the token for ``_restore``."""
    if span is None:
        return None
    try:
        return attach(trace.set_span_in_context(span))
    except Exception:
        report_fault()
        return None


def _restore(token: object) -> None:
    if token is not None:
        detach(token)  # type: ignore[arg-type]  # the Token attach() gave us


async def run_async(starter: SpanStarter, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro`` inside the call's span."""
    span = _start(starter)
    token = _current(span)
    try:
        return await coro
    except Exception as exc:
        if span is not None:
            record_failure(span, exc)
        raise
    finally:
        _restore(token)
        _end(span)


def run_generator(starter: SpanStarter, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Drive ``gen`` step by step, its span current during each step only."""
    span = _start(starter)
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            token = _current(span)
            try:
                if to_throw is None:
                    value = gen.send(to_send)
                else:
                    value, to_throw = gen.throw(to_throw), None
            finally:
                _restore(token)
            try:
                to_send = yield value
            except GeneratorExit:
                token = _current(span)
                try:
                    gen.close()
                finally:
                    _restore(token)
                raise
            except BaseException as exc:  # thrown in by the consumer: hand it to ``gen``
                to_send, to_throw = None, exc
    except StopIteration as stop:
        return stop.value
    except Exception as exc:
        if span is not None:
            record_failure(span, exc)
        raise
    finally:
        _end(span)


async def run_async_generator(
    starter: SpanStarter, agen: AsyncGenerator[Any, Any]
) -> AsyncGenerator[Any, Any]:
    """Drive ``agen`` step by step, its span current during each step only."""
    span = _start(starter)
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            token = _current(span)
            try:
                if to_throw is None:
                    value = await agen.asend(to_send)
                else:
                    value, to_throw = await agen.athrow(to_throw), None
            finally:
                _restore(token)
            try:
                to_send = yield value
            except GeneratorExit:
                token = _current(span)
                try:
                    await agen.aclose()
                finally:
                    _restore(token)
                raise
            except BaseException as exc:  # thrown in by the consumer: hand it to ``agen``
                to_send, to_throw = None, exc
    except StopAsyncIteration:
        return
    except Exception as exc:
        if span is not None:
            record_failure(span, exc)
        raise
    finally:
        _end(span)
