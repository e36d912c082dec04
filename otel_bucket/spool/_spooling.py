"""The exporter's side of the durable spool: the queue's tier on disk.

Calls go in when this process will not send them: left over at shutdown, or beyond what memory
holds. They come back out, a batch at a time, whenever the endpoint is open and memory has room
(also while the process is otherwise idle): sent by the same senders as fresh calls, deleted once
the API answered (2xx or a permanent 4xx), given back when an attempt fails. Deletions are
batched: one transaction per batch of answers, not per call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from otel_bucket.delivery._pending import Pending
from otel_bucket.ground._config import Settings
from otel_bucket.ground._fork import after_fork_in_child
from otel_bucket.spool._spool import DEFAULT_LEASE, Spool
from otel_bucket.spool._spool_paths import spool_path

__all__ = ["CLAIM_BATCH", "Spooling"]

_log = logging.getLogger(__name__)

CLAIM_BATCH = 500  # spooled calls taken at once at most
_LOOK_AGAIN = 5.0  # seconds before looking again in a spool found empty, or after a failure
_ACK_BATCH = 256  # answered calls gathered before they are deleted in one transaction


class Spooling:
    """One exporter's spool, or none (spool off, or no valid endpoint)."""

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._next_look = 0.0
        self._lock = threading.Lock()
        self._done: list[int] = []  # answered: to delete
        self._back: list[int] = []  # failed: to give back
        self._acking = threading.Lock()  # one deletion at a time
        after_fork_in_child(self, Spooling._after_fork)
        self.spool: Spool | None = None
        if settings.spool_dir is not None and settings.endpoint:
            self.spool = Spool(
                spool_path(settings.spool_dir, settings.endpoint, settings.tracking_key),
                max_bytes=settings.spool_max_bytes,
                max_age=settings.spool_max_age,
                lease_seconds=max(DEFAULT_LEASE, 3 * settings.timeout),
                endpoint=settings.endpoint,
            )

    def _after_fork(self) -> None:
        # The parent's answered calls are the parent's to delete; its threads' locks may be held.
        self._lock = threading.Lock()
        self._acking = threading.Lock()
        self._done = []
        self._back = []

    def keep(self, items: Sequence[Pending]) -> int:
        """Put ``items`` into the spool (those taken from it go back); return how many it holds
        now (the rest are lost)."""
        spool = self.spool
        if spool is None or not items:
            return 0
        back = [item.spool_id for item in items if item.spool_id is not None]
        new = [item.call for item in items if item.spool_id is None]
        stored = spool.put(new) if new else 0
        if back:  # they failed: not again at once
            spool.release(back)
            self._next_look = self._clock() + _LOOK_AGAIN
        elif stored:
            self._next_look = 0.0
        return stored + len(back)

    def next_look(self) -> float | None:
        """When to look in the spool again (None: there is no spool)."""
        spool = self.spool
        return None if spool is None or spool.disabled else self._next_look

    def claim(self) -> list[Pending]:
        """Take a batch of spooled calls under a lease, oldest first (none when it is empty)."""
        spool = self.spool
        if spool is None or spool.disabled:
            self._next_look = self._clock() + _LOOK_AGAIN
            return []
        taken = spool.claim(CLAIM_BATCH)  # no file yet: none, and the directory is swept
        if len(taken) < CLAIM_BATCH:
            self._next_look = self._clock() + _LOOK_AGAIN
        items = []
        for spooled in taken:
            item = Pending(spooled.call)
            item.spool_id = spooled.id
            items.append(item)
        return items

    def done(self, item: Pending) -> None:
        """``item`` (from the spool) was answered: it is deleted with the next ``flush``."""
        if item.spool_id is not None:
            with self._lock:
                self._done.append(item.spool_id)

    def back(self, item: Pending) -> None:
        """``item`` (from the spool) failed: it goes back with the next ``flush``, for a later
        look (not at once)."""
        if item.spool_id is not None:
            with self._lock:
                self._back.append(item.spool_id)
            self._next_look = self._clock() + _LOOK_AGAIN

    def due(self) -> bool:
        """Whether enough answers were gathered to be worth a ``flush`` now."""
        return len(self._done) + len(self._back) >= _ACK_BATCH

    def flush(self) -> None:
        """Delete the answered calls gathered so far and give back the failed ones (when it
        returns, they are, also those another thread was writing)."""
        with self._acking:
            with self._lock:
                done, self._done = self._done, []
                back, self._back = self._back, []
            if self.spool is not None:
                if done:
                    self.spool.ack(done)
                if back:
                    self.spool.release(back)

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
        """This process sends no more: answers written, leases given back, no more claims."""
        self.flush()
        if self.spool is not None:
            self.spool.retire()
