"""How many calls to keep in flight: enough to hide the endpoint's latency, no more than it takes.

The Tracking API takes one call per request, so calls in flight are the only way to throughput:
by Little's law 1,000 calls/s at 50 ms need 50 in flight. Each method has its own limit, run as
TCP runs its window (additive increase, multiplicative decrease): it doubles per round trip
while every slot is busy (slow start), then grows by one per round trip, and halves on a sign of
overload (429, 503, 504, no answer in time), at most once per round of calls in flight. A method
the endpoint fails (``/user`` answering 503) slows only itself. The limit grows only while it is
what holds calls back (calls wait for a slot), so a quiet service keeps few connections open.

A second bound follows the latency: against an endpoint that answers in a fraction of a
millisecond, more threads only take turns at the GIL, so no more calls are kept in flight than
the latency can hide (one per ``CPU_PER_CALL`` of it). That latency is the endpoint's own: the
quickest delivered answer of recent calls, not their mean. Answer times measured from a sender
thread include its wait for the GIL and the endpoint's queue, which grow with the calls in
flight: bounded by the mean, a loopback endpoint (or a busy one) would let more calls go the
slower each became, more threads making each slower still.
"""

from __future__ import annotations

import math

__all__ = ["INITIAL_LIMIT", "Latency", "Limiter", "is_overload"]

INITIAL_LIMIT = 8  # calls in flight per method before anything is known
CPU_PER_CALL = 0.00025  # seconds of our own work per call: what one more call in flight hides
MIN_IN_FLIGHT = 2  # the bound never goes below it
_OVERLOAD = frozenset({429, 503, 504})


def is_overload(status: int | None, expired: bool) -> bool:
    """Whether an answer says "send less": 429, 503, 504, or no answer before the deadline."""
    return expired if status is None else status in _OVERLOAD


class Limiter:
    """The limit of calls in flight for one method (not thread-safe: the caller's lock)."""

    __slots__ = ("_cut_after", "_started", "_threshold", "ceiling", "limit")

    def __init__(self, ceiling: int, initial: int = INITIAL_LIMIT) -> None:
        self.ceiling = ceiling
        self.limit = float(min(initial, ceiling))
        self._threshold = float(ceiling)  # slow start below it
        self._started = 0  # attempts started
        self._cut_after = 0  # attempts started up to here cannot cut the limit again

    def allows(self, in_flight: int) -> bool:
        return in_flight < max(int(self.limit), 1)

    def start(self) -> int:
        """An attempt starts; its ticket for ``answered``."""
        self._started += 1
        return self._started

    def answered(self, ticket: int, *, overload: bool, busy: bool) -> None:
        """An attempt ended; ``busy``: calls of the method wait for a slot now (the limit is
        what holds them back)."""
        if overload:
            if ticket > self._cut_after:  # one cut per round of calls in flight
                self._threshold = max(self.limit / 2, 1.0)
                self.limit = self._threshold
                self._cut_after = self._started
            return
        if busy:
            step = 1.0 if self.limit < self._threshold else 1.0 / self.limit
            self.limit = min(self.limit + step, float(self.ceiling))


class Latency:
    """Smoothed answer time and its spread (as TCP estimates a round trip), and the quickest
    delivered answer of the last ``WINDOW`` to ``2 * WINDOW`` of them (the endpoint's own
    latency, without the queues in front of it)."""

    __slots__ = ("_count", "_low", "_low_before", "_spread", "_useful", "mean")

    WINDOW = 256  # delivered answers per window of the quickest one

    def __init__(self) -> None:
        self.mean: float | None = None
        self._spread = 0.0
        self._low = math.inf  # the quickest delivered answer of this window
        self._low_before = math.inf  # ... and of the window before
        self._count = 0
        self._useful = 1 << 30  # nothing known yet: no bound

    def observe(self, seconds: float, *, delivered: bool = True) -> None:
        """An answer took ``seconds``; ``delivered``: the endpoint did the call's work (a quick
        ``503`` says nothing of how long a call takes)."""
        if delivered:
            self._low = min(self._low, seconds)
            self._count += 1
            if self._count >= self.WINDOW:
                self._low_before, self._low, self._count = self._low, math.inf, 0
            low = min(self._low, self._low_before)
            self._useful = max(MIN_IN_FLIGHT, math.ceil(low / CPU_PER_CALL))
        if self.mean is None:
            self.mean, self._spread = seconds, seconds / 2
            return
        self._spread += 0.25 * (abs(seconds - self.mean) - self._spread)
        self.mean += 0.125 * (seconds - self.mean)

    def expected(self) -> float:
        """How long an answer may take, generously (0 when nothing is known yet)."""
        return 0.0 if self.mean is None else self.mean + 4 * self._spread

    def useful_in_flight(self) -> int:
        """Calls in flight that the endpoint's own latency can hide."""
        return self._useful
