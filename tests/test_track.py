"""``track`` and ``set_event_attributes``: per-call event data, carried as features carry it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_bucket.instrument._track as track_module
from otel_bucket import feature, identify, install, set_event_attributes, track
from tests._capture import CaptureServer


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A real provider; its finished spans are in ``provider.memory``."""
    p = TracerProvider(shutdown_on_exit=False)
    p.memory = InMemorySpanExporter()  # type: ignore[attr-defined]
    p.add_span_processor(SimpleSpanProcessor(p.memory))  # type: ignore[attr-defined]
    yield p
    p.shutdown()


def spans(provider: TracerProvider, name: str) -> list[ReadableSpan]:
    finished = provider.memory.get_finished_spans()  # type: ignore[attr-defined]
    return [s for s in finished if s.name == name]


def attributes(provider: TracerProvider, name: str) -> dict[str, Any]:
    (span,) = spans(provider, name)
    return dict(span.attributes or {})


def test_track_carries_what_a_feature_span_would(provider: TracerProvider) -> None:
    """A track() span and a @feature span with the same name and attributes carry the same."""

    @feature("Sent message", attributes={"channel": "email"}, tracer_provider=provider)
    def send() -> None:
        pass

    with identify("u1", "c1", user_attributes={"name": "Ada"}, company_attributes={"plan": "pro"}):
        send()
        track("Sent message", {"channel": "email"}, tracer_provider=provider)
    first, second = spans(provider, "Sent message")
    assert dict(first.attributes or {}) == dict(second.attributes or {})
    assert list((first.attributes or {}).keys()) == list((second.attributes or {}).keys())
    assert dict(second.attributes or {}) == {
        "bucket.company.plan": "pro",
        "bucket.user.name": "Ada",
        "bucket.attributes.channel": "email",
        "bucket.company.id": "c1",
        "enduser.id": "u1",
        "bucket.event": "Sent message",
    }


def test_track_is_a_short_child_of_the_current_span(provider: TracerProvider) -> None:
    """The span is a child of the current span, already ended, and not left current."""
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("request") as parent:
        track("Opened", tracer_provider=provider)
        assert trace.get_current_span() is parent
    (span,) = spans(provider, "Opened")
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.end_time is not None


def test_track_values_are_converted_like_features(provider: TracerProvider) -> None:
    """Dates become ISO strings, None and unsendable values are dropped."""
    with identify("u1"):
        track(
            "Booked",
            {"day": date(2026, 1, 2), "none": None, "obj": object()},
            tracer_provider=provider,
        )
    assert attributes(provider, "Booked") == {
        "bucket.attributes.day": "2026-01-02",
        "enduser.id": "u1",
        "bucket.event": "Booked",
    }


def test_track_without_identify_copies_the_parent_ids(provider: TracerProvider) -> None:
    """Outside identify, the current span's user id is used, as for features."""
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("request", attributes={"user.id": "u9"}):
        track("Opened", tracer_provider=provider)
    assert attributes(provider, "Opened") == {"user.id": "u9", "bucket.event": "Opened"}


def test_anonymous_track_is_marked(provider: TracerProvider) -> None:
    """With no user in effect the span says so (the exporter drops it without a warning)."""
    track("Opened", tracer_provider=provider)
    assert attributes(provider, "Opened") == {"bucket.anonymous": True, "bucket.event": "Opened"}


def test_track_uses_the_global_provider_lazily(provider: TracerProvider) -> None:
    """Without tracer_provider=, the global provider in effect at the call is used."""
    from opentelemetry.util._once import Once

    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    try:
        track("Before")  # no SDK yet: nothing recorded, nothing raised
        trace.set_tracer_provider(provider)
        track("After")
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved
    assert spans(provider, "Before") == []
    assert len(spans(provider, "After")) == 1


