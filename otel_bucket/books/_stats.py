"""The exporter's counters and their read-only snapshot."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

__all__ = ["ExporterStats", "StatsCounter"]


@dataclass(frozen=True)
class ExporterStats:
    """Counts of calls since the exporter was built (a snapshot; it does not change).

    Every call is in exactly one place: ``calls + unspooled == delivered + rejected +
    deduplicated + dropped + filtered + undelivered + spooled + pending``.
    """

    calls: int = 0
    """Calls made from spans (after merging within an export), plus spans that could not
    become one (events without a user, unreadable spans)."""
    delivered: int = 0
    """Calls the API accepted (2xx)."""
    rejected: int = 0
    """Calls the API refused for good (400, 401/403/404, other 4xx): never retried."""
    retried: int = 0
    """Retry attempts made (a call retried twice counts 2)."""
    deduplicated: int = 0
    """User and company calls not sent because an identical one was delivered recently, or
    merged into a newer one for the same ids while waiting."""
    dropped: int = 0
    """Calls that could not be made or sent: events without a user, spans that could not be
    read, calls logged instead of sent in offline mode, calls on which ``before_send`` raised
    or returned something other than a ``BucketCall`` or None."""
    filtered: int = 0
    """Calls ``before_send`` dropped by returning None."""
    undelivered: int = 0
    """Calls given up on: still undelivered at shutdown, pushed out of a full backlog, failing
    again and again while other calls got through, or answered with a redirect."""
    spooled: int = 0
    """Calls written to the durable spool, for this or a later process to send."""
    unspooled: int = 0
    """Calls taken from the durable spool to be sent (each then counts as delivered, rejected,
    ... or spooled again)."""
    pending: int = 0
    """Calls not settled yet: waiting for a retry, or being sent right now."""


class StatsCounter:
    """Thread-safe counters behind ``BucketSpanExporter.stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            (f.name for f in fields(ExporterStats) if f.name != "pending"), 0
        )

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                self._counts[name] += value

    def snapshot(self, pending: int) -> ExporterStats:
        with self._lock:
            return ExporterStats(**self._counts, pending=pending)
