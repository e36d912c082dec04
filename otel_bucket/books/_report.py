"""What the exporter tells its user in logs: each kind of trouble at most once a minute, with
counts and causes, and every lost call in an ERROR line (the last one at shutdown)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from otel_bucket.delivery._pending import Pending
from otel_bucket.delivery._retry import describe
from otel_bucket.ground._redact import clean
from otel_bucket.ground._throttle import Throttle

__all__ = ["Reporter"]

_log = logging.getLogger("otel_bucket.export._exporter")

_EVERY = 60.0
_KEY_REJECTED = frozenset({401, 403, 404})


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
        self._why_lost = ""  # the cause of the latest loss not reported in its own line

    def events_without_user(self, count: int) -> None:
        total = self._no_user.ready(count)
        if total is not None:
            _log.warning(
                "otel-bucket dropped %d span(s) with bucket.event but no enduser.id/user.id: "
                "the Tracking API requires a user for every event",
                total,
            )

    def not_delivered_yet(self, count: int, waiting: int, cause: str) -> None:
        """``count`` calls failed their first attempt (0: a retry failed, a chance to report
        what the last minute held back); ``waiting`` calls are pending now."""
        total = self._not_yet.ready(count)
        if total:
            _log.warning(
                "otel-bucket could not deliver %d call(s) to %s yet (%s); %d call(s) wait to "
                "be sent",
                total,
                self._endpoint,
                cause or "unknown",
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
        last = items[-1].last
        location = clean(last.location or "") if last else ""
        why = f"answered with a redirect (HTTP {last.status if last else '3xx'} to {location!r})"
        total = self._misdirected.ready(len(items))
        if total is None:
            self._why_lost = why
        else:
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
        """Calls lost now; reported at most once a minute, the rest at ``at_exit``."""
        total = self._lost.ready(count)
        if total is None:
            self._why_lost = why
        elif total:
            _log.error("otel-bucket lost %d call(s) that could not be delivered: %s", total, why)

    def at_exit(
        self,
        *,
        kept: int,
        lost: int,
        failed: int,
        refused: int,
        late: int,
        cause: str,
        spool: str,
        latency: float | None,
        spooled: int,
    ) -> None:
        """At shutdown: one line for the calls kept in the spool, one error line for every
        call lost that no line reported yet; each names why they were not delivered.

        Args:
            kept, lost: calls left over that the spool took, and those it could not.
            failed: those that failed their last attempt (with ``cause``).
            refused: those not sent because the endpoint is down, or their method answers only
                errors (``cause``).
            late: those not sent because the drain's time ran out first (the endpoint
                answering in ``latency`` seconds a call).
            spooled: calls this exporter put in the spool in all (``kept`` included).
        """
        reasons = []
        if failed:
            reasons.append(f"{failed} failed their last attempt ({cause or 'unknown'})")
        if refused:
            reasons.append(
                f"{refused} were not sent: the endpoint gives no answer, or only errors "
                f"({cause or 'unknown'})"
            )
        if late:
            pace = f"; the endpoint took {latency:.2f} s a call" if latency else ""
            reasons.append(f"{late} were not sent before the drain's time ran out{pace}")
        why = "; ".join(reasons)
        if kept:
            before = f" ({spooled} in all since it started)" if spooled > kept else ""
            _log.warning(
                "otel-bucket kept %d undelivered call(s) in its spool (%s) for the next process "
                "to send%s: %s",
                kept,
                spool,
                before,
                why,
            )
        earlier = self._lost.flush() + self._misdirected.flush()
        if lost or earlier:
            causes = [why] if lost else []
            if earlier:
                causes.append(f"{earlier} {self._why_lost}" if lost else self._why_lost)
            _log.error(
                "otel-bucket lost %d call(s) that could not be delivered: %s",
                lost + earlier,
                "; ".join(causes),
            )
