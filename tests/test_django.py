"""``otel_bucket.django.BucketMiddleware`` with Django's real test client, sync and async, with
and without ``opentelemetry-instrumentation-django``."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from otel_bucket import feature  # noqa: E402
from otel_bucket.instrument._identity import current_identity  # noqa: E402

MEMORY = InMemorySpanExporter()
PROVIDER = TracerProvider(shutdown_on_exit=False)
PROVIDER.add_span_processor(SimpleSpanProcessor(MEMORY))

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "otel_bucket.django.BucketMiddleware",
]


@feature("Viewed report", tracer_provider=PROVIDER)
def load_report(name: str) -> dict[str, str]:
    return {"report": name}


def report(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse(load_report(name))


async def async_report(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse(load_report(name))


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[bytes]:
        for _ in range(2):
            found = current_identity()  # the server iterates after the middleware returned
            yield (found.user_id if found and found.user_id else "-").encode() + b";"

    return StreamingHttpResponse(body())


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("reports/<str:name>", report),
    path("async/<str:name>", async_report),
    path("stream", stream),
    path("plain", plain),
]


def bucket_identity(request: HttpRequest) -> dict[str, Any]:
    """The setting's callable: the company and a user attribute."""
    return {"company_id": "acme", "user_attributes": {"name": request.user.get_username()}}


async def async_bucket_identity(request: HttpRequest) -> dict[str, Any]:
    return {"company_id": "async-co"}


def no_identity(request: HttpRequest) -> None:
    return None


def broken_identity(request: HttpRequest) -> dict[str, Any]:
    raise RuntimeError("lookup failed")


@pytest.fixture(scope="module")
def django_ready() -> Iterator[None]:
    """Django configured once for this module: real auth, sessions and a SQLite file."""
    if not settings.configured:
        folder = Path(tempfile.mkdtemp(prefix="otel-bucket-django-"))
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
            ],
            MIDDLEWARE=list(MIDDLEWARE),
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": folder / "db"}},
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            USE_TZ=True,
        )
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    yield


@pytest.fixture(params=["plain", "instrumented"])
def mode(request: pytest.FixtureRequest, django_ready: None) -> Iterator[str]:
    """Each test runs without and with opentelemetry-instrumentation-django."""
    MEMORY.clear()
    if request.param == "plain":
        yield "plain"
        return
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(tracer_provider=PROVIDER)
    try:
        yield "instrumented"
    finally:
        instrumentor.uninstrument()


def user(name: str = "ada") -> Any:
    from django.contrib.auth.models import User

    found = User.objects.filter(username=name).first()
    return found or User.objects.create_user(username=name, password="pw")


def client(signed_in: Any = None) -> Any:
    from django.test import Client

    c = Client()
    if signed_in is not None:
        c.force_login(signed_in)
    return c


def spans(name: str) -> list[ReadableSpan]:
    return [s for s in MEMORY.get_finished_spans() if s.name == name]


def attributes(name: str) -> dict[str, Any]:
    (span,) = spans(name)
    return dict(span.attributes or {})


def server_span() -> dict[str, Any]:
    (span,) = [s for s in MEMORY.get_finished_spans() if s.name.startswith("GET")]
    return dict(span.attributes or {})


def test_signed_in_user_is_identified(mode: str) -> None:
    """request.user.pk is the user id of the features; the request span is stamped too."""
    ada = user()
    assert client(ada).get("/reports/weekly").json() == {"report": "weekly"}
    assert attributes("Viewed report") == {
        "enduser.id": str(ada.pk),
        "bucket.event": "Viewed report",
    }
    if mode == "instrumented":
        assert server_span()["enduser.id"] == str(ada.pk)
    else:
        assert not [s for s in MEMORY.get_finished_spans() if s.name.startswith("GET")]


