"""Bucket attributes survive the SDK's span attribute count limit and never evict the app's own."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import otel_bucket.instrument._limits as limits
from otel_bucket import feature, identify, install, set_event_attributes, track
from otel_bucket.ground._throttle import Throttle
from otel_bucket.instrument._limits import HEADROOM, attribute_limit
from tests._capture import CaptureServer


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    """Each test sees its own first warning about cut attributes."""
    limits._cuts = Throttle(60.0, time.monotonic)


def new_provider(**span_limits: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    limits_ = SpanLimits(**span_limits) if span_limits else None
    provider = TracerProvider(span_limits=limits_, shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, memory = new_provider()
    yield provider, memory
    provider.shutdown()


def only(memory: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [s for s in memory.get_finished_spans() if s.name == name]
    return span


def many(prefix: str, count: int) -> dict[str, object]:
    return {f"{prefix}{i:03d}": i for i in range(count)}


def test_the_limit_is_read_where_the_sdk_keeps_it() -> None:
    """The tracer's and the span's SpanLimits give the limit; a moved SDK field fails here."""
    provider, _ = new_provider(max_span_attributes=17)
    tracer = provider.get_tracer("t")
    assert attribute_limit(tracer) == 17
    with tracer.start_as_current_span("s") as span:
        assert attribute_limit(span) == 17
    assert attribute_limit(new_provider()[0].get_tracer("t")) == 128  # the SDK default
    assert attribute_limit(object()) is None


def test_the_limit_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_ATTRIBUTE_COUNT_LIMIT and OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT are honoured as by the SDK."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "40")
    assert attribute_limit(new_provider()[0].get_tracer("t")) == 40
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "30")
    assert attribute_limit(new_provider()[0].get_tracer("t")) == 30


def test_127_user_attributes_still_send_event_and_user(server: CaptureServer) -> None:
    """identify() with 127 user attributes: the feature's event and the user call still go out."""
    provider, memory = new_provider()
    install(provider, tracking_key="k", endpoint=server.url)

    @feature("Export", attributes={"format": "csv"}, tracer_provider=provider)
    def export() -> None:
        pass

    with identify("u1", "c1", user_attributes=many("a", 127)):
        export()
    assert provider.force_flush()
    provider.shutdown()
    span = only(memory, "Export")
    assert span.attributes is not None and len(span.attributes) == 128
    assert span.dropped_attributes == 0  # we trimmed; the SDK evicted nothing
    (event,) = server.calls("event")
    assert event == {
        "event": "Export",
        "userId": "u1",
        "attributes": {"format": "csv"},
        "timestamp": event["timestamp"],
    }
    (user,) = server.calls("user")
    assert user["userId"] == "u1"
    # What was cut is the least important: the first user attributes, never the ids.
    assert len(user["attributes"]) == 124
    assert "a126" in user["attributes"] and "a000" not in user["attributes"]
    assert [c["companyId"] for c in server.calls("company")] == ["c1"]


def test_feature_with_127_attributes_still_sends_its_event(server: CaptureServer) -> None:
    """@feature with 127 attributes inside identify: event, user and company calls all arrive."""
    provider, memory = new_provider()
    install(provider, tracking_key="k", endpoint=server.url)

    @feature("Wide", attributes=many("e", 127), tracer_provider=provider)
    def wide() -> None:
        pass

    with identify("u1", "c1", user_attributes={"name": "Ada"}):
        wide()
    assert provider.force_flush()
    provider.shutdown()
    assert only(memory, "Wide").dropped_attributes == 0
    (event,) = server.calls("event")
    assert event["userId"] == "u1"
    assert len(event["attributes"]) == 125  # 128 - enduser.id, company id, bucket.event
    assert "e126" in event["attributes"]
    assert [c["userId"] for c in server.calls("user")] == ["u1"]
    assert [c["companyId"] for c in server.calls("company")] == ["c1"]


