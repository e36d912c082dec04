"""WSGI middleware: say who the user is for every request, from a resolver of your own.

    from otel_bucket.wsgi import BucketMiddleware

    def resolve(environ):
        user = environ.get("HTTP_X_USER_ID")  # or your session/auth lookup
        return {"user_id": user} if user else None

    app.wsgi_app = BucketMiddleware(app.wsgi_app, resolve)  # Flask; any WSGI app works

Uses nothing but the standard library and otel-bucket: importing it imports no framework.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import trace

from otel_bucket.instrument._identity import current_identity
from otel_bucket.instrument._middleware import (
    block_for,
    call_resolver,
    check_resolver,
    identified_iter,
    stamp_once,
)

__all__ = ["BucketMiddleware", "Resolver", "WSGIApp"]

Environ = dict[str, Any]
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class StartResponse(Protocol):
    """The ``start_response`` callable of PEP 3333."""

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = ..., /
    ) -> Callable[[bytes], object]: ...


WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Resolver = Callable[[Environ], Mapping[str, Any] | None]
"""``environ -> identify() keyword arguments``, or None for an anonymous request."""


class BucketMiddleware:
    """Runs each request of ``app`` inside ``identify(**resolver(environ))``.

    The resolver gets the WSGI environ and returns ``identify`` keyword arguments (``user_id``,
    ``company_id``, ``user_attributes``, ``company_attributes``) or None for an anonymous
    request (nothing is sent for it, and nothing is logged). The identity stays in effect while
    the server iterates the response body (streaming responses). The request's span is stamped:
    the one current when the middleware runs (put it inside OpenTelemetry's WSGI middleware) or,
    when none is recording yet, the one current when the app starts its response (Flask's
    instrumentation starts its span later, in a ``before_request`` hook).

    A resolver that raises, or returns what ``identify`` refuses, is logged (at most once a
    minute) and the request runs unidentified: analytics never fail a request.

    Args:
        app: the WSGI application.
        resolver: ``environ -> identify() keyword arguments | None``.

    Raises:
        TypeError: ``app`` or ``resolver`` is not callable.
    """

    def __init__(self, app: WSGIApp, resolver: Resolver) -> None:
        check_resolver(app, "app")
        check_resolver(resolver)
        self.app = app
        self.resolver = resolver

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        resolved = call_resolver(self.resolver, environ, "the WSGI identity resolver")
        block = block_for(resolved, "the WSGI identity resolver")
        if block is None:
            return self.app(environ, start_response)
        with block:
            identity = current_identity()
            if identity is None:  # e.g. {"user_id": None}: anonymous
                return self.app(environ, start_response)
            if not trace.get_current_span().is_recording():
                start_response = _stamping(start_response, stamp_once(identity))
            body = self.app(environ, start_response)
            if isinstance(body, list | tuple):
                return body  # already made: no app code runs while it is sent (and the server
                # can still give it a Content-Length)
            file_wrapper = environ.get("wsgi.file_wrapper")
            if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
                return body  # keep the server's sendfile path; a file runs no app code
            return identified_iter(body, identity)


def _stamping(start_response: StartResponse, stamp: Callable[[], None]) -> StartResponse:
    def wrapped(
        status: str, headers: list[tuple[str, str]], *exc_info: Any
    ) -> Callable[[bytes], object]:
        stamp()
        return start_response(status, headers, *exc_info)

    return wrapped
