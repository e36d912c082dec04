"""What the exporter tells its user in logs: each kind of trouble at most once a minute, with
counts and causes, and every lost call in an ERROR line (the last one at shutdown)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from otel_bucket._backlog import Pending
from otel_bucket._redact import clean
from otel_bucket._throttle import Throttle
from otel_bucket._transport import Answer

__all__ = ["Reporter", "describe"]

_log = logging.getLogger("otel_bucket._exporter")

_EVERY = 60.0
_KEY_REJECTED = frozenset({401, 403, 404})


def describe(answer: Answer | None) -> str:
    """The cause of a failed attempt, for a log line: ``connection refused``, ``HTTP 503: ...``."""
    if answer is None:
        return "unknown"
    if answer.status is None:
        return answer.error or "no answer"
    body = clean(answer.body.strip())
    return f"HTTP {answer.status}: {body}" if body else f"HTTP {answer.status}"


class Reporter:
    """Rate-limited log lines; the counts they stand for are never dropped."""

    def __init__(self, endpoint: str, clock: Callable[[], float]) -> None:
        self._endpoint = endpoint
        self._no_user = Throttle(_EVERY, clock)
        self._not_yet = Throttle(_EVERY, clock)
        self._rejected = Throttle(_EVERY, clock)
        self._key_rejected = Throttle(_EVERY, clock)
        self._misdirected = Throttle(_EVERY, clock)
        self._lost = Throttle(_EVERY, clock)

    def events_without_user(self, count: int) -> None:
        total = self._no_user.ready(count)
        if total is not None:
            _log.warning(
                "otel-bucket dropped %d span(s) with bucket.event but no enduser.id/user.id: "
                "the Tracking API requires a user for every event",
                total,
            )

    def not_delivered_yet(self, count: int, waiting: int, cause: str) -> None:
        total = self._not_yet.ready(count)
        if total is not None:
            _log.warning(
                "otel-bucket could not deliver %d call(s) to %s yet (%s); %d wait for a retry",
                total,
                self._endpoint,
                cause,
                waiting,
            )

    def rejected(self, items: Sequence[Pending]) -> None:
        key = [item for item in items if item.last and item.last.status in _KEY_REJECTED]
        other = [item for item in items if item not in key]
        if key:
            total = self._key_rejected.ready(len(key))
            if total is not None:
                _log.error(
                    "otel-bucket: %d call(s) refused by %s (%s): tracking key rejected or wrong "
                    "endpoint path; check BUCKET_TRACKING_KEY and BUCKET_ENDPOINT",
                    total,
                    self._endpoint,
                    describe(key[-1].last),
                )
        if other:
            total = self._rejected.ready(len(other))
            if total is not None:
                last = other[-1]
                _log.warning(
                    "Bucket rejected %d call(s); the last, a %s call: %s",
                    total,
                    last.method,
                    describe(last.last),
                )

    def misdirected(self, items: Sequence[Pending]) -> None:
        total = self._misdirected.ready(len(items))
        if total is not None:
            last = items[-1].last
            location = clean(last.location or "") if last else ""
            _log.error(
                "otel-bucket lost %d call(s): %s answered with a redirect (HTTP %s to %r), which "
                "is never followed; set BUCKET_ENDPOINT to the URL it should reach",
                total,
                self._endpoint,
                last.status if last else "3xx",
                location,
            )

    def given_up(self, items: Sequence[Pending]) -> None:
        self.lost(
            len(items),
            f"they failed {items[-1].attempts} times while other calls were delivered "
            f"(last: {describe(items[-1].last)})",
        )

    def lost(self, count: int, why: str) -> None:
        """Calls lost now; reported at most once a minute, the rest at ``final``."""
        total = self._lost.ready(count)
        if total is not None and total:
            _log.error("otel-bucket lost %d call(s) that could not be delivered: %s", total, why)

    def final(self, count: int, why: str) -> None:
        """At shutdown: one line with everything lost that no line reported yet."""
        total = count + self._lost.flush() + self._misdirected.flush()
        if total:
            _log.error("otel-bucket lost %d call(s) that could not be delivered: %s", total, why)