def test_cutting_is_warned_once_a_minute(
    traced: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """A cut is one warning naming the limit and its variables, not one per call."""
    provider, _ = traced

    @feature("Wide", attributes=many("e", 200), tracer_provider=provider)
    def wide() -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        for user in ("u1", "u2", "u3"):
            with identify(user):
                wide()
    warnings = [r for r in caplog.records if "attribute count limit" in r.getMessage()]
    assert len(warnings) == 1
    assert "128" in warnings[0].getMessage()
    assert "OTEL_ATTRIBUTE_COUNT_LIMIT" in warnings[0].getMessage()


def test_fit_is_computed_once_per_identity(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Two calls under one identity start their spans with the very same attribute dict."""
    provider, _ = traced
    seen: list[object] = []
    tracer = provider.get_tracer("otel_bucket")
    original = type(tracer).start_span

    def spy(self: Any, name: str, context: Any = None, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("attributes"))
        return original(self, name, context, *args, **kwargs)

    @feature("Export", tracer_provider=provider)
    def export() -> None:
        pass

    type(tracer).start_span = spy  # type: ignore[method-assign]
    try:
        with identify("u1", user_attributes=many("a", 300)):
            export()
            export()
        with identify("u2"):
            export()
    finally:
        type(tracer).start_span = original  # type: ignore[method-assign]
    assert seen[0] is seen[1]
    assert seen[2] is not seen[0]


def test_identify_never_evicts_the_applications_attributes(
    traced: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """A server span with 120 attributes keeps all 120: the ids are stamped, the rest if it fits."""
    provider, memory = traced
    tracer = provider.get_tracer("app")
    http = {f"http.header.{i:03d}": "x" for i in range(120)}
    with (
        caplog.at_level(logging.WARNING, logger="otel_bucket"),
        tracer.start_as_current_span("GET /", kind=SpanKind.SERVER, attributes=http),
        identify("u1", "c1", user_attributes=many("a", 10)),
    ):
        pass
    span = only(memory, "GET /")
    attributes = dict(span.attributes or {})
    assert span.dropped_attributes == 0
    assert {k: v for k, v in attributes.items() if k.startswith("http.")} == http
    assert attributes["enduser.id"] == "u1"
    assert attributes["bucket.company.id"] == "c1"
    # 128 - 120 = 8 free: two ids, then user attributes while HEADROOM slots stay free.
    assert len(attributes) == 128 - HEADROOM
    assert "attribute count limit" in caplog.text


def test_a_full_server_span_gets_nothing(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """On a span already at the limit identify adds nothing; features still carry the identity."""
    provider, memory = traced
    tracer = provider.get_tracer("app")

    @feature("Export", tracer_provider=provider)
    def export() -> None:
        pass

    http = {f"http.h{i:03d}": i for i in range(128)}
    with tracer.start_as_current_span("GET /", attributes=http), identify("u1"):
        export()
    assert dict(only(memory, "GET /").attributes or {}) == http
    assert dict(only(memory, "Export").attributes or {})["enduser.id"] == "u1"


def test_ids_already_on_the_span_are_replaced_in_place(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Re-stamping an id a full span already holds takes no new slot and evicts nothing."""
    provider, memory = traced
    tracer = provider.get_tracer("app")
    held = {"enduser.id": "old", **{f"h{i:03d}": i for i in range(127)}}
    with tracer.start_as_current_span("GET /", attributes=held), identify("new"):
        pass
    span = only(memory, "GET /")
    assert span.dropped_attributes == 0
    assert dict(span.attributes or {})["enduser.id"] == "new"


def test_set_event_attributes_fills_free_slots_only(
    traced: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """Per-call attributes never push the ids or bucket.event out of a nearly full span."""
    provider, memory = traced

    @feature("Export", attributes=many("e", 120), tracer_provider=provider)
    def export() -> None:
        set_event_attributes(many("late", 20))

    with caplog.at_level(logging.WARNING, logger="otel_bucket"), identify("u1", "c1"):
        export()
    span = only(memory, "Export")
    attributes = dict(span.attributes or {})
    assert span.dropped_attributes == 0
    assert len(attributes) == 128
    assert attributes["enduser.id"] == "u1"
    assert attributes["bucket.event"] == "Export"
    assert sum(k.startswith("bucket.attributes.late") for k in attributes) == 5
    assert "attribute count limit" in caplog.text


def test_track_is_fitted_like_a_feature(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """track() with too many attributes keeps the ids and the event."""
    provider, memory = traced
    with identify("u1"):
        track("Sent message", many("t", 200), tracer_provider=provider)
    span = only(memory, "Sent message")
    attributes = dict(span.attributes or {})
    assert span.dropped_attributes == 0
    assert attributes["enduser.id"] == "u1"
    assert attributes["bucket.event"] == "Sent message"
    assert len(attributes) == 128


def test_a_small_limit_keeps_the_event_and_the_user(server: CaptureServer) -> None:
    """With OTEL-style limits as low as 2, bucket.event and enduser.id are what stays."""
    provider, memory = new_provider(max_span_attributes=2)
    install(provider, tracking_key="k", endpoint=server.url)

    @feature("Tiny", attributes={"a": 1}, tracer_provider=provider)
    def tiny() -> None:
        pass

    with identify("u1", "c1", user_attributes={"n": 1}):
        tiny()
    assert provider.force_flush()
    provider.shutdown()
    assert dict(only(memory, "Tiny").attributes or {}) == {
        "enduser.id": "u1",
        "bucket.event": "Tiny",
    }
    assert [(c["event"], c["userId"]) for c in server.calls("event")] == [("Tiny", "u1")]


def test_one_free_slot_goes_to_the_user_id(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """With a single free slot the user id is stamped (the user call), not the company id."""
    provider, memory = traced
    tracer = provider.get_tracer("app")
    held = {f"h{i:03d}": i for i in range(127)}
    with tracer.start_as_current_span("GET /", attributes=held), identify("u1", "c1"):
        pass
    attributes = dict(only(memory, "GET /").attributes or {})
    assert attributes == {**held, "enduser.id": "u1"}


@pytest.mark.parametrize("user_attributes", [30, 120])
def test_attributes_set_after_identify_push_ours_out_not_the_applications(
    traced: tuple[TracerProvider, InMemorySpanExporter], user_attributes: int
) -> None:
    """Issue 19: 14 attributes at the span's start, identify(), then 106 more (the app's own
    120, default limit 128): all 120 stay; what goes is ours, the details before the ids."""
    provider, memory = traced
    tracer = provider.get_tracer("app")
    early = {f"app.early{i:03d}": i for i in range(14)}
    late = {f"app.late{i:03d}": i for i in range(106)}
    with (
        tracer.start_as_current_span("GET /", attributes=early) as span,
        identify("u1", "c1", user_attributes=many("a", user_attributes)),
    ):
        span.set_attributes(late)
    attributes = dict(only(memory, "GET /").attributes or {})
    assert {k: v for k, v in attributes.items() if k.startswith("app.")} == {**early, **late}
    assert len(attributes) == 128
    assert attributes["enduser.id"] == "u1" and attributes["bucket.company.id"] == "c1"
