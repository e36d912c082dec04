"""Whether the endpoint answers: once it does not, later exports fail fast behind one probe.

A dead endpoint then costs one export's ``timeout``, not one per batch: a process that exits
during an outage drains its queue in seconds instead of minutes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from otel_bucket._sender import Outcome, Result

__all__ = ["EndpointHealth"]

_FIRST_PROBE_DELAY = 2.0  # seconds after the endpoint was found down
_MAX_PROBE_DELAY = 60.0
_PROBE_TIMEOUT = 2.0  # how long one probe may take


class EndpointHealth:
    """Tracks reachability from call results and says when to probe again."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._delay = _FIRST_PROBE_DELAY
        self._next_probe = 0.0

    def is_down(self) -> bool:
        return self._down

    def probe_due(self) -> bool:
        """True when the endpoint is down and it is time to try one call again."""
        with self._lock:
            return self._down and self._clock() >= self._next_probe

    def probe_deadline(self, deadline: float) -> float:
        return min(deadline, self._clock() + _PROBE_TIMEOUT)

    def observe(self, results: Sequence[Result | None]) -> None:
        """Any HTTP answer means up; only unanswered attempts mean down."""
        answered = any(
            r is not None and (r.status is not None or r.outcome is not Outcome.UNDELIVERED)
            for r in results
        )
        unreachable = any(r is not None and r.unreachable for r in results)
        with self._lock:
            if answered:
                self._down = False
                self._delay = _FIRST_PROBE_DELAY
            elif unreachable:
                if self._down:  # a failed probe: wait longer before the next one
                    self._delay = min(self._delay * 2, _MAX_PROBE_DELAY)
                self._down = True
                self._next_probe = self._clock() + self._delay
