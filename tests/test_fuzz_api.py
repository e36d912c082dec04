"""Property tests: whatever values an app hands ``identify`` and ``feature``, nothing is raised
into the app and every call that reaches the API is valid (issue 5, point 4)."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from otel_bucket import feature, identify, install
from otel_bucket.devserver._schema import parse_body, validate_call
from tests._capture import CaptureServer


class Color(enum.Enum):
    RED = "red"
    ONE = 1


class Opaque:
    """Something OpenTelemetry cannot hold and has no conversion."""

    def __str__(self) -> str:
        raise RuntimeError("even printing me fails")


app_values = st.one_of(
    st.none(),
    st.text(max_size=10),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.datetimes(timezones=st.none() | st.just(timezone.utc)),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.decimals(),  # NaN and infinities included
    st.sampled_from(list(Color)),
    st.binary(max_size=4),
    st.just(Opaque()),
    st.just(object()),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=4), st.floats()), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sets(st.integers(), max_size=3),
)
app_dicts = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(str.strip), app_values, max_size=5
)
user_ids = st.text(min_size=1, max_size=8).filter(str.strip) | st.integers() | st.uuids()


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureServer]:
    """One capture server for all examples."""
    srv = CaptureServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def provider(capture: CaptureServer) -> Iterator[TracerProvider]:
    """A provider with otel-bucket installed; deduplication off so every call is sent."""
    p = TracerProvider(shutdown_on_exit=False)
    install(p, tracking_key="k", endpoint=capture.url, dedupe_window=0, timeout=5)
    yield p
    p.shutdown()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    user=user_ids,
    company=user_ids,
    user_attributes=app_dicts,
    company_attributes=app_dicts.map(lambda d: {k: v for k, v in d.items() if k != "id"}),
    event_attributes=app_dicts,
)
def test_any_app_values_are_sent_validly_and_never_raise(
    user: Any,
    company: Any,
    user_attributes: dict[str, Any],
    company_attributes: dict[str, Any],
    event_attributes: dict[str, Any],
    capture: CaptureServer,
    provider: TracerProvider,
) -> None:
    """identify and feature accept any values; the event, user and company calls all validate."""

    @feature("Fuzzed", attributes=event_attributes, tracer_provider=provider)
    def work(x: int) -> int:
        return x + 1

    seen = len(capture.requests)
    with identify(
        user,
        company,
        user_attributes=user_attributes,
        company_attributes=company_attributes,
    ):
        assert work(41) == 42
    assert provider.force_flush()
    sent = capture.requests[seen:]
    assert sorted(r.api_method for r in sent) == ["company", "event", "user"]
    for request in sent:
        body = parse_body(request.raw)
        assert validate_call(request.api_method, body) == [], body
        assert body["userId"] == str(user)
    (event,) = [parse_body(r.raw) for r in sent if r.api_method == "event"]
    assert event["event"] == "Fuzzed"


def test_documented_conversions_arrive_as_documented(
    capture: CaptureServer, provider: TracerProvider
) -> None:
    """datetime → ISO string, Enum → value, UUID → str, Decimal → float, None dropped."""
    moment = datetime(2026, 11, 27, 14, 3, 5, tzinfo=timezone.utc)
    uid = uuid.UUID(int=7)
    attributes = {
        "when": moment,
        "day": date(2026, 11, 27),
        "at": time(14, 3),
        "color": Color.RED,
        "n": Color.ONE,
        "id": uid,
        "price": Decimal("9.5"),
        "gone": None,
        "took": timedelta(seconds=3),
    }

    @feature("Converted", attributes=attributes, tracer_provider=provider)
    def work() -> None:
        pass

    seen = len(capture.requests)
    with identify("u"):
        work()
    assert provider.force_flush()
    (event,) = [r.json for r in capture.requests[seen:] if r.api_method == "event"]
    assert event["attributes"] == {
        "when": moment.isoformat(),
        "day": "2026-11-27",
        "at": "14:03:00",
        "color": "red",
        "n": 1,
        "id": str(uid),
        "price": 9.5,
    }
