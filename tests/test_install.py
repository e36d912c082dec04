"""``install``: analytics reach Bucket whatever the sampler keeps, and nothing else changes."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once

from otel_bucket import BucketSpanProcessor, feature, identify, install
from otel_bucket.instrument._sampling import BucketSampler
from otel_bucket.lifecycle._install import existing_tracers
from tests._capture import CaptureServer


class SeededIds(IdGenerator):
    """Random-looking but repeatable ids, so two runs sample the same traces."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64)

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128)


def new_provider(
    sampler: Sampler = ALWAYS_ON, seed: int = 7
) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A provider with an in-memory exporter beside whatever the test adds."""
    provider = TracerProvider(sampler=sampler, id_generator=SeededIds(seed), shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def serve(provider: TracerProvider, requests: int) -> None:
    """Requests as a web framework would trace them: server span, identify, one feature."""
    tracer = provider.get_tracer("app")

    @feature("Export CSV", attributes={"format": "csv"}, tracer_provider=provider)
    def export_csv() -> None:
        with tracer.start_as_current_span("SELECT rows"):
            pass

    for i in range(requests):
        with (
            tracer.start_as_current_span("GET /export", kind=SpanKind.SERVER),
            identify(f"u{i}", f"c{i % 10}", company_attributes={"plan": "pro"}),
        ):
            export_csv()


def snapshot(memory: InMemorySpanExporter) -> list[tuple[Any, ...]]:
    """What the other exporter received, comparable across two runs."""
    return [
        (
            s.name,
            s.context.trace_id,
            s.context.span_id,
            s.context.trace_flags,
            dict(s.attributes or {}),
        )
        for s in memory.get_finished_spans()
    ]


@pytest.fixture
def fresh_global() -> Iterator[None]:
    """No global tracer provider set, as in a new process; restored afterwards."""
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    yield
    current = trace._TRACER_PROVIDER
    if isinstance(current, TracerProvider):
        current.shutdown()
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


def test_sampling_at_one_percent_still_sends_every_feature(server: CaptureServer) -> None:
    """At 1 % trace sampling, 200 requests give 200 events, each user and company association."""
    provider, _ = new_provider(ParentBased(TraceIdRatioBased(0.01)))
    install(provider, tracking_key="k", endpoint=server.url)
    serve(provider, 200)
    assert provider.force_flush()
    events = server.calls("event")
    assert len(events) == 200
    assert {e["userId"] for e in events} == {f"u{i}" for i in range(200)}
    assert all(e["event"] == "Export CSV" and e["attributes"] == {"format": "csv"} for e in events)
    assert {c["userId"] for c in server.calls("user")} == {f"u{i}" for i in range(200)}
    companies = {(c["companyId"], c["userId"]) for c in server.calls("company")}
    assert companies == {(f"c{i % 10}", f"u{i}") for i in range(200)}
    provider.shutdown()


@pytest.mark.parametrize(
    "sampler",
    [
        ParentBased(TraceIdRatioBased(0.01)),
        ParentBased(TraceIdRatioBased(0.5)),
        ALWAYS_ON,
        ALWAYS_OFF,
    ],
    ids=["1%", "50%", "always-on", "always-off"],
)
def test_other_exporters_receive_exactly_what_they_did_before(
    server: CaptureServer, sampler: Sampler
) -> None:
    """Beside an InMemorySpanExporter, install() adds no sampled span and changes none."""
    before, before_memory = new_provider(sampler)
    serve(before, 100)
    after, after_memory = new_provider(sampler)
    install(after, tracking_key="k", endpoint=server.url)
    serve(after, 100)
    assert after.force_flush()
    assert snapshot(after_memory) == snapshot(before_memory)
    assert len(server.calls("event")) == 100
    before.shutdown()
    after.shutdown()


def test_installing_twice_does_not_double_the_calls(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A second install() on the same provider returns the first processor and adds nothing."""
    provider, _ = new_provider()
    first = install(provider, tracking_key="k", endpoint=server.url)
    with caplog.at_level(logging.WARNING, logger="otel_bucket.lifecycle._install"):
        second = install(provider, tracking_key="other", endpoint=server.url)
    assert second is first
    assert "already installed" in caplog.text
    assert isinstance(provider.sampler, BucketSampler)
    assert not isinstance(provider.sampler.wrapped, BucketSampler)
    serve(provider, 5)
    assert provider.force_flush()
    assert len(server.calls("event")) == 5
    assert {r.key for r in server.requests} == {"k"}
    provider.shutdown()


def _sdk_caches_tracers() -> bool:
    """opentelemetry-sdk caches tracers per scope (``TracerProvider._tracers``) since 1.41."""
    major, minor = (int(part) for part in version("opentelemetry-sdk").split(".")[:2])
    return (major, minor) >= (1, 41)


@pytest.mark.skipif(
    not _sdk_caches_tracers(),
    reason="SDKs before 1.41 make a new tracer, with the current sampler, on every get_tracer",
)
def test_tracers_handed_out_before_install_get_the_wrapped_sampler(server: CaptureServer) -> None:
    """The one private SDK access: fails loudly if the SDK stops caching tracers where we look."""
    provider, _ = new_provider(ALWAYS_OFF)
    early = provider.get_tracer("instrumentation loaded before install")
    assert isinstance(getattr(provider, "_tracers", None), dict), (
        "SDK moved TracerProvider._tracers"
    )
    assert early in existing_tracers(provider)
    install(provider, tracking_key="k", endpoint=server.url)
    assert isinstance(early.sampler, BucketSampler)  # type: ignore[attr-defined]
    assert early.sampler.wrapped is ALWAYS_OFF  # type: ignore[attr-defined]
    provider.shutdown()


