"""What an answer means for a call, and how long to wait before trying it again."""

from __future__ import annotations

import enum
import math
import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from otel_bucket.delivery._transport import Answer
from otel_bucket.ground._redact import clean

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_RETRY_AFTER",
    "Verdict",
    "backoff",
    "describe",
    "retry_after_seconds",
    "verdict",
]

BACKOFF_BASE = 0.5  # seconds before the first retry (before jitter)
BACKOFF_CAP = 8.0
MAX_RETRY_AFTER = 3600.0  # a longer Retry-After is taken as an hour
_RETRYABLE = frozenset({408, 429})


class Verdict(enum.Enum):
    """What to do with a call after one attempt."""

    DELIVERED = "delivered"
    REJECTED = "rejected"  # a permanent 4xx: retrying cannot help
    MISDIRECTED = "misdirected"  # a redirect: the endpoint is misconfigured
    RETRY = "retry"  # 408, 429, 5xx or no answer at all: may succeed later


def verdict(answer: Answer) -> Verdict:
    status = answer.status
    if status is None or status in _RETRYABLE or status >= 500:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if 300 <= status < 400:
        return Verdict.MISDIRECTED
    return Verdict.REJECTED  # 1xx cannot reach us; every other 4xx is permanent


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), capped at an
    hour; None when absent, unreadable, or not in the future (then our own backoff applies)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def backoff(attempt: int, rng: random.Random) -> float:
    """The jittered delay after attempt number ``attempt`` (0-based): half to all of
    ``BACKOFF_BASE * 2**attempt``, capped at ``BACKOFF_CAP``."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, 16))
    return ceiling * rng.uniform(0.5, 1.0)


def describe(answer: Answer | None) -> str:
    """The cause of a failed attempt, for a log line: ``connection refused``, ``HTTP 503: ...``."""
    if answer is None:
        return "unknown"
    if answer.status is None:
        return answer.error or "no answer"
    body = clean(answer.body.strip())
    return f"HTTP {answer.status}: {body}" if body else f"HTTP {answer.status}"
