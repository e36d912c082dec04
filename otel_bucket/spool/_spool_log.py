"""What a spool says in the log, and how loudly.

ERROR for calls that will never be sent (dropped by a limit), at most once a minute with the
sum. A lock held by another process sharing the file is normal: DEBUG while it only delays a
look, WARNING when calls are lost or may be sent twice, or when it has lasted too long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from otel_bucket.ground._throttle import Throttle
from otel_bucket.spool._spool_sweep import Swept

__all__ = ["BUSY_BOUND", "Harm", "SpoolLog"]

_log = logging.getLogger("otel_bucket.spool._spool")

REPORT_INTERVAL = 60.0  # seconds between two ERROR lines about dropped calls
BUSY_BOUND = 60.0  # seconds of being locked out before spooled calls are said to wait too long

Harm = Literal["not kept", "sent again"]
_HARMS: dict[Harm, str] = {
    "not kept": "call(s) could not be kept",
    "sent again": "answered call(s) stay in the spool and may be sent again",
}


class SpoolLog:
    """The log lines of one spool file."""

    def __init__(
        self,
        path: Path,
        max_age: float,
        max_bytes: int,
        clock: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._max_age = max_age
        self._max_bytes = max_bytes
        self._clock = clock
        self._unreported = (0, 0)  # calls dropped (too old, too big) and not yet logged
        self._next_report = float("-inf")
        self._monotonic = monotonic
        self._harms = {harm: Throttle(REPORT_INTERVAL, monotonic) for harm in _HARMS}
        self._long = Throttle(REPORT_INTERVAL, monotonic)
        self._busy_since: float | None = None

    def dropped(self, old: int, big: int) -> None:
        """Calls lost to the limits; one ERROR line a minute at most says how many."""
        if old + big:
            self._unreported = (self._unreported[0] + old, self._unreported[1] + big)
            if self._clock() >= self._next_report:
                self.flush()

    def flush(self) -> None:
        """Say now what ``dropped`` has not said yet (at close)."""
        old, big = self._unreported
        if old + big:
            self._unreported = (0, 0)
            self._next_report = self._clock() + REPORT_INTERVAL
            _log.error(
                "otel-bucket spool dropped %d call(s) that will never be sent: %d older than "
                "%.0f s, %d beyond %d bytes (%s)",
                old + big,
                old,
                self._max_age,
                big,
                self._max_bytes,
                self._path.name,
            )

    def busy(self, exc: BaseException, harm: Harm | None = None, calls: int = 0) -> None:
        """The file stayed locked by another process for the whole busy timeout.

        Args:
            exc: SQLite's error.
            harm: what it cost beyond a delay: ``calls`` not kept (a put), or answered
                ``calls`` left in the spool, to be sent again (an ack); None for a delay.
        """
        now = self._monotonic()
        if self._busy_since is None:
            self._busy_since = now
        locked = now - self._busy_since
        if harm is not None:
            total = self._harms[harm].ready(calls)
            if total is not None:
                _log.warning(
                    "otel-bucket spool locked by another process: %d %s (%s)",
                    total,
                    _HARMS[harm],
                    exc,
                )
        elif locked < BUSY_BOUND:
            _log.debug("otel-bucket spool busy (%s); trying again later: %s", exc, self._path.name)
        elif (count := self._long.ready(1)) is not None:
            _log.warning(
                "otel-bucket spool locked by another process for %.0f s (%d time(s)): spooled "
                "calls wait (%s)",
                locked,
                count,
                exc,
            )

    def not_busy(self) -> None:
        """An operation went through."""
        self._busy_since = None

    def swept(self, results: Sequence[Swept], set_aside: Sequence[Path]) -> None:
        """What ageing out the directory's other spool files did (see ``_spool_sweep``)."""
        calls = sum(r.calls for r in results)
        removed = [r.path.name for r in results if r.removed] + [p.name for p in set_aside]
        if calls:
            _log.error(
                "otel-bucket spool dropped %d call(s) older than %.0f s from %d other spool "
                "file(s) in %s (an old endpoint or tracking key): they will never be sent",
                calls,
                self._max_age,
                sum(1 for r in results if r.calls),
                self._path.parent,
            )
        if removed:
            _log.info(
                "otel-bucket spool removed %d unused file(s) from %s: %s",
                len(removed),
                self._path.parent,
                ", ".join(sorted(removed)),
            )