def test_features_used_before_install_are_covered(server: CaptureServer) -> None:
    """A feature whose tracer was looked up before install() still reaches Bucket after it."""
    provider, _ = new_provider(ALWAYS_OFF)

    @feature("Early", tracer_provider=provider)
    def early() -> None:
        pass

    with identify("u1"):
        early()  # caches the tracer, with the sampler that drops everything
    install(provider, tracking_key="k", endpoint=server.url)
    with identify("u1"):
        early()
    assert provider.force_flush()
    assert [e["event"] for e in server.calls("event")] == ["Early"]
    provider.shutdown()


def test_install_without_provider_sets_a_global_sdk_provider(
    fresh_global: None, server: CaptureServer
) -> None:
    """With no global SDK provider, install() creates and sets one; earlier features use it."""

    @feature("Defined first")
    def defined_first() -> None:
        pass

    with identify("u1"):
        defined_first()  # before install: the global provider is only a proxy
    processor = install(tracking_key="k", endpoint=server.url)
    global_provider = trace.get_tracer_provider()
    assert isinstance(global_provider, TracerProvider)
    assert install() is processor
    with identify("u1"):
        defined_first()
    assert global_provider.force_flush()
    assert [e["event"] for e in server.calls("event")] == ["Defined first"]


def test_install_uses_an_existing_global_sdk_provider(
    fresh_global: None, server: CaptureServer
) -> None:
    """When the global provider is an SDK provider, install() adds to it."""
    provider, _ = new_provider()
    trace.set_tracer_provider(provider)
    processor = install(tracking_key="k", endpoint=server.url)
    assert install(provider) is processor


def test_install_refuses_a_global_provider_it_cannot_replace(fresh_global: None) -> None:
    """A non-SDK global provider that is already set gives a clear RuntimeError."""
    trace.set_tracer_provider(trace.NoOpTracerProvider())
    with pytest.raises(RuntimeError, match="tracer_provider="):
        install(tracking_key="k")


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("provider",), {"tracking_key": "k"}, TypeError, "tracer_provider"),
        ((trace.NoOpTracerProvider(),), {"tracking_key": "k"}, TypeError, "tracer_provider"),
        ((), {"tracking_key": "k", "bogus": 1}, TypeError, "bogus"),
        ((), {}, ValueError, "tracking"),
        ((), {"tracking_key": "k", "timeout": -1}, ValueError, "timeout"),
    ],
)
def test_bad_arguments_raise_and_change_nothing(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad input raises naming the argument, and leaves the provider untouched."""
    provider, _ = new_provider()
    call_args = args or (provider,)
    with pytest.raises(error, match=match):
        install(*call_args, **kwargs)
    assert provider.sampler is ALWAYS_ON
    provider.shutdown()


def test_install_returns_a_bucket_processor(server: CaptureServer) -> None:
    """The returned processor exposes the exporter and its delivery counters."""
    provider, _ = new_provider()
    processor = install(provider, tracking_key="k", endpoint=server.url)
    assert isinstance(processor, BucketSpanProcessor)
    serve(provider, 1)
    assert provider.force_flush()
    assert processor.exporter.stats.delivered >= 3  # type: ignore[attr-defined]
    provider.shutdown()


@pytest.mark.parametrize(
    ("inner", "attributes", "expected"),
    [
        (ALWAYS_OFF, {"bucket.event": "e"}, Decision.RECORD_ONLY),
        (ALWAYS_OFF, {"enduser.id": "u"}, Decision.RECORD_ONLY),
        (ALWAYS_OFF, {"user.id": "u"}, Decision.RECORD_ONLY),
        (ALWAYS_OFF, {"bucket.company.id": "c"}, Decision.RECORD_ONLY),
        (ALWAYS_OFF, {"http.route": "/x"}, Decision.DROP),
        (ALWAYS_OFF, None, Decision.DROP),
        (ALWAYS_ON, {"bucket.event": "e"}, Decision.RECORD_AND_SAMPLE),
        (ALWAYS_ON, None, Decision.RECORD_AND_SAMPLE),
    ],
)
def test_sampler_records_only_the_bucket_spans_it_would_drop(
    inner: Sampler, attributes: dict[str, Any] | None, expected: Decision
) -> None:
    """The wrapped sampler's answer stands, except DROP becomes RECORD_ONLY for Bucket spans."""
    result = BucketSampler(inner).should_sample(None, 1, "span", attributes=attributes)
    assert result.decision is expected
    if expected is not Decision.DROP:
        assert dict(result.attributes) == (attributes or {})


def test_sampler_describes_what_it_wraps() -> None:
    """The description names the wrapped sampler; a non-sampler is a TypeError."""
    assert BucketSampler(ALWAYS_OFF).get_description() == "BucketSampler{AlwaysOffSampler}"
    with pytest.raises(TypeError, match="sampler"):
        BucketSampler("always_on")  # type: ignore[arg-type]
