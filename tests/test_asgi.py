"""``otel_bucket.asgi.BucketMiddleware`` in a real FastAPI app with its OpenTelemetry
instrumentation (Starlette's test client; the example runs it under a real uvicorn)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import BackgroundTasks, FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.requests import HTTPConnection

import otel_bucket.instrument._middleware as middleware
from otel_bucket import feature
from otel_bucket.asgi import BucketMiddleware
from otel_bucket.ground._throttle import Throttle
from otel_bucket.instrument._identity import current_identity


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    p = TracerProvider(shutdown_on_exit=False)
    p.memory = InMemorySpanExporter()  # type: ignore[attr-defined]
    p.add_span_processor(SimpleSpanProcessor(p.memory))  # type: ignore[attr-defined]
    middleware._faults = Throttle(0.0, time.monotonic)  # report every fault
    yield p
    p.shutdown()


def finished(provider: TracerProvider) -> list[ReadableSpan]:
    return list(provider.memory.get_finished_spans())  # type: ignore[attr-defined]


def named(provider: TracerProvider, name: str) -> dict[str, Any]:
    (span,) = [s for s in finished(provider) if s.name == name]
    return dict(span.attributes or {})


async def resolve(scope: Any) -> dict[str, Any] | None:
    """An async resolver reading two headers, as the FastAPI example does."""
    headers = HTTPConnection(scope).headers
    user = headers.get("x-user-id")
    return {"user_id": user, "company_id": headers.get("x-company-id")} if user else None


def user_of() -> str:
    found = current_identity()
    return found.user_id if found and found.user_id else "-"


def make_app(provider: TracerProvider, resolver: Any = resolve, instrument: bool = True) -> Any:
    app = FastAPI()
    background: list[str] = []
    app.state.background = background

    @feature("Viewed report", tracer_provider=provider)
    async def load(name: str) -> dict[str, str]:
        return {"report": name}

    @feature("Shared report", tracer_provider=provider)
    def share(name: str) -> str:
        return f"/r/{name}"

    @app.get("/reports/{name}")
    async def report(name: str) -> dict[str, str]:
        return await load(name)

    @app.post("/reports/{name}/share")
    def post_share(name: str, tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(lambda: background.append(user_of()))
        return {"link": share(name)}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            for _ in range(2):
                yield user_of() + ";"

        return StreamingResponse(body())

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text(user_of())
        await socket.close()

    app.add_middleware(BucketMiddleware, resolver=resolver)
    if instrument:
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return app


WHO = {"x-user-id": "7", "x-company-id": "globex"}


@pytest.mark.parametrize("instrument", [True, False])
def test_async_and_sync_endpoints_carry_the_identity(
    provider: TracerProvider, instrument: bool
) -> None:
    """Async endpoints, sync endpoints (thread pool) and background tasks see the identity."""
    app = make_app(provider, instrument=instrument)
    with TestClient(app) as client:
        assert client.get("/reports/weekly", headers=WHO).json() == {"report": "weekly"}
        assert client.post("/reports/weekly/share", headers=WHO).json() == {"link": "/r/weekly"}
    for name in ("Viewed report", "Shared report"):
        assert named(provider, name) == {
            "bucket.company.id": "globex",
            "enduser.id": "7",
            "bucket.event": name,
        }
    assert app.state.background == ["7"]
    if instrument:
        (server,) = [s for s in finished(provider) if s.name == "GET /reports/{name}"]
        assert (server.attributes or {})["enduser.id"] == "7"


def test_sync_resolver_and_anonymous_requests(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain function works too; None means anonymous: nothing stamped, nothing logged."""

    def sync_resolve(scope: Any) -> dict[str, Any] | None:
        user = HTTPConnection(scope).headers.get("x-user-id")
        return {"user_id": user} if user else None

    with (
        caplog.at_level(logging.WARNING, logger="otel_bucket"),
        TestClient(make_app(provider, resolver=sync_resolve)) as client,
    ):
        client.get("/reports/a", headers={"x-user-id": "8"})
        client.get("/reports/b")
    first, second = [s for s in finished(provider) if s.name == "Viewed report"]
    assert (first.attributes or {})["enduser.id"] == "8"
    assert (second.attributes or {})["bucket.anonymous"] is True
    assert caplog.records == []


def test_streaming_and_websocket_keep_the_identity(provider: TracerProvider) -> None:
    """A streamed body and a WebSocket connection run inside the identity."""
    with TestClient(make_app(provider)) as client:
        assert client.get("/stream", headers=WHO).text == "7;7;"
        with client.websocket_connect("/ws", headers=WHO) as socket:
            assert socket.receive_text() == "7"


@pytest.mark.parametrize(
    "resolver",
    [
        lambda scope: 1 / 0,
        lambda scope: "7",
        lambda scope: {"user_id": 1.5},
    ],
)
def test_a_broken_resolver_never_fails_the_request(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture, resolver: Any
) -> None:
    """Errors and bad values from the resolver are logged; the request still answers 200."""

    async def failing(scope: Any) -> Any:
        raise LookupError("session store down")

    for each in (resolver, failing):
        with (
            caplog.at_level(logging.WARNING, logger="otel_bucket"),
            TestClient(make_app(provider, resolver=each)) as client,
        ):
            assert client.get("/reports/x", headers=WHO).status_code == 200
    assert "session store down" in caplog.text
    assert "request runs unidentified" in caplog.text


def test_lifespan_passes_through(provider: TracerProvider) -> None:
    """Startup and shutdown events are not requests: the resolver is never called for them."""
    calls: list[str] = []

    def counting(scope: Any) -> None:
        calls.append(scope["type"])
        return None

    with TestClient(make_app(provider, resolver=counting)) as client:
        client.get("/reports/x")
    assert calls == ["http"]
