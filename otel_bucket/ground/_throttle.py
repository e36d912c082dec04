"""Rate-limited logging: one line per interval, carrying the count of what it stands for."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """Lets one report through per ``interval`` seconds and sums the counts in between."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = 0
        self._next = float("-inf")

    def ready(self, count: int) -> int | None:
        """Add ``count``; return the total to report now, or None while throttled."""
        with self._lock:
            self._pending += count
            now = self._clock()
            if now < self._next:
                return None
            self._next = now + self._interval
            total, self._pending = self._pending, 0
            return total

    def flush(self) -> int:
        """Return the count not reported yet, and forget it (for a last report at shutdown)."""
        with self._lock:
            total, self._pending = self._pending, 0
            return total
