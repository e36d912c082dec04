"""The call model: one Tracking API call (``Call``), its timestamps, the merge of calls.

Every layer that handles calls (the mapping, the queue, the spool, the books) shares it, so it
lives on the ground and knows nothing of spans.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["Call", "Scalar", "format_timestamp", "merge_calls", "utc_iso"]

Scalar = str | bool | int | float

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_SECONDS = int((datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH).total_seconds())
_MAX_SECONDS = int(
    (datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc) - _EPOCH).total_seconds()
)


@dataclass(frozen=True)
class Call:
    """One call to the Tracking API: ``POST {endpoint}/{key}/{method}`` with ``payload``."""

    method: str
    payload: dict[str, Any]
    # An event's span named this company: not sent (the Event API has no company), but
    # ``before_send`` sees it, so a hook can filter events by company.
    span_company_id: str | None = field(default=None, compare=False, repr=False)

    @property
    def identity(self) -> tuple[str, ...]:
        """What deduplication keys on: the method and the ids."""
        p = self.payload
        if self.method == "company":
            return ("company", p["companyId"], p.get("userId", ""))
        return (self.method, p.get("userId", ""))


def utc_iso(moment: datetime) -> str:
    """``moment`` as ISO 8601 UTC with milliseconds: ``2026-11-27T14:03:05.123Z``."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def format_timestamp(epoch_ns: int) -> str | None:
    """A span time as ``utc_iso`` gives it; None outside years 1-9999 (the call then goes
    without a timestamp and the API uses its time of receipt)."""
    seconds, rest = divmod(int(epoch_ns), 1_000_000_000)
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        return None
    return utc_iso(_EPOCH + timedelta(seconds=seconds, microseconds=rest // 1000))


def merge_calls(calls: Iterable[Call]) -> list[Call]:
    """Collapse user and company calls with the same ids into one, as within an export
    (attributes combined, later calls win, the latest timestamp); events pass unchanged."""
    merged: dict[tuple[str, ...], Call] = {}
    events: list[Call] = []
    for call in calls:
        if call.method == "event":
            events.append(call)
            continue
        previous = merged.pop(call.identity, None)
        if previous is not None:
            payload = {**previous.payload, **call.payload}
            attributes = {
                **previous.payload.get("attributes", {}),
                **call.payload.get("attributes", {}),
            }
            if attributes:
                payload["attributes"] = attributes
            # Same format throughout, so the later timestamp is the greater string.
            stamps = [c.payload["timestamp"] for c in (previous, call) if "timestamp" in c.payload]
            if stamps:
                payload["timestamp"] = max(stamps)
            call = Call(call.method, payload)
        merged[call.identity] = call
    return [*merged.values(), *events]
