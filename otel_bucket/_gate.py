"""Whether the endpoint may be called now: its ``Retry-After``, and whether it is down.

Once the endpoint stops answering (or answers every call with a retryable error), later calls
fail fast and one probe call at a time checks whether it is back: a dead endpoint costs one
export's ``timeout``, not one per batch, and an endpoint in trouble is not hammered. A
``Retry-After`` is remembered across exports: nothing is sent to the endpoint before it ends.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable

from otel_bucket._report import describe
from otel_bucket._retry import BACKOFF_BASE, Verdict, retry_after_seconds, verdict
from otel_bucket._transport import Answer

__all__ = ["Admission", "Gate"]

_FIRST_PROBE_DELAY = 2.0  # seconds after an unreachable endpoint was found down
_MAX_PROBE_DELAY = 60.0
_FAILING_PROBE_DELAY = 1.0  # an endpoint that answers, but only with errors
_RECENT = 60.0  # seconds a delivery shows the endpoint works for other calls
_TRIP = 8  # errors in a row (at least) that mean "failing"...
_QUIET = 2.0  # ... when no answer in these seconds was anything but an error


class Admission(enum.Enum):
    """The gate's answer to "may I send a call now?"."""

    OPEN = "open"
    PROBE = "probe"  # yes, as the one probe: the others wait for its answer
    WAIT_PROBE = "wait probe"  # another call is probing: wait for its answer
    WAIT = "wait"  # not before the time given (Retry-After)
    CLOSED = "closed"  # the endpoint is down and no probe is due: keep the calls


class Gate:
    """Tracks the endpoint from the answers calls get; thread-safe."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._probing = False
        self._delay = _FIRST_PROBE_DELAY
        self._next_probe = 0.0
        self._not_before = 0.0
        self._failures = 0  # errors since the last answer that was not one
        self._last_answer = float("-inf")  # when the endpoint last answered without an error
        self._last_delivery = float("-inf")
        self.last_error = ""  # the cause of the last attempt that failed

    def is_down(self) -> bool:
        return self._down

    def admit(self, *, take_probe: bool = True) -> tuple[Admission, float]:
        """Whether a call may go now; with WAIT, the time to wait for (on the clock). PROBE
        makes the caller the probe unless ``take_probe`` is false (only asking)."""
        with self._lock:
            now = self._clock()
            if now < self._not_before:
                return Admission.WAIT, self._not_before
            if not self._down:
                return Admission.OPEN, now
            if self._probing:
                return Admission.WAIT_PROBE, now
            if now >= self._next_probe:
                self._probing = take_probe
                return Admission.PROBE, now
            return Admission.CLOSED, self._next_probe

    def erring(self) -> bool:
        """Whether the last answer was an error."""
        return self._failures > 0

    def delivers(self) -> bool:
        """Whether the endpoint delivered a call lately: a call that fails meanwhile fails on
        its own (an outage fails every call alike, and soon makes the endpoint down)."""
        return self._clock() - self._last_delivery < _RECENT

    def _failing(self, now: float, in_flight: int) -> bool:
        """Whether the endpoint fails everything: at least ``_TRIP`` errors in a row (and
        twice the calls in flight, whose answers come in any order), and none of the last
        ``_QUIET`` seconds got an answer that was not an error. Calls that fail for their own
        reasons among calls that get through do not make the endpoint down."""
        return self._failures >= max(_TRIP, 2 * in_flight) and now - self._last_answer >= _QUIET

    def not_before(self) -> float:
        """When the endpoint may be called again at the earliest (0 when it may now)."""
        return self._not_before

    def observe(self, answer: Answer, *, probe: bool, in_flight: int = 0) -> None:
        """Learn from one attempt's answer (``in_flight``: other calls in flight with it, whose
        failures may come in a row by chance)."""
        kind = verdict(answer)
        with self._lock:
            now = self._clock()
            if probe:
                self._probing = False
            if kind is not Verdict.RETRY:
                self._failures = 0
                self._last_answer = now
                self._down = False
                self._delay = _FIRST_PROBE_DELAY
                if kind is Verdict.DELIVERED:
                    self._last_delivery = now
                return
            self.last_error = describe(answer)
            wait = retry_after_seconds(answer.retry_after)
            self._failures += 1
            if wait is not None and wait >= BACKOFF_BASE:  # shorter: each call's backoff covers it
                self._not_before = max(self._not_before, now + wait)
            if answer.unreachable:
                if self._down and probe:  # a failed probe: wait longer before the next one
                    self._delay = min(self._delay * 2, _MAX_PROBE_DELAY)
                self._down = True
                self._next_probe = now + self._delay
                return
            if self._failing(now, in_flight) or (self._down and probe):
                self._down = True
                self._next_probe = now + _FAILING_PROBE_DELAY