def test_track_reaches_bucket(server: CaptureServer) -> None:
    """track() inside identify becomes an event call with its attributes."""
    p = TracerProvider(shutdown_on_exit=False)
    install(p, tracking_key="k", endpoint=server.url)
    with identify("u1"):
        track("Sent message", {"channel": "chat"}, tracer_provider=p)
    assert p.force_flush()
    p.shutdown()
    (event,) = server.calls("event")
    assert (event["event"], event["userId"], event["attributes"]) == (
        "Sent message",
        "u1",
        {"channel": "chat"},
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((42,), {}, TypeError, "event"),
        (("",), {}, ValueError, "event"),
        (("x", ["a"]), {}, TypeError, "attributes"),
        (("x", {"": 1}), {}, ValueError, "attributes"),
        (("x",), {"tracer_provider": "global"}, TypeError, "tracer_provider"),
    ],
)
def test_track_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad arguments raise naming the argument."""
    with pytest.raises(error, match=match):
        track(*args, **kwargs)


class BrokenProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise RuntimeError("tracing is broken")


def test_track_never_raises_our_faults(caplog: pytest.LogCaptureFixture) -> None:
    """A broken provider is logged, never raised into the caller."""
    import time

    import otel_bucket.instrument._runners as runners
    from otel_bucket.ground._throttle import Throttle

    runners._faults = Throttle(60.0, time.monotonic)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        track("Opened", tracer_provider=BrokenProvider())
    assert "bookkeeping failed" in caplog.text


def test_set_event_attributes_adds_to_the_calls_event(provider: TracerProvider) -> None:
    """Inside a feature, even under a child span, the attributes land on that call's span."""
    tracer = provider.get_tracer("app")

    @feature("Exported CSV", attributes={"format": "csv"}, tracer_provider=provider)
    def export(rows: int) -> None:
        with tracer.start_as_current_span("SELECT"):
            set_event_attributes({"rows": rows, "since": date(2026, 1, 1), "skip": None})

    with identify("u1"):
        export(1204)
        export(7)
    first, second = spans(provider, "Exported CSV")
    assert dict(first.attributes or {}) == {
        "bucket.attributes.format": "csv",
        "enduser.id": "u1",
        "bucket.event": "Exported CSV",
        "bucket.attributes.rows": 1204,
        "bucket.attributes.since": "2026-01-01",
    }
    assert (second.attributes or {})["bucket.attributes.rows"] == 7
    assert "bucket.attributes.rows" not in (spans(provider, "SELECT")[0].attributes or {})


def test_set_event_attributes_in_nested_features_goes_to_the_innermost(
    provider: TracerProvider,
) -> None:
    """A feature called by a feature gets its own attributes; the outer one gets its own back."""

    @feature("inner", tracer_provider=provider)
    def inner() -> None:
        set_event_attributes({"who": "inner"})

    @feature("outer", tracer_provider=provider)
    def outer() -> None:
        inner()
        set_event_attributes({"who": "outer"})

    outer()
    assert attributes(provider, "inner")["bucket.attributes.who"] == "inner"
    assert attributes(provider, "outer")["bucket.attributes.who"] == "outer"


def test_set_event_attributes_in_async_and_generator_features(provider: TracerProvider) -> None:
    """Coroutines and generators: each step can add to its own call's event."""

    @feature("co", tracer_provider=provider)
    async def co() -> None:
        await asyncio.sleep(0)
        set_event_attributes({"n": 1})

    @feature("gen", tracer_provider=provider)
    def gen() -> Iterator[int]:
        yield 1
        set_event_attributes({"n": 2})
        yield 2

    @feature("agen", tracer_provider=provider)
    async def agen() -> AsyncIterator[int]:
        yield 1
        set_event_attributes({"n": 3})

    async def drain() -> None:
        async for _ in agen():
            set_event_attributes({"consumer": True})  # between steps: outside the feature

    asyncio.run(co())
    for _ in gen():
        set_event_attributes({"consumer": True})
    asyncio.run(drain())
    assert attributes(provider, "co")["bucket.attributes.n"] == 1
    assert attributes(provider, "gen")["bucket.attributes.n"] == 2
    assert attributes(provider, "agen")["bucket.attributes.n"] == 3
    for name in ("gen", "agen"):
        assert "bucket.attributes.consumer" not in attributes(provider, name)


def test_set_event_attributes_outside_a_feature_is_a_no_op(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside any feature: nothing changes, one debug line for the whole process."""
    tracer = provider.get_tracer("app")
    track_module._said_outside = False
    with (
        caplog.at_level(logging.DEBUG, logger="otel_bucket"),
        tracer.start_as_current_span("request"),
    ):
        set_event_attributes({"rows": 1})
        set_event_attributes({"rows": 2})
    assert attributes(provider, "request") == {}
    lines = [r for r in caplog.records if "outside a feature" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.DEBUG


@pytest.mark.parametrize(
    ("value", "error"), [(["rows"], TypeError), ({1: 2}, TypeError), ({" ": 1}, ValueError)]
)
def test_set_event_attributes_bad_arguments(value: Any, error: type[Exception]) -> None:
    """A non-mapping or a bad key raises naming the argument, inside a feature or not."""
    with pytest.raises(error, match="attributes"):
        set_event_attributes(value)
