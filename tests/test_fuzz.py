"""Property tests: whatever attributes a span carries, every call sent is valid (issue 5, point 4).

Spans come from a real ``TracerProvider`` with attribute keys and values that OpenTelemetry
accepts; calls go to a real HTTP server on 127.0.0.1 and are checked against the Tracking API's
field tables (``otel_bucket.devserver._schema``, the devserver's validator).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_bucket import BucketSpanExporter
from otel_bucket.devserver._schema import parse_body, validate_call
from otel_bucket.export._mapping import plan_calls
from tests._capture import CaptureServer
from tests._spans import make_spans

KEY = "trKEY-fuzz"
ID_FIELDS = ("userId", "companyId", "event")
# Not too large: ints beyond 4,300 digits have their own test below.
HUGE = 10**400

# -- strategies -------------------------------------------------------------------------------

texts = st.text(max_size=20)  # any code point but surrogates, "" included
ints = st.integers() | st.integers(min_value=-HUGE, max_value=HUGE)
floats = st.floats()  # nan, inf, -inf, -0.0, subnormals included
scalars = st.one_of(texts, st.booleans(), ints, floats)
homogeneous = st.one_of(
    st.lists(texts, max_size=4),
    st.lists(st.booleans(), max_size=4),
    st.lists(ints, max_size=4),
    st.lists(floats, max_size=4),
    st.lists(st.none() | texts, max_size=4),  # None elements are allowed in sequences
).map(tuple)
# What OpenTelemetry 1.4x also holds on a span: bytes, mappings, mixed and nested sequences.
extended = st.one_of(
    st.binary(max_size=8),
    st.dictionaries(texts, scalars, max_size=3),
    st.lists(st.one_of(st.none(), scalars, st.binary(max_size=4)), max_size=4).map(tuple),
    st.lists(st.lists(scalars, max_size=2).map(tuple), max_size=3).map(tuple),
)
values = st.one_of(scalars, homogeneous, extended)
ids = st.one_of(st.text(min_size=1, max_size=8), ints, texts, values)  # often usable, not always

SPECIAL_KEYS = ("enduser.id", "user.id", "bucket.event", "bucket.company.id")
ATTRIBUTE_PREFIXES = ("bucket.user.", "bucket.company.", "bucket.attributes.")
PREFIXES = (*ATTRIBUTE_PREFIXES, "bucket.", "enduser.", "user.")
keys = st.one_of(
    st.sampled_from(SPECIAL_KEYS),
    st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(PREFIXES), texts),
    st.text(min_size=1, max_size=20),
)


@st.composite
def span_attributes(draw: st.DrawFn) -> dict[str, Any]:
    """Attributes of one span: mostly ids (of any type), a few attributes under each prefix,
    then anything under any key."""
    attributes: dict[str, Any] = {}
    for key in SPECIAL_KEYS:
        if draw(st.integers(0, 3)):
            attributes[key] = draw(ids)
    for prefix in ATTRIBUTE_PREFIXES:
        named = draw(st.dictionaries(texts, values, max_size=3))
        attributes.update({prefix + name: value for name, value in named.items()})
    attributes.update(draw(st.dictionaries(keys, values, max_size=5)))
    return attributes


batches = st.lists(span_attributes(), min_size=1, max_size=6)

# -- helpers ----------------------------------------------------------------------------------


def _check_call(method: str, payload: Any) -> None:
    assert validate_call(method, payload) == [], (method, payload)
    for name in ID_FIELDS:
        if name in payload:
            assert isinstance(payload[name], str)
            assert payload[name].strip()


_DROPPED = object()


def _expected(value: object) -> object:
    """Contract section 2: how an attribute value is sent, or ``_DROPPED``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROPPED
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return ",".join(str(item) for item in value if item is not None)
    return _DROPPED


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureServer]:
    """One capture server for all examples (hypothesis runs many per test)."""
    srv = CaptureServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def exporter(capture: CaptureServer) -> Iterator[BucketSpanExporter]:
    """An exporter to the capture server; deduplication off so every planned call is sent."""
    exp = BucketSpanExporter(KEY, endpoint=capture.url, dedupe_window=0, timeout=5)
    yield exp
    exp.shutdown()


# -- properties -------------------------------------------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches)
def test_export_sends_only_valid_calls(
    batch: list[dict[str, Any]], capture: CaptureServer, exporter: BucketSpanExporter
) -> None:
    """Export never raises nor fails; each body sent parses as JSON and validates."""
    spans = make_spans(*batch)
    plan = plan_calls(spans)
    assert plan.skipped_spans == 0  # no span was too strange to map
    seen = len(capture.requests)
    undelivered = exporter.stats.undelivered

    assert exporter.export(spans) is SpanExportResult.SUCCESS

    sent = capture.requests[seen:]
    assert len(sent) == sum(len(phase) for phase in plan.phases)
    assert exporter.stats.undelivered == undelivered
    for request in sent:
        assert request.path.startswith(f"/{KEY}/")
        _check_call(request.api_method, parse_body(request.raw))


@settings(max_examples=200, deadline=None)
@given(batch=batches)
def test_mapped_calls_are_valid_json(batch: list[dict[str, Any]]) -> None:
    """Every planned call serializes as strict JSON and validates, with non-empty string ids."""
    plan = plan_calls(make_spans(*batch))
    assert plan.skipped_spans == 0
    for phase in plan.phases:
        for call in phase:
            raw = json.dumps(call.payload, allow_nan=False).encode()
            _check_call(call.method, parse_body(raw))


@settings(max_examples=200, deadline=None)
@given(
    user=st.text(min_size=1, max_size=8).filter(str.strip),
    attributes=st.dictionaries(texts.filter(bool), values, max_size=6),
)
def test_user_attributes_arrive_as_the_contract_says(
    user: str, attributes: Mapping[str, Any]
) -> None:
    """Str/bool/int/finite float as they are, sequences joined by commas, the rest dropped."""
    span_attributes = {"enduser.id": user} | {f"bucket.user.{k}": v for k, v in attributes.items()}
    (span,) = make_spans(span_attributes)
    (call,) = plan_calls([span]).users
    sent = parse_body(json.dumps(call.payload, allow_nan=False).encode())
    # What the span holds after the SDK's own cleaning (which varies across SDK versions).
    held = {
        k[len("bucket.user.") :]: v for k, v in (span.attributes or {}).items() if k != "enduser.id"
    }
    want = {k: _expected(v) for k, v in held.items()}
    assert sent.get("attributes", {}) == {k: v for k, v in want.items() if v is not _DROPPED}
    assert sent["userId"] == user


@pytest.mark.parametrize(
    ("value", "kept"),
    [(10**5000, None), ((1, 10**5000), {"n": "1"})],
    ids=["int", "sequence"],
)
def test_int_too_long_to_print_is_dropped_not_the_call(
    value: object, kept: object, capture: CaptureServer, exporter: BucketSpanExporter
) -> None:
    """A huge int costs only itself (the attribute, or its element): the calls still go out."""
    spans = make_spans({"enduser.id": "u", "bucket.user.n": value, "bucket.event": "E"})
    seen = len(capture.requests)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    sent = capture.requests[seen:]
    assert [r.api_method for r in sent] == ["user", "event"]
    assert sent[0].json.get("attributes") == kept


def test_start_time_past_year_9999_still_gives_a_valid_call() -> None:
    """A span started after 9999-12-31 still maps to a call that validates."""
    spans = make_spans({"enduser.id": "u"}, start=253_402_300_800 * 10**9)
    for phase in plan_calls(spans).phases:
        for call in phase:
            _check_call(call.method, call.payload)
