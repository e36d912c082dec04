"""Whether a call may go now: the endpoint's ``Retry-After``, whether it is down, and whether one
of its methods is failing.

The endpoint is **down** when calls get no answer at all (connection refused, nothing before
the deadline): then nothing is sent but one probe at a time (after 2 s, doubling up to 60 s
while it stays down), so a dead endpoint costs one wait, not one per batch. A **method** is
failing when it answers only errors (at least ``_TRIP`` in a row, and nothing else for
``_QUIET`` seconds): then calls of that method wait and one probe a second checks it, while
the other methods go on: a ``/user`` that answers 503 for ever never holds events back.
Connections dropped without an answer count against the endpoint. A ``Retry-After`` is
remembered across exports: nothing is sent to the endpoint before it ends.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable

from otel_bucket.delivery._retry import (
    BACKOFF_BASE,
    Verdict,
    describe,
    retry_after_seconds,
    verdict,
)
from otel_bucket.delivery._transport import Answer

__all__ = ["Admission", "Gate"]

_FIRST_PROBE_DELAY = 2.0  # seconds after an unreachable endpoint was found down
_MAX_PROBE_DELAY = 60.0
_FAILING_PROBE_DELAY = 1.0  # a method that answers, but only with errors
_RECENT = 60.0  # seconds a delivery shows the endpoint works for other calls
_TRIP = 8  # errors in a row (at least) that mean "failing"...
_QUIET = 2.0  # ... when no answer in these seconds was anything but an error


class Admission(enum.Enum):
    """The gate's answer to "may I send a call of this method now?"."""

    OPEN = "open"
    PROBE = "probe"  # yes, as the one probe: the others wait for its answer
    WAIT_PROBE = "wait probe"  # another call is probing: wait for its answer
    WAIT = "wait"  # not before the time given (Retry-After)
    CLOSED = "closed"  # down, or failing, and no probe is due yet


class _Health:
    """What the answers say of the endpoint, or of one method."""

    __slots__ = ("down", "failures", "last_answer", "next_probe", "probing")

    def __init__(self) -> None:
        self.down = False
        self.probing = False
        self.next_probe = 0.0
        self.failures = 0  # errors since the last answer that was not one
        self.last_answer = float("-inf")  # when it last answered without an error

    def admit(self, now: float, take_probe: bool) -> tuple[Admission, float]:
        if not self.down:
            return Admission.OPEN, now
        if self.probing:
            return Admission.WAIT_PROBE, now
        if now >= self.next_probe:
            self.probing = take_probe
            return Admission.PROBE, now
        return Admission.CLOSED, self.next_probe


class Gate:
    """Tracks the endpoint, and each method, from the answers calls get; thread-safe."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._endpoint = _Health()  # down: no answer at all
        self._methods: dict[str, _Health] = {}  # failing: errors only
        self._delay = _FIRST_PROBE_DELAY
        self._not_before = 0.0
        self._last_delivery = float("-inf")
        self._troubled: set[str] = set()  # methods (and "" the endpoint) with errors since
        self.last_error = ""  # the cause of the last attempt that failed

    def _method(self, method: str) -> _Health:
        health = self._methods.get(method)
        if health is None:
            health = self._methods[method] = _Health()
        return health

    def is_down(self) -> bool:
        """Whether the endpoint gives no answer at all."""
        return self._endpoint.down

    def is_failing(self, method: str) -> bool:
        """Whether the endpoint is down, or ``method`` answers only errors."""
        return self._endpoint.down or self._method(method).down

    def erring(self, method: str) -> bool:
        """Whether the last answer to ``method`` was an error."""
        return self._endpoint.failures > 0 or self._method(method).failures > 0

    def delivers(self) -> bool:
        """Whether the endpoint delivered a call lately: a call that fails meanwhile fails on
        its own (an outage fails every call alike, and soon makes the endpoint down)."""
        return self._clock() - self._last_delivery < _RECENT

    def admit(self, method: str, *, take_probe: bool = True) -> tuple[Admission, float]:
        """Whether a call of ``method`` may go now; with WAIT or CLOSED, the time until then
        (on the clock). PROBE makes the caller the probe unless ``take_probe`` is false."""
        with self._lock:
            now = self._clock()
            if now < self._not_before:
                return Admission.WAIT, self._not_before
            if self._endpoint.down:
                return self._endpoint.admit(now, take_probe)
            return self._method(method).admit(now, take_probe)

    def admit_all(self, methods: tuple[str, ...]) -> dict[str, tuple[Admission, float]]:
        """``admit`` for each of ``methods``, asking only (one look under the lock)."""
        with self._lock:
            now = self._clock()
            if now < self._not_before:
                return dict.fromkeys(methods, (Admission.WAIT, self._not_before))
            if self._endpoint.down:
                return dict.fromkeys(methods, self._endpoint.admit(now, False))
            return {method: self._method(method).admit(now, False) for method in methods}

    def clear(self, now: float) -> bool:
        """Whether every method may go now and none erred lately (every ``admit`` says OPEN,
        no ``erring``): the common case, answered without the lock."""
        return not self._troubled and now >= self._not_before

    def not_before(self) -> float:
        """When the endpoint may be called again at the earliest (0 when it may now)."""
        return self._not_before

    def observe(self, answer: Answer, method: str, *, probe: bool, in_flight: int = 0) -> bool:
        """Learn from one attempt's answer (``in_flight``: calls of ``method`` in flight with
        it, whose failures may come in a row by chance); True when it made the endpoint down or
        the method failing."""
        kind = verdict(answer)
        with self._lock:
            now = self._clock()
            health = self._method(method)
            was = self._endpoint.down or health.down
            if probe:
                self._endpoint.probing = health.probing = False
            if kind is not Verdict.RETRY:
                for state in (self._endpoint, health):
                    state.failures = 0
                    state.last_answer = now
                    state.down = False
                self._delay = _FIRST_PROBE_DELAY
                self._troubled.discard(method)
                self._troubled.discard("")
                if kind is Verdict.DELIVERED:
                    self._last_delivery = now
                return False
            self.last_error = describe(answer)
            wait = retry_after_seconds(answer.retry_after)
            if wait is not None and wait >= BACKOFF_BASE:  # shorter: each call's backoff covers it
                self._not_before = max(self._not_before, now + wait)
            if answer.unreachable:
                self._troubled.add("")
                self._endpoint.failures += 1
                if self._endpoint.down and probe:  # a failed probe: wait longer next time
                    self._delay = min(self._delay * 2, _MAX_PROBE_DELAY)
                self._endpoint.down = True
                self._endpoint.next_probe = now + self._delay
                return not was
            if answer.status is None:  # no HTTP answer (a connection dropped): the endpoint's
                health = self._endpoint
            self._troubled.add("" if health is self._endpoint else method)
            health.failures += 1
            failing = health.failures >= max(_TRIP, 2 * in_flight)
            if (failing and now - health.last_answer >= _QUIET) or (health.down and probe):
                health.down = True
                health.next_probe = now + _FAILING_PROBE_DELAY
            return not was and health.down
