"""The exporter's side of the durable spool: what goes in, what comes back out.

Calls go in when they would otherwise be lost: left over at shutdown, pushed out of a full
backlog, handed over after shutdown. They come back out, a batch at a time, when an export finds
the endpoint open: sent beside the backlog (oldest first, in the same phases and under the same
retry rules), deleted once the API answered (2xx or a permanent 4xx), given back otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from otel_bucket._backlog import Pending
from otel_bucket._config import Settings
from otel_bucket._spool import DEFAULT_LEASE, Spool
from otel_bucket._spool_config import spool_path

__all__ = ["Spooling"]

_log = logging.getLogger(__name__)

CLAIM_BATCH = 1000  # spooled calls taken per export at most
_LOOK_AGAIN = 5.0  # seconds before looking again in a spool found empty


class Spooling:
    """One exporter's spool, or none (spool off, or no valid endpoint)."""

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._next_look = 0.0
        self.spool: Spool | None = None
        if settings.spool_dir is not None and settings.endpoint:
            self.spool = Spool(
                spool_path(settings.spool_dir, settings.endpoint, settings.tracking_key),
                max_bytes=settings.spool_max_bytes,
                max_age=settings.spool_max_age,
                lease_seconds=max(DEFAULT_LEASE, 3 * settings.timeout),
                endpoint=settings.endpoint,
            )

    def keep(self, items: Sequence[Pending]) -> int:
        """Write ``items`` to the spool; return how many were stored (the rest are lost)."""
        if self.spool is None or not items:
            return 0
        stored = self.spool.put([item.call for item in items])
        if stored:
            self._next_look = 0.0
        return stored

    def claim(self) -> list[Pending]:
        """Take a batch of spooled calls under a lease, oldest first (none when it is empty or
        was found empty a moment ago)."""
        if self.spool is None or self._clock() < self._next_look:
            return []
        taken = self.spool.claim(CLAIM_BATCH)
        if len(taken) < CLAIM_BATCH:
            self._next_look = self._clock() + _LOOK_AGAIN
        items = []
        for spooled in taken:
            item = Pending(spooled.call)
            item.spool_id = spooled.id
            items.append(item)
        return items

    def settle(self, done: Sequence[Pending], undone: Sequence[Pending]) -> None:
        """Delete the spooled calls that are ``done``; give ``undone`` back to the spool."""
        if self.spool is None:
            return
        finished = [item.spool_id for item in done if item.spool_id is not None]
        if finished:
            self.spool.ack(finished)
        back = [item.spool_id for item in undone if item.spool_id is not None]
        if back:
            self.spool.release(back)
            self._next_look = self._clock() + _LOOK_AGAIN

    def may_hold_calls(self) -> bool:
        """Cheaply: whether a look in the spool is due and could find calls (its file exists)."""
        spool = self.spool
        return (
            spool is not None
            and not spool.disabled
            and self._clock() >= self._next_look
            and spool.path.exists()
        )

    def waiting(self) -> int:
        """How many calls the spool holds (leased ones included)."""
        return 0 if self.spool is None else self.spool.info().total

    def look_now(self) -> None:
        """Look in the spool at the next chance, even if it was found empty a moment ago."""
        self._next_look = 0.0

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
