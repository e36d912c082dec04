"""ASGI middleware: say who the user is for every request, from a resolver of your own.

    from starlette.requests import HTTPConnection
    from otel_bucket.asgi import BucketMiddleware

    async def resolve(scope):
        user = HTTPConnection(scope).headers.get("x-user-id")  # or your session/auth lookup
        return {"user_id": user} if user else None

    app.add_middleware(BucketMiddleware, resolver=resolve)  # FastAPI/Starlette; any ASGI app

Uses nothing but the standard library and otel-bucket: importing it imports no framework.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from opentelemetry import trace

from otel_bucket.instrument._identity import current_identity
from otel_bucket.instrument._middleware import (
    block_for,
    call_resolver,
    check_resolver,
    report_resolver_fault,
    stamp_once,
)

__all__ = ["ASGIApp", "BucketMiddleware", "Resolver"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Identity = Mapping[str, Any] | None
Resolver = Callable[[Scope], Identity | Awaitable[Identity]]
"""``scope -> identify() keyword arguments`` (or an awaitable of them), None when anonymous."""

_WHERE = "the ASGI identity resolver"


class BucketMiddleware:
    """Runs each HTTP and WebSocket connection of ``app`` inside ``identify(**resolver(scope))``.

    The resolver gets the ASGI scope (``starlette.requests.HTTPConnection(scope)`` reads its
    headers, cookies and session) and returns ``identify`` keyword arguments (``user_id``,
    ``company_id``, ``user_attributes``, ``company_attributes``) or None for an anonymous
    request (nothing is sent, nothing is logged); it may be a coroutine function. The identity
    is in effect for the whole connection, streamed bodies and background tasks included. The
    request's span is stamped: the one current when the middleware runs (OpenTelemetry's ASGI
    middleware, which FastAPI's instrumentation puts outside every user middleware) or, when
    none is recording yet, the one current when the app starts its response. Lifespan events
    pass through untouched.

    A resolver that raises, or returns what ``identify`` refuses, is logged (at most once a
    minute) and the request runs unidentified: analytics never fail a request.

    Args:
        app: the ASGI application.
        resolver: ``scope -> identify() keyword arguments | None`` (sync or async).

    Raises:
        TypeError: ``app`` or ``resolver`` is not callable.
    """

    def __init__(self, app: ASGIApp, resolver: Resolver) -> None:
        check_resolver(app, "app")
        check_resolver(resolver)
        self.app = app
        self.resolver = resolver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        resolved = call_resolver(self.resolver, scope, _WHERE)
        if inspect.isawaitable(resolved):
            try:
                resolved = await resolved
            except Exception:
                report_resolver_fault(_WHERE)
                resolved = None
        block = block_for(resolved, _WHERE)
        if block is None:
            await self.app(scope, receive, send)
            return
        with block:
            identity = current_identity()
            if identity is not None and not trace.get_current_span().is_recording():
                send = _stamping(send, stamp_once(identity))
            await self.app(scope, receive, send)


def _stamping(send: Send, stamp: Callable[[], None]) -> Send:
    async def wrapped(message: Message) -> None:
        if message.get("type") in ("http.response.start", "websocket.accept"):
            stamp()
        await send(message)

    return wrapped
