"""Django middleware: every request of a signed-in user runs inside ``identify``.

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "otel_bucket.django.BucketMiddleware",  # after authentication
        ...,
    ]
    OTEL_BUCKET_IDENTITY = "myproject.analytics.bucket_identity"  # optional

The user id is ``request.user.pk``, for authenticated users only: an anonymous visitor's request
runs unidentified (its features are anonymous and not sent, with no warning). The optional
setting ``OTEL_BUCKET_IDENTITY`` names a callable (a dotted path, or the callable itself) taking
the request of an authenticated user and returning more ``identify`` keyword arguments, such as
``company_id`` and ``user_attributes`` (they may replace ``user_id`` too), or None to leave that
request unidentified. It may be a coroutine function.

Works with and without ``opentelemetry-instrumentation-django`` (its middleware goes first, so
its request span is current here and gets stamped), under WSGI and ASGI. Importing this module
imports Django; ``import otel_bucket`` does not.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.utils.module_loading import import_string

from otel_bucket.instrument._identity import Identity, current_identity
from otel_bucket.instrument._middleware import (
    block_for,
    call_resolver,
    identified_aiter,
    identified_iter,
    report_resolver_fault,
)

__all__ = ["SETTING", "BucketMiddleware"]

SETTING = "OTEL_BUCKET_IDENTITY"
_WHERE = f"settings.{SETTING}"

Extra = Callable[[HttpRequest], Any]


def _extra_from_settings() -> Extra | None:
    value = getattr(settings, SETTING, None)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{SETTING}: cannot import {value!r}: {exc}") from exc
    if not callable(value):
        raise ImproperlyConfigured(
            f"{SETTING} must name a callable taking the request, got {type(value).__name__}"
        )
    return value  # type: ignore[no-any-return]


def _signed_in(get_user: Callable[[], Any]) -> Any:
    """The authenticated user, or None. Looking the user up (a session and a database query)
    may fail: that is logged, and the request runs unidentified rather than failing here."""
    try:
        user = get_user()
        return user if user is not None and user.is_authenticated else None
    except Exception:
        report_resolver_fault("request.user")
        return None


def _arguments(user: Any, extra: object) -> object:
    """``identify`` arguments: the user's pk, completed (or replaced) by the setting's callable."""
    if extra is None:
        return None
    if not isinstance(extra, Mapping):
        return extra  # block_for() says what is wrong with it
    return {"user_id": user.pk, **extra}


class BucketMiddleware:
    """Identifies ``request.user`` (authenticated users only) for the rest of the request.

    Sync and async capable. The identity stays in effect while a streaming response is sent.
    A setting callable that raises or returns what ``identify`` refuses is logged (at most once
    a minute) and the request runs unidentified.

    Raises:
        ImproperlyConfigured: ``OTEL_BUCKET_IDENTITY`` cannot be imported or is not callable.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.extra = _extra_from_settings()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        user = _signed_in(lambda: getattr(request, "user", None))
        if user is None:
            return self.get_response(request)
        block = block_for(self._resolve(request, user), _WHERE)
        if block is None:
            return self.get_response(request)
        with block:
            response = self.get_response(request)
            return _identified_response(response, current_identity())

    async def _acall(self, request: HttpRequest) -> Any:
        auser = getattr(request, "auser", None)  # Django >= 5.0: no sync query in async code
        try:
            if auser is not None:
                found = await auser()
            else:
                found = await sync_to_async(lambda: getattr(request, "user", None))()
        except Exception:
            report_resolver_fault("request.user")
            found = None
        user = _signed_in(lambda: found)
        if user is None:
            return await self.get_response(request)
        block = block_for(await self._aresolve(request, user), _WHERE)
        if block is None:
            return await self.get_response(request)
        with block:
            response = await self.get_response(request)
            return _identified_response(response, current_identity())

    def _resolve(self, request: HttpRequest, user: Any) -> object:
        if self.extra is None:
            return {"user_id": user.pk}
        extra = self.extra
        if iscoroutinefunction(extra):
            extra = async_to_sync(extra)
        return _arguments(user, call_resolver(extra, request, _WHERE))

    async def _aresolve(self, request: HttpRequest, user: Any) -> object:
        if self.extra is None:
            return {"user_id": user.pk}
        try:
            if iscoroutinefunction(self.extra):
                extra = await self.extra(request)
            else:
                extra = await sync_to_async(self.extra)(request)  # it may query the database
            if inspect.isawaitable(extra):
                extra = await extra
        except Exception:
            report_resolver_fault(_WHERE)
            return None
        return _arguments(user, extra)


def _identified_response(response: HttpResponseBase, identity: Identity | None) -> Any:
    """Keep the identity in effect while a streaming response's content is produced."""
    if identity is not None and isinstance(response, StreamingHttpResponse):
        content: Iterable[bytes] | AsyncIterable[bytes] = response.streaming_content
        if getattr(response, "is_async", False):
            response.streaming_content = identified_aiter(content, identity)  # type: ignore[arg-type]
        else:
            response.streaming_content = identified_iter(content, identity)  # type: ignore[arg-type]
    return response
