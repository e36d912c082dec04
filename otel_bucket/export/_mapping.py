"""From spans to Tracking API calls (contract section 2): map, then merge within one export.

The call itself (``Call``) and the merge of calls with the same ids live in ``ground._call``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_bucket.ground._call import Call, Scalar, format_timestamp
from otel_bucket.ground._conventions import (
    BUCKET_ANONYMOUS,
    BUCKET_ATTRIBUTES_PREFIX,
    BUCKET_COMPANY_ID,
    BUCKET_COMPANY_PREFIX,
    BUCKET_EVENT,
    BUCKET_USER_PREFIX,
    ENDUSER_ID,
    USER_ID,
)

__all__ = ["Plan", "plan_calls"]

_log = logging.getLogger(__name__)


@dataclass
class Plan:
    """The calls one export makes, phase by phase, and the spans it could not use."""

    users: list[Call] = field(default_factory=list)
    companies: list[Call] = field(default_factory=list)
    events: list[Call] = field(default_factory=list)
    dropped_events: int = 0  # events without a user: a mistake, worth a warning
    anonymous_events: int = 0  # events marked anonymous (``bucket.anonymous``): ordinary use
    skipped_spans: int = 0

    @property
    def phases(self) -> tuple[list[Call], list[Call], list[Call]]:
        return (self.users, self.companies, self.events)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 body can carry) replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _text(value: object) -> str | None:
    """``str(value)``, or None where it cannot be printed (an int of over 4,300 digits)."""
    try:
        return _valid(str(value))
    except ValueError:
        return None


def _id(value: object) -> str | None:
    """An id as a non-empty string, or None when it is absent or not an id at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float):
        text = _text(value)
        return text if text and text.strip() else None
    return None


def _value(value: object) -> Scalar | None:
    """An attribute value as JSON can carry it, or None to drop it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if _text(value) is not None else None  # JSON must be able to print it
    if isinstance(value, str):
        return _valid(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        texts = (_text(item) for item in value if item is not None)
        return ",".join(text for text in texts if text is not None)
    return None


def _prefixed(attributes: Mapping[str, object], prefix: str, skip: str = "") -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for key, raw in attributes.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        name = _valid(key[len(prefix) :])
        if not name or name == skip:
            continue
        value = _value(raw)
        if value is not None:
            out[name] = value
    return out


class _Merged:
    """Attributes combined over several spans; the latest start time wins."""

    __slots__ = ("attributes", "start")

    def __init__(self) -> None:
        self.attributes: dict[str, Scalar] = {}
        self.start: int | None = None

    def add(self, attributes: dict[str, Scalar], start: int) -> None:
        self.attributes.update(attributes)
        self.start = start if self.start is None else max(self.start, start)


def _payload(ids: dict[str, str], merged: _Merged) -> dict[str, Any]:
    payload: dict[str, Any] = dict(ids)
    if merged.attributes:
        payload["attributes"] = merged.attributes
    timestamp = None if merged.start is None else format_timestamp(merged.start)
    if timestamp is not None:
        payload["timestamp"] = timestamp
    return payload


def _start_of(span: ReadableSpan) -> int:
    start = span.start_time
    return start if isinstance(start, int) else 0


def _add_span(
    plan: Plan,
    users: dict[str, _Merged],
    companies: dict[tuple[str, str | None], _Merged],
    span: ReadableSpan,
) -> None:
    attributes: Mapping[str, object] = span.attributes or {}
    start = _start_of(span) or time.time_ns()
    user = _id(attributes.get(ENDUSER_ID))
    if user is None:
        user = _id(attributes.get(USER_ID))
    company = _id(attributes.get(BUCKET_COMPANY_ID))
    event = _id(attributes.get(BUCKET_EVENT))
    if user is not None:
        users.setdefault(user, _Merged()).add(_prefixed(attributes, BUCKET_USER_PREFIX), start)
    if company is not None:
        companies.setdefault((company, user), _Merged()).add(
            _prefixed(attributes, BUCKET_COMPANY_PREFIX, skip="id"), start
        )
    if event is None:
        return
    if user is None:
        if attributes.get(BUCKET_ANONYMOUS) is True:
            plan.anonymous_events += 1
        else:
            plan.dropped_events += 1
        return
    merged = _Merged()
    merged.add(_prefixed(attributes, BUCKET_ATTRIBUTES_PREFIX), start)
    payload = _payload({"event": event, "userId": user}, merged)
    plan.events.append(Call("event", payload, span_company_id=company))


def plan_calls(spans: Iterable[ReadableSpan]) -> Plan:
    """Map spans to calls and merge them: one user call per user, one company call per
    (company, user), one event call per span with ``bucket.event`` and a user."""
    plan = Plan()
    users: dict[str, _Merged] = {}
    companies: dict[tuple[str, str | None], _Merged] = {}
    # Later spans win, so walk them in start order (sorted() is stable for equal times).
    ordered = sorted(spans, key=_start_of)
    for span in ordered:
        try:
            _add_span(plan, users, companies, span)
        except Exception:  # a span we cannot read must not cost the rest of the batch
            _log.warning("skipped a span that could not be mapped", exc_info=True)
            plan.skipped_spans += 1
    plan.users = [Call("user", _payload({"userId": u}, m)) for u, m in users.items()]
    for (company, user), merged in companies.items():
        ids = {"companyId": company} if user is None else {"companyId": company, "userId": user}
        plan.companies.append(Call("company", _payload(ids, merged)))
    return plan
