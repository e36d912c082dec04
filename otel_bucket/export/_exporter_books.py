"""The exporter's books: every fate of a call counted (``stats`` and metrics), logged, spooled.

A mixin of ``BucketSpanExporter``: the dispatcher reports each call's fate here (``Books``), on
the sender's thread and outside the dispatcher's lock. Each place that counts a call in ``stats``
records it in the metrics alike, so the two always agree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from otel_bucket.books._metrics import Recorder
from otel_bucket.books._report import Reporter
from otel_bucket.books._stats import StatsCounter
from otel_bucket.delivery._gate import Gate
from otel_bucket.delivery._outcome import Outcome
from otel_bucket.delivery._pending import Pending
from otel_bucket.delivery._queue import METHODS
from otel_bucket.export._dedupe import Deduper
from otel_bucket.ground._clock import Clock
from otel_bucket.ground._config import Settings
from otel_bucket.spool._spooling import Spooling

__all__ = ["ExporterBooks"]

_log = logging.getLogger("otel_bucket.export._exporter")

_COUNTED = {
    Outcome.DELIVERED: "delivered",
    Outcome.REJECTED: "rejected",
    Outcome.MISDIRECTED: "undelivered",
    Outcome.GIVEN_UP: "undelivered",
    Outcome.UNSENDABLE: "dropped",
}


class ExporterBooks:
    """What the senders report, counted; what memory cannot hold, spooled."""

    # The exporter's state (set in its __init__ and _new_state).
    _settings: Settings
    _clock: Clock
    _stats: StatsCounter
    _metrics: Recorder
    _report: Reporter
    _gate: Gate
    _dedupe: Deduper
    _spooling: Spooling
    _left: list[Pending] | None  # failed during the drain at shutdown: spooled with the rest
    _stopping: bool

    @property
    def pending(self) -> int:
        raise NotImplementedError

    def _count(self, outcome: str, items: Sequence[Pending]) -> None:
        self._stats.add(**{outcome: len(items)})
        self._metrics.count(outcome, items)

    # -- Books: what the dispatcher reports -----------------------------------------------------

    def settled(self, item: Pending, outcome: Outcome) -> None:
        """An attempt of ``item`` ended with ``outcome``."""
        if item.attempts > 1:  # this attempt was a retry
            self._stats.add(retried=1)
            self._metrics.add("retried", 1, item.method)
        counted = _COUNTED.get(outcome)
        if counted is not None:
            self._count(counted, [item])
            self._spooling.done(item)
            self._tell(item, outcome)
        elif outcome is Outcome.FAILED:  # it waits for a retry; each call is counted once
            if not self._stopping:
                first = 1 if item.attempts == 1 else 0
                self._report.not_delivered_yet(first, self.pending, self._gate.last_error)
        elif outcome is Outcome.MERGED:
            self._count("deduplicated", [item])
        elif outcome is Outcome.RETURNED:  # a spooled call that failed: back to the spool
            self._spooling.back(item)
            self._count("spooled", [item])
        elif self._left is not None:  # LEFT during the drain: spooled with the rest
            self._left.append(item)
        else:  # LEFT after the drain: an answer that came too late
            self._spool([item], "they were still in flight when the process ended")

    def _tell(self, item: Pending, outcome: Outcome) -> None:
        if outcome is Outcome.REJECTED:
            self._report.rejected([item])
        elif outcome is Outcome.MISDIRECTED:
            self._report.misdirected([item])
        elif outcome is Outcome.GIVEN_UP:
            self._report.given_up([item])

    def delivered(self, item: Pending) -> None:
        """``item`` was just delivered: remember it for deduplication (before the queue
        forgets it, so that a same call queued meanwhile is seen as a duplicate)."""
        self._dedupe.remember(item.call)

    def is_duplicate(self, item: Pending) -> bool:
        """Whether an identical call was delivered within the dedupe window."""
        return self._dedupe.is_duplicate(item.call)

    def merged(self, items: Sequence[Pending]) -> None:
        """``items`` were merged into calls for the same ids that still wait."""
        self._count("deduplicated", items)

    def spill(self, items: Sequence[Pending]) -> None:
        """Memory is full: its oldest waiting calls go to the spool."""
        self._spool(items, "more calls wait than memory holds, and the spool cannot take them")

    def refill(self) -> list[Pending]:
        """Calls from the spool to send; unusable ones and recent duplicates settled at once."""
        items = self._spooling.claim()
        if not items:
            return []
        self._count("unspooled", items)
        unusable = [item for item in items if item.method not in METHODS]
        if unusable:
            _log.warning(
                "otel-bucket dropped %d spooled call(s) it cannot send (unknown method %r)",
                len(unusable),
                unusable[0].method[:40],
            )
            self._count("dropped", unusable)
        usable = [item for item in items if item.method in METHODS]
        fresh = [item for item in usable if not self._dedupe.is_duplicate(item.call)]
        sending = {id(item) for item in fresh}
        if len(fresh) < len(usable):
            self._count("deduplicated", [item for item in usable if id(item) not in sending])
        for item in items:
            if id(item) not in sending:
                self._spooling.done(item)
        return fresh

    def may_refill(self) -> float | None:
        """When the spool may be looked at again (None: no spool)."""
        return None if self._stopping else self._spooling.next_look()

    def idle(self) -> None:
        """The senders have nothing to do: delete the spooled calls answered meanwhile."""
        self._spooling.flush()

    def tidy(self) -> None:
        """After a few answers (outside the senders' lock): write the spool's answers when
        enough were gathered."""
        if self._spooling.due():
            self._spooling.flush()

    # -- the spool ------------------------------------------------------------------------------

    def _spool(self, items: Sequence[Pending], why: str) -> int:
        """Put ``items`` in the spool; count (and report) those it could not take as lost.
        Return how many it took."""
        stored = self._spooling.keep(items)
        self._stats.add(spooled=stored, undelivered=len(items) - stored)
        self._metrics.kept(items, stored)
        if len(items) > stored:
            self._report.lost(len(items) - stored, why)
        return stored