def test_anonymous_requests_are_not_identified(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """AnonymousUser: no identity, an anonymous feature span, no error and no warning."""
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        response = client().get("/reports/daily")
    assert response.status_code == 200
    assert attributes("Viewed report") == {
        "bucket.event": "Viewed report",
        "bucket.anonymous": True,
    }
    assert caplog.records == []
    if mode == "instrumented":
        assert "enduser.id" not in server_span()


def test_setting_names_a_callable_for_company_and_attributes(mode: str) -> None:
    """OTEL_BUCKET_IDENTITY (a dotted path) adds the company and user attributes."""
    from django.test import override_settings

    ada = user()
    with override_settings(OTEL_BUCKET_IDENTITY=f"{__name__}.bucket_identity"):
        client(ada).get("/reports/weekly")
    assert attributes("Viewed report") == {
        "bucket.user.name": "ada",
        "bucket.company.id": "acme",
        "enduser.id": str(ada.pk),
        "bucket.event": "Viewed report",
    }
    if mode == "instrumented":
        stamped = server_span()
        assert (stamped["enduser.id"], stamped["bucket.company.id"]) == (str(ada.pk), "acme")


@pytest.mark.parametrize("setting", [no_identity, broken_identity])
def test_callable_returning_none_or_raising_leaves_the_request_anonymous(
    mode: str, setting: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """None means "do not identify"; an exception is logged, never a 500."""
    from django.test import override_settings

    import otel_bucket.instrument._middleware as middleware
    from otel_bucket.ground._throttle import Throttle

    middleware._faults = Throttle(0.0, time.monotonic)  # report every fault
    with (
        override_settings(OTEL_BUCKET_IDENTITY=setting),
        caplog.at_level(logging.WARNING, logger="otel_bucket"),
    ):
        assert client(user()).get("/reports/weekly").status_code == 200
    assert attributes("Viewed report")["bucket.anonymous"] is True
    assert ("lookup failed" in caplog.text) is (setting is broken_identity)


def test_bad_setting_is_improperly_configured(django_ready: None) -> None:
    """A setting that cannot be imported fails at startup, naming the setting."""
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from otel_bucket.django import BucketMiddleware

    with (
        override_settings(OTEL_BUCKET_IDENTITY="nowhere.at_all"),
        pytest.raises(ImproperlyConfigured, match="OTEL_BUCKET_IDENTITY"),
    ):
        BucketMiddleware(lambda request: HttpResponse())
    with (
        override_settings(OTEL_BUCKET_IDENTITY=42),
        pytest.raises(ImproperlyConfigured, match="callable"),
    ):
        BucketMiddleware(lambda request: HttpResponse())


def test_streaming_response_keeps_the_identity(mode: str) -> None:
    """The content of a StreamingHttpResponse is produced with the identity in effect."""
    ada = user()
    response = client(ada).get("/stream")
    assert b"".join(response.streaming_content) == f"{ada.pk};{ada.pk};".encode()


@pytest.mark.parametrize("setting", [None, f"{__name__}.async_bucket_identity"])
def test_async_client_and_async_view(mode: str, setting: str | None) -> None:
    """Under ASGI (AsyncClient) the middleware runs async: request.auser(), async callables."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient, override_settings

    ada = user()

    async def run() -> Any:
        c = AsyncClient()
        await sync_to_async(c.force_login)(ada)
        return await c.get("/async/weekly")

    with override_settings(OTEL_BUCKET_IDENTITY=setting):
        response = asyncio.run(run())
    assert response.status_code == 200
    carried = attributes("Viewed report")
    assert carried["enduser.id"] == str(ada.pk)
    assert carried.get("bucket.company.id") == (None if setting is None else "async-co")


def test_a_failing_user_lookup_never_fails_the_request(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """If reading request.user raises (session store down), the request runs unidentified."""
    from django.contrib.auth import middleware as auth_middleware
    from django.test import override_settings

    import otel_bucket.instrument._middleware as middleware
    from otel_bucket.ground._throttle import Throttle

    middleware._faults = Throttle(0.0, time.monotonic)  # report every fault

    def broken_user(request: HttpRequest) -> Any:
        raise RuntimeError("session store down")

    original = auth_middleware.get_user
    auth_middleware.get_user = broken_user
    try:
        with (
            override_settings(OTEL_BUCKET_IDENTITY=None),
            caplog.at_level(logging.WARNING, logger="otel_bucket"),
        ):
            response = client().get("/plain")
    finally:
        auth_middleware.get_user = original
    assert response.status_code == 200
    assert "session store down" in caplog.text
