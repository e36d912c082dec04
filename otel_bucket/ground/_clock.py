"""Time, injectable: retry tests advance a fake clock instead of sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """What the exporter needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep up to ``seconds``; return True at once when ``stop`` is set."""


class SystemClock:
    """The real clock; sleeping waits on the stop event so ``shutdown()`` cuts it short."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(max(seconds, 0.0))
