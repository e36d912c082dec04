"""Attribute values users hand us become values a span can hold (contract section 9)."""

from __future__ import annotations

import enum
import logging
import math
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from otel_bucket.instrument._values import coerce_attributes, coerce_value


class Plan(enum.Enum):
    PRO = "pro"


class Seats(enum.IntEnum):
    TEN = 10


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class HostileList(list[int]):
    def __iter__(self) -> Any:
        raise RuntimeError("no iteration")


UID = UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ("", ""),
        (True, True),
        (0, 0),
        (-3, -3),
        (2.5, 2.5),
        (datetime(2026, 11, 27, 14, 3, 5, tzinfo=timezone.utc), "2026-11-27T14:03:05+00:00"),
        (datetime(2026, 11, 27, 14, 3, 5), "2026-11-27T14:03:05"),
        (date(2026, 11, 27), "2026-11-27"),
        (Plan.PRO, "pro"),
        (Seats.TEN, 10),
        (UID, "12345678-1234-5678-1234-567812345678"),
        (Decimal("9.99"), 9.99),
        (["a", "b"], ("a", "b")),
        ((1, 2), (1, 2)),
        ([1.5, None, 2.5], (1.5, 2.5)),
        ([Plan.PRO, "basic"], ("pro", "basic")),
        ([], ()),
    ],
)
def test_sendable_values_are_kept_or_converted(value: object, expected: object) -> None:
    """Primitives stay; datetimes, enums, UUIDs, decimals and sequences are converted."""
    assert coerce_value(value) == expected
    assert type(coerce_value(value)) is type(expected)


@pytest.mark.parametrize(
    "value",
    [
        object(),
        Unprintable(),
        {"nested": "dict"},
        {1, 2},
        b"bytes",
        math.nan,
        math.inf,
        Decimal("NaN"),
        [1, "mixed"],
        [[1], [2]],
        HostileList([1]),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unsendable_values_are_dropped_with_a_warning(
    value: object, caplog: pytest.LogCaptureFixture
) -> None:
    """What a span cannot hold is dropped with a warning naming the argument and key."""
    with caplog.at_level(logging.WARNING, logger="otel_bucket.instrument._values"):
        assert coerce_value(value, argument="user_attributes", key=f"k{id(value)}") is None
    assert "user_attributes" in caplog.text


def test_none_is_dropped_silently(caplog: pytest.LogCaptureFixture) -> None:
    """``None`` means "no value": dropped without a warning."""
    with caplog.at_level(logging.WARNING):
        assert coerce_attributes({"a": None, "b": 1}, argument="attributes") == {"b": 1}
    assert caplog.records == []


def test_the_same_warning_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A bad value repeated on every request warns once, not per request."""
    with caplog.at_level(logging.WARNING, logger="otel_bucket.instrument._values"):
        for _ in range(5):
            coerce_attributes({"once": object()}, argument="company_attributes")
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    ("attributes", "error", "match"),
    [
        (["a"], TypeError, "attributes must be a mapping"),
        ({1: "a"}, TypeError, "attributes keys must be strings"),
        ({" ": "a"}, ValueError, "attributes keys must not be empty"),
    ],
)
def test_bad_mappings_raise_naming_the_argument(
    attributes: Any, error: type[Exception], match: str
) -> None:
    """A mapping that is not one, or bad keys, raise TypeError/ValueError naming the argument."""
    with pytest.raises(error, match=match):
        coerce_attributes(attributes, argument="attributes")


def test_coerced_mapping_is_a_new_dict() -> None:
    """The caller's mapping is never modified."""
    given = {"when": date(2026, 1, 2), "gone": None}
    assert coerce_attributes(given, argument="attributes") == {"when": "2026-01-02"}
    assert given == {"when": date(2026, 1, 2), "gone": None}
