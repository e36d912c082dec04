"""Spans to calls: contract section 2."""

from __future__ import annotations

from typing import Any

import pytest

from otel_bucket import (
    BUCKET_ATTRIBUTES_PREFIX,
    BUCKET_COMPANY_ID,
    BUCKET_COMPANY_PREFIX,
    BUCKET_EVENT,
    BUCKET_USER_PREFIX,
    ENDUSER_ID,
    USER_ID,
)
from otel_bucket.devserver._schema import validate_call
from otel_bucket.export._mapping import plan_calls
from otel_bucket.ground._call import format_timestamp
from tests._spans import make_spans, payloads

T0 = 1_795_788_185_123_456_789  # 2026-11-27T14:03:05.123456789Z


def test_constants_are_the_documented_keys() -> None:
    """The public constants spell the attribute keys of contract section 1."""
    assert (BUCKET_EVENT, BUCKET_ATTRIBUTES_PREFIX, ENDUSER_ID, USER_ID) == (
        "bucket.event",
        "bucket.attributes.",
        "enduser.id",
        "user.id",
    )
    assert (BUCKET_USER_PREFIX, BUCKET_COMPANY_ID, BUCKET_COMPANY_PREFIX) == (
        "bucket.user.",
        "bucket.company.id",
        "bucket.company.",
    )


def test_full_span_gives_user_company_and_event_calls_in_phase_order() -> None:
    """One span with everything gives a user, a company and an event call, in that order."""
    spans = make_spans(
        {
            "enduser.id": "u1",
            "bucket.user.name": "Ada",
            "bucket.company.id": "c1",
            "bucket.company.plan": "pro",
            "bucket.event": "Sent message",
            "bucket.attributes.position": "popover",
        },
        start=T0,
    )
    ts = "2026-11-27T14:03:05.123Z"
    assert payloads(spans) == [
        ("user", {"userId": "u1", "attributes": {"name": "Ada"}, "timestamp": ts}),
        (
            "company",
            {"companyId": "c1", "userId": "u1", "attributes": {"plan": "pro"}, "timestamp": ts},
        ),
        (
            "event",
            {
                "event": "Sent message",
                "userId": "u1",
                "attributes": {"position": "popover"},
                "timestamp": ts,
            },
        ),
    ]


def test_timestamp_is_iso_utc_with_milliseconds() -> None:
    """Start times are ISO 8601 UTC with exactly three fraction digits and a Z."""
    assert format_timestamp(T0) == "2026-11-27T14:03:05.123Z"
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("raw", "sent"),
    [(42, "42"), ("abc", "abc"), (" x ", " x "), (1.5, "1.5")],
)
def test_ids_are_sent_as_strings(raw: Any, sent: str) -> None:
    """Numeric ids become strings; string ids pass unchanged."""
    [(method, payload)] = payloads(make_spans({"enduser.id": raw}))
    assert method == "user"
    assert payload["userId"] == sent


@pytest.mark.parametrize("raw", ["", "   ", True, float("nan"), [1, 2]])
def test_empty_or_unusable_ids_count_as_absent(raw: Any) -> None:
    """Empty, whitespace, boolean, NaN and sequence ids make no call."""
    assert payloads(make_spans({"enduser.id": raw, "bucket.company.id": raw})) == []


def test_user_id_falls_back_to_user_dot_id() -> None:
    """Without enduser.id, user.id is the user."""
    [(_, payload)] = payloads(make_spans({"user.id": "fallback"}))
    assert payload["userId"] == "fallback"


def test_enduser_id_wins_over_user_id() -> None:
    """enduser.id takes precedence over user.id."""
    [(_, payload)] = payloads(make_spans({"enduser.id": "primary", "user.id": "other"}))
    assert payload["userId"] == "primary"


def test_company_without_user_has_no_user_id() -> None:
    """A company id alone gives a company call without userId."""
    [(method, payload)] = payloads(make_spans({"bucket.company.id": "c9"}))
    assert method == "company"
    assert "userId" not in payload
    assert "attributes" not in payload


def test_event_without_user_is_dropped_and_counted() -> None:
    """bucket.event without a user id cannot be sent: dropped and counted."""
    plan = plan_calls(make_spans({"bucket.event": "Orphan"}, {"bucket.event": "Other"}))
    assert plan.events == []
    assert plan.dropped_events == 2


