"""Calls an export could not deliver, kept (bounded) and retried with the next export.

The SDK's batch processor drops a batch whose export failed; keeping the undelivered calls here
means an outage shorter than the backlog loses nothing.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from otel_bucket._mapping import Call

__all__ = ["BACKLOG_LIMIT", "Backlog"]

BACKLOG_LIMIT = 10_000


class Backlog:
    """A bounded, thread-safe queue of undelivered calls; the oldest go first when full."""

    def __init__(self, limit: int = BACKLOG_LIMIT) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._calls: deque[Call] = deque()

    def take(self) -> list[Call]:
        """Remove and return every waiting call, oldest first."""
        with self._lock:
            calls = list(self._calls)
            self._calls.clear()
            return calls

    def keep(self, calls: Iterable[Call]) -> int:
        """Hold ``calls`` for a later export; return how many old calls had to be given up."""
        with self._lock:
            self._calls.extend(calls)
            lost = max(len(self._calls) - self._limit, 0)
            for _ in range(lost):
                self._calls.popleft()
            return lost

    def __len__(self) -> int:
        return len(self._calls)
