"""``otel_bucket.wsgi.BucketMiddleware`` around a real Flask app (its test client), with Flask's
and with the generic WSGI OpenTelemetry instrumentation."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_bucket.instrument._middleware as middleware
from otel_bucket import feature
from otel_bucket.ground._throttle import Throttle
from otel_bucket.instrument._identity import current_identity
from otel_bucket.wsgi import BucketMiddleware


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    p = TracerProvider(shutdown_on_exit=False)
    p.memory = InMemorySpanExporter()  # type: ignore[attr-defined]
    p.add_span_processor(SimpleSpanProcessor(p.memory))  # type: ignore[attr-defined]
    middleware._faults = Throttle(0.0, time.monotonic)  # report every fault
    yield p
    p.shutdown()


def spans(provider: TracerProvider) -> dict[str, ReadableSpan]:
    return {s.name: s for s in provider.memory.get_finished_spans()}  # type: ignore[attr-defined]


def resolve(environ: dict[str, Any]) -> dict[str, Any] | None:
    """The resolver the examples use: two headers."""
    user = environ.get("HTTP_X_USER_ID")
    if not user:
        return None
    return {"user_id": user, "company_id": environ.get("HTTP_X_COMPANY_ID")}


def make_app(provider: TracerProvider, resolver: Any = resolve, how: str = "flask") -> Flask:
    app = Flask(__name__)

    @feature("Exported CSV", tracer_provider=provider)
    def export_rows() -> str:
        return "id,name\n"

    @app.get("/export")
    def export() -> str:
        return export_rows()

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for _ in range(2):
                found = current_identity()  # iterated by the server, after the view returned
                yield (found.user_id if found and found.user_id else "-") + ";"

        return Response(body())

    @app.get("/stream-in-context")
    def stream_in_context() -> Response:
        return Response(stream_with_context(iter(["a", "b"])))

    if how == "flask":
        FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
        app.wsgi_app = BucketMiddleware(app.wsgi_app, resolver)  # type: ignore[method-assign]
    elif how == "wsgi":  # OpenTelemetry's WSGI middleware outermost: its span is current here
        inner = BucketMiddleware(app.wsgi_app, resolver)
        app.wsgi_app = OpenTelemetryMiddleware(inner, tracer_provider=provider)  # type: ignore[method-assign]
    else:
        app.wsgi_app = BucketMiddleware(app.wsgi_app, resolver)  # type: ignore[method-assign]
    return app


WHO = {"X-User-Id": "42", "X-Company-Id": "acme"}


@pytest.mark.parametrize("how", ["flask", "wsgi"])
def test_request_is_identified_and_its_span_stamped(provider: TracerProvider, how: str) -> None:
    """The feature carries the identity; the request span is stamped, however it was started."""
    app = make_app(provider, how=how)
    assert app.test_client().get("/export", headers=WHO).text == "id,name\n"
    found = spans(provider)
    assert found["Exported CSV"].attributes == {
        "bucket.company.id": "acme",
        "enduser.id": "42",
        "bucket.event": "Exported CSV",
    }
    (request_span,) = [s for n, s in found.items() if n.startswith("GET")]
    assert (request_span.attributes or {})["enduser.id"] == "42"
    assert (request_span.attributes or {})["bucket.company.id"] == "acme"


@pytest.mark.parametrize("how", ["flask", "wsgi"])
def test_request_without_a_feature_still_stamps(provider: TracerProvider, how: str) -> None:
    """So the user and company calls are made even when no feature runs in the request."""
    make_app(provider, how=how).test_client().get("/health", headers=WHO)
    (request_span,) = spans(provider).values()
    assert (request_span.attributes or {})["enduser.id"] == "42"


def test_anonymous_request_sends_nothing_and_logs_nothing(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """The resolver's None: an anonymous feature span, an unstamped request span, no warning."""
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        make_app(provider).test_client().get("/export")
    found = spans(provider)
    assert (found["Exported CSV"].attributes or {})["bucket.anonymous"] is True
    assert "enduser.id" not in (found["GET /export"].attributes or {})
    assert caplog.records == []


@pytest.mark.parametrize(
    ("resolver", "logged"),
    [
        (lambda environ: 1 / 0, "ZeroDivisionError"),
        (lambda environ: ["42"], "mapping"),
        (lambda environ: {"user_id": ""}, "user_id must not be empty"),
        (lambda environ: {"user": "42"}, "unexpected keyword"),
    ],
)
def test_a_broken_resolver_never_fails_the_request(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture, resolver: Any, logged: str
) -> None:
    """A resolver that raises or returns bad arguments is logged; the request runs anonymous."""
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        response = make_app(provider, resolver=resolver).test_client().get("/export")
    assert response.status_code == 200
    assert logged in caplog.text
    assert (spans(provider)["Exported CSV"].attributes or {})["bucket.anonymous"] is True


def test_streamed_body_keeps_the_identity(provider: TracerProvider) -> None:
    """A streaming body produced while the server iterates still sees the identity."""
    app = make_app(provider)
    assert app.test_client().get("/stream", headers=WHO).text == "42;42;"
    assert app.test_client().get("/stream").text == "-;-;"
    assert app.test_client().get("/stream-in-context", headers=WHO).text == "ab"


def test_plain_wsgi_app_list_body_is_passed_through(provider: TracerProvider) -> None:
    """A body that is already a list goes back unchanged (the server can size it)."""
    body = [b"hello"]

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    statuses: list[str] = []
    wrapped = BucketMiddleware(app, resolve)
    result = wrapped({"HTTP_X_USER_ID": "1"}, lambda status, headers, *exc: statuses.append(status))
    assert result is body
    assert statuses == ["200 OK"]


def test_arguments_are_checked() -> None:
    """A non-callable app or resolver is a TypeError naming it."""
    with pytest.raises(TypeError, match="resolver"):
        BucketMiddleware(lambda e, s: [], "resolve")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="app"):
        BucketMiddleware(None, resolve)  # type: ignore[arg-type]
