"""``BucketCall``: one Tracking API call as ``before_send`` sees it, and back again.

The exporter works on ``_mapping.Call`` (a method and the JSON payload as sent); a hook gets an
immutable, typed value instead, so it cannot change a payload behind the exporter's back, and
what it returns is checked before anything is sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Final, Literal

from otel_bucket.ground._call import Call, utc_iso

__all__ = ["AttributeValue", "BucketCall", "from_call", "to_call"]

AttributeValue = str | bool | int | float
Method = Literal["user", "company", "event"]

_METHODS: Final = ("user", "company", "event")


class _Unchanged:
    """The default of ``BucketCall.replace``'s arguments: keep the current value."""

    def __repr__(self) -> str:
        return "<unchanged>"


_UNCHANGED: Final = _Unchanged()
_NO_ATTRIBUTES: Final[Mapping[str, AttributeValue]] = MappingProxyType({})


def _check_id(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")


def _check_attributes(attributes: object) -> dict[str, AttributeValue]:
    if not isinstance(attributes, Mapping):
        raise TypeError(f"attributes must be a mapping, got {type(attributes).__name__}")
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            raise ValueError("attributes keys must be non-empty strings")
        if not isinstance(value, str | bool | int | float):
            raise TypeError(
                f"attributes values must be str, bool, int or float, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("attributes values must be finite numbers (JSON has no NaN)")
        out[key] = value
    return out


@dataclass(frozen=True, kw_only=True)
class BucketCall:
    """One call to the Bucket Tracking API, as ``before_send`` gets it: an immutable value.

    Build a changed copy with ``replace()``; every value is checked, so a call that the API
    could not take (an event without a user, an empty id) cannot be made.

    Args:
        method: ``"user"``, ``"company"`` or ``"event"``; a hook cannot change it.
        user_id: the user (required for user and event calls; optional for company calls,
            where it associates the user with the company).
        company_id: a company call's company. For an event call, the company its span named
            (``bucket.company.id``), given so a hook can filter on it: the Event API has no
            company, so it is never sent. Always None for a user call.
        event: an event call's name; None for the other methods.
        attributes: the call's attributes (read-only): str, bool, int or finite float values.
        timestamp: when it happened (timezone-aware), or None: the API then uses the time of
            receipt.

    Raises:
        TypeError: a value has the wrong type.
        ValueError: a value is malformed (an empty id, a naive timestamp), or the call lacks
            what its method requires.
    """

    method: Method
    user_id: str | None = None
    company_id: str | None = None
    event: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=lambda: _NO_ATTRIBUTES)
    timestamp: datetime | None = None

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be 'user', 'company' or 'event', got {self.method!r}")
        _check_id("user_id", self.user_id)
        _check_id("company_id", self.company_id)
        _check_id("event", self.event)
        if self.method in ("user", "event") and self.user_id is None:
            raise ValueError(f"user_id is required for a {self.method} call")
        if self.method == "company" and self.company_id is None:
            raise ValueError("company_id is required for a company call")
        if self.method == "user" and self.company_id is not None:
            raise ValueError("a user call has no company_id")
        if (self.method == "event") != (self.event is not None):
            raise ValueError("event is required for an event call, and only there")
        if self.timestamp is not None:
            if not isinstance(self.timestamp, datetime):
                raise TypeError(
                    f"timestamp must be a datetime or None, got {type(self.timestamp).__name__}"
                )
            if self.timestamp.utcoffset() is None:
                raise ValueError("timestamp must be timezone-aware (e.g. tzinfo=timezone.utc)")
        if self.attributes is not _NO_ATTRIBUTES:
            # A copy: the caller's dict may change later; this value must not.
            frozen = MappingProxyType(_check_attributes(self.attributes))
            object.__setattr__(self, "attributes", frozen)

    def __hash__(self) -> int:
        items = frozenset(self.attributes.items())  # equal values (1, 1.0, True) hash alike
        return hash((self.method, self.user_id, self.company_id, self.event, items, self.timestamp))

    def replace(
        self,
        *,
        user_id: str | _Unchanged | None = _UNCHANGED,
        company_id: str | _Unchanged | None = _UNCHANGED,
        event: str | _Unchanged | None = _UNCHANGED,
        attributes: Mapping[str, AttributeValue] | _Unchanged = _UNCHANGED,
        timestamp: datetime | _Unchanged | None = _UNCHANGED,
    ) -> BucketCall:
        """A copy with the given fields changed (checked as at construction).

        Raises:
            TypeError, ValueError: as the constructor.
        """
        changes: dict[str, Any] = {
            name: value
            for name, value in (
                ("user_id", user_id),
                ("company_id", company_id),
                ("event", event),
                ("attributes", attributes),
                ("timestamp", timestamp),
            )
            if value is not _UNCHANGED
        }
        current = {
            "method": self.method,
            "user_id": self.user_id,
            "company_id": self.company_id,
            "event": self.event,
            "attributes": self.attributes,
            "timestamp": self.timestamp,
        }
        return BucketCall(**{**current, **changes})


def _parse_timestamp(text: object) -> datetime | None:
    """A payload's timestamp (``2026-11-27T14:03:05.123Z``, as ``utc_iso`` writes it)."""
    if not isinstance(text, str):
        return None
    if text.endswith("Z"):  # Python 3.10's fromisoformat does not read "Z"
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is timezone.utc else moment.astimezone(timezone.utc)


def from_call(call: Call) -> BucketCall:
    """The public value of one of our calls.

    Raises:
        ValueError: the call is not one the mapping makes (never expected).
    """
    payload = call.payload
    company = payload.get("companyId") if call.method == "company" else call.span_company_id
    return BucketCall(
        method=call.method,  # type: ignore[arg-type]  # checked in __post_init__
        user_id=payload.get("userId"),
        company_id=company,
        event=payload.get("event"),
        attributes=payload.get("attributes") or _NO_ATTRIBUTES,
        timestamp=_parse_timestamp(payload.get("timestamp")),
    )


def to_call(public: BucketCall, timestamp: str | None = None) -> Call:
    """Our call for a ``BucketCall`` (what ``before_send`` returned); ``timestamp``: its time as
    already formatted, when the hook kept it."""
    payload: dict[str, Any] = {}
    if public.method == "company":
        payload["companyId"] = public.company_id
    if public.method == "event":
        payload["event"] = public.event
    if public.user_id is not None:
        payload["userId"] = public.user_id
    if public.attributes:
        payload["attributes"] = dict(public.attributes)
    if timestamp is not None:
        payload["timestamp"] = timestamp
    elif public.timestamp is not None:
        payload["timestamp"] = utc_iso(public.timestamp)
    company = public.company_id if public.method == "event" else None
    return Call(public.method, payload, span_company_id=company)
