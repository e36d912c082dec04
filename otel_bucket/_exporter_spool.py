"""The exporter's spool bookkeeping: what it keeps for later, takes back, and settles.

A mixin of ``BucketSpanExporter`` (it works on the exporter's own state, which a forked child
renews), kept apart so that ``_exporter.py`` reads as the delivery's orchestration. Every call
that goes in or comes out is counted here, in ``stats`` and in the metrics alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from otel_bucket._backlog import Backlog, Pending
from otel_bucket._clock import Clock
from otel_bucket._config import Settings
from otel_bucket._dedupe import Deduper
from otel_bucket._gate import Gate
from otel_bucket._metrics import Recorder
from otel_bucket._report import Reporter
from otel_bucket._spooling import Spooling
from otel_bucket._stats import StatsCounter

__all__ = ["ExporterSpool"]

_log = logging.getLogger("otel_bucket._exporter")

_UNSPOOL_ABOVE = 1000  # calls waiting already: take none from the spool


class ExporterSpool:
    """Backlog overflow and leftovers into the spool; spooled calls back out."""

    # The exporter's state (set in its __init__ and _new_state).
    _settings: Settings
    _clock: Clock
    _stats: StatsCounter
    _metrics: Recorder
    _report: Reporter
    _backlog: Backlog
    _gate: Gate
    _dedupe: Deduper
    _spooling: Spooling

    def _keep(self, items: Sequence[Pending]) -> None:
        """Hold undelivered calls for later; a full backlog's oldest go to the spool."""
        overflow = self._backlog.keep(items)
        if overflow:
            self._keep_for_later(overflow, "the backlog of undelivered calls is full")

    def _keep_for_later(self, items: Sequence[Pending], why: str) -> None:
        """Write calls this process will not send to the spool; count (and report) the rest as
        lost."""
        stored = self._spooling.keep(items)
        lost = len(items) - stored
        self._stats.add(spooled=stored, undelivered=lost)
        self._metrics.kept(items, stored)
        if lost:
            self._report.lost(lost, why)

    def _spool_leftovers(self, leftover: Sequence[Pending]) -> int:
        """At shutdown: spool what is left (one warning); return how many calls are lost,
        for the final error line."""
        stored = self._spooling.keep(leftover)
        self._stats.add(spooled=stored)
        self._metrics.kept(leftover, stored)
        if stored:
            _log.warning(
                "otel-bucket kept %d undelivered call(s) in its spool (%s) for the next "
                "process to send",
                stored,
                self._settings.spool_dir,
            )
        return len(leftover) - stored

    def _unspool(self, waiting: int, deadline: float) -> list[Pending]:
        """Spooled calls to send with this export: when the endpoint is open and the backlog
        has room. Those identical to a recent delivery are settled at once."""
        now = self._clock.monotonic()
        if self._gate.is_down() or self._gate.not_before() >= deadline or waiting > _UNSPOOL_ABOVE:
            return []
        items = self._spooling.claim()
        if not items:
            return []
        fresh = [item for item in items if not self._dedupe.is_duplicate(item.call)]
        self._stats.add(unspooled=len(items), deduplicated=len(items) - len(fresh))
        self._metrics.unspooled(items, fresh)
        sending = {id(item) for item in fresh}
        self._spooling.settle([item for item in items if id(item) not in sending], [])
        for item in fresh:
            item.not_before = now
        return fresh

    def _settle_spooled(self, items: list[Pending], kept: list[Pending]) -> None:
        """Spooled calls the API answered leave the spool; the others go back into it."""
        back = [item for item in kept if item.spool_id is not None]
        if any(item.spool_id is not None for item in items):
            undone = {id(item) for item in back}
            self._spooling.settle([i for i in items if id(i) not in undone], back)
            self._stats.add(spooled=len(back))
            self._metrics.count("spooled", back)
