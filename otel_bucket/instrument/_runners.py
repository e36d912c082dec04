"""How a scope (a feature's span, an identity) wraps coroutines and generators; our fault guard.

A coroutine's scope covers the whole await. A generator's scope covers the whole iteration (one
event per call), but it is current only while the generator's own code runs: it is left before
every ``yield``, so the consumer's spans are never its children.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Coroutine, Generator
from typing import Any, Protocol

from opentelemetry import trace

from otel_bucket.ground._throttle import Throttle

__all__ = [
    "Scope",
    "is_failure",
    "record_failure",
    "report_fault",
    "run_async",
    "run_async_generator",
    "run_generator",
]

_log = logging.getLogger("otel_bucket.instrument._decorator")

_faults = Throttle(60.0, time.monotonic)  # one logged fault of our own a minute at most


class Scope(Protocol):
    """What a call is run inside: started once, entered around each step, ended once."""

    def start(self) -> None:
        """The body is about to run for the first time."""

    def enter(self) -> object:
        """Make the scope current for one step; a token for ``leave``."""

    def leave(self, token: object) -> None:
        """Undo ``enter``."""

    def fail(self, exc: BaseException) -> None:
        """The body raised ``exc`` (it is re-raised after this)."""

    def end(self) -> None:
        """The call is over."""


def report_fault() -> None:
    """Log (at most once a minute) the exception being handled: a fault of ours, not the app's."""
    if _faults.ready(1) is not None:
        _log.warning("otel-bucket bookkeeping failed; the function ran untracked", exc_info=True)


def is_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the call failed.

    Every exception does, ``KeyboardInterrupt``, ``asyncio.CancelledError`` and ``SystemExit``
    with a failure status included, except the two that end a call normally: ``SystemExit`` with
    status 0 (``sys.exit()``) and ``GeneratorExit`` (a consumer closing a generator early).
    """
    if isinstance(exc, GeneratorExit):
        return False
    if isinstance(exc, SystemExit):
        return exc.code not in (0, None)
    return True


def record_failure(span: trace.Span, exc: BaseException) -> None:
    """Record the application's exception on the span; our own faults are swallowed."""
    if not is_failure(exc):
        return
    try:
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    except Exception:
        report_fault()


def _start(scope: Scope) -> bool:
    try:
        scope.start()
        return True
    except Exception:
        report_fault()
        return False


def _enter(scope: Scope, live: bool) -> object:
    if not live:
        return None
    try:
        return scope.enter()
    except Exception:
        report_fault()
        return None


def _leave(scope: Scope, token: object) -> None:
    if token is not None:
        scope.leave(token)


def _fail(scope: Scope, live: bool, exc: BaseException) -> None:
    if live:
        try:
            scope.fail(exc)
        except Exception:
            report_fault()


def _end(scope: Scope, live: bool) -> None:
    if live:
        try:
            scope.end()
        except Exception:
            report_fault()


async def run_async(scope: Scope, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro`` inside ``scope``."""
    live = _start(scope)
    token = _enter(scope, live)
    try:
        return await coro
    except BaseException as exc:
        _fail(scope, live, exc)
        raise
    finally:
        _leave(scope, token)
        _end(scope, live)


def run_generator(scope: Scope, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Drive ``gen`` step by step, ``scope`` current during each step only."""
    live = _start(scope)
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            token = _enter(scope, live)
            try:
                if to_throw is None:
                    value = gen.send(to_send)
                else:
                    value, to_throw = gen.throw(to_throw), None
            finally:
                _leave(scope, token)
            try:
                to_send = yield value
            except GeneratorExit:
                token = _enter(scope, live)
                try:
                    gen.close()
                finally:
                    _leave(scope, token)
                raise
            except BaseException as exc:  # thrown in by the consumer: hand it to ``gen``
                to_send, to_throw = None, exc
    except StopIteration as stop:
        return stop.value
    except BaseException as exc:
        _fail(scope, live, exc)
        raise
    finally:
        _end(scope, live)


async def run_async_generator(
    scope: Scope, agen: AsyncGenerator[Any, Any]
) -> AsyncGenerator[Any, Any]:
    """Drive ``agen`` step by step, ``scope`` current during each step only."""
    live = _start(scope)
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            token = _enter(scope, live)
            try:
                if to_throw is None:
                    value = await agen.asend(to_send)
                else:
                    value, to_throw = await agen.athrow(to_throw), None
            finally:
                _leave(scope, token)
            try:
                to_send = yield value
            except GeneratorExit:
                token = _enter(scope, live)
                try:
                    await agen.aclose()
                finally:
                    _leave(scope, token)
                raise
            except BaseException as exc:  # thrown in by the consumer: hand it to ``agen``
                to_send, to_throw = None, exc
    except StopAsyncIteration:
        return
    except BaseException as exc:
        _fail(scope, live, exc)
        raise
    finally:
        _end(scope, live)