def test_unrelated_spans_are_ignored() -> None:
    """Spans with no Bucket attribute make no call."""
    assert payloads(make_spans({"http.method": "GET"}, {})) == []


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("text", "text"),
        (True, True),
        (7, 7),
        (2.5, 2.5),
        (("a", "b", "c"), "a,b,c"),
        ((1, 2), "1,2"),
        ((True, False), "True,False"),
        ((1.5, 2.0), "1.5,2.0"),
        ((), ""),
    ],
)
def test_attribute_values(value: Any, sent: Any) -> None:
    """Scalars pass as they are; sequences are joined with commas."""
    [(_, user)] = payloads(make_spans({"enduser.id": "u", "bucket.user.v": value}))
    assert user["attributes"] == {"v": sent}
    assert type(user["attributes"]["v"]) is type(sent)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_dropped(value: float) -> None:
    """NaN and infinities are not JSON: they are never sent."""
    [(_, user)] = payloads(
        make_spans({"enduser.id": "u", "bucket.user.v": value, "bucket.user.k": 1})
    )
    assert user["attributes"] == {"k": 1}


def test_none_elements_of_sequences_are_skipped() -> None:
    """None elements in a sequence are left out of the joined string."""
    from otel_bucket.export._mapping import _value

    assert _value(["a", None, "b"]) == "a,b"


def test_company_id_is_not_a_company_attribute() -> None:
    """bucket.company.id is the id, never attributes['id']."""
    [(_, company)] = payloads(make_spans({"bucket.company.id": "c", "bucket.company.tier": 2}))
    assert company["attributes"] == {"tier": 2}


def test_calls_for_the_same_user_merge_with_later_spans_winning() -> None:
    """Within one export, one user call per user: attributes combined, later spans win."""
    spans = make_spans(
        {"enduser.id": "u", "bucket.user.a": 1, "bucket.user.b": "old"},
        {"enduser.id": "u", "bucket.user.b": "new", "bucket.user.c": True},
        start=T0,
    )
    [(_, user)] = payloads(spans)
    assert user["attributes"] == {"a": 1, "b": "new", "c": True}
    assert user["timestamp"] == format_timestamp(T0 + 1_000_000)


def test_merge_follows_start_time_not_arrival_order() -> None:
    """The span that started later wins even when it arrives first."""
    spans = make_spans(
        {"enduser.id": "u", "bucket.user.v": "first"},
        {"enduser.id": "u", "bucket.user.v": "second"},
        start=T0,
    )
    [(_, user)] = payloads(list(reversed(spans)))
    assert user["attributes"] == {"v": "second"}


def test_company_calls_merge_per_company_and_user() -> None:
    """Company calls merge per (companyId, userId)."""
    spans = make_spans(
        {"bucket.company.id": "c", "enduser.id": "u1", "bucket.company.a": 1},
        {"bucket.company.id": "c", "enduser.id": "u1", "bucket.company.b": 2},
        {"bucket.company.id": "c", "enduser.id": "u2"},
    )
    companies = [p for m, p in payloads(spans) if m == "company"]
    assert [(p["userId"], p.get("attributes")) for p in companies] == [
        ("u1", {"a": 1, "b": 2}),
        ("u2", None),
    ]


def test_events_are_never_merged() -> None:
    """Every span with bucket.event and a user is its own event call."""
    spans = make_spans(*[{"enduser.id": "u", "bucket.event": "E"}] * 3)
    assert [m for m, _ in payloads(spans)] == ["user", "event", "event", "event"]


def test_empty_attribute_names_are_skipped() -> None:
    """A bare prefix key (``bucket.user.``) names no attribute."""
    [(_, user)] = payloads(make_spans({"enduser.id": "u", "bucket.user.": "x"}))
    assert "attributes" not in user


def test_every_payload_validates_against_the_api_tables() -> None:
    """Every call the mapping builds passes the API document's field tables."""
    spans = make_spans(
        {"enduser.id": 1, "bucket.company.id": 2, "bucket.event": "E", "bucket.attributes.l": [1]},
        {"user.id": "x", "bucket.user.n": float("inf"), "bucket.company.id": "c"},
        {"bucket.company.id": "solo", "bucket.company.seats": 3},
    )
    calls = payloads(spans)
    assert {m for m, _ in calls} == {"user", "company", "event"}
    for method, payload in calls:
        assert validate_call(method, payload) == [], (method, payload)


def test_unreadable_span_is_skipped_not_fatal() -> None:
    """A span whose attributes cannot be read costs only itself."""

    class Broken:
        start_time = 1

        @property
        def attributes(self) -> dict[str, Any]:
            raise RuntimeError("boom")

    good = make_spans({"enduser.id": "u"})
    plan = plan_calls([Broken(), *good])  # type: ignore[list-item]
    assert plan.skipped_spans == 1
    assert [c.payload["userId"] for c in plan.users] == ["u"]
