"""Deliver one phase of calls: up to ``max_concurrency`` in flight, within one deadline.

A call that fails is not retried in place (which would hold a sender for the whole backoff and
let old failing calls starve fresh ones): it is set aside until its own backoff ends, and the
senders go on with the next call meanwhile. Fresh and waiting calls are interleaved, the wait
before a retry is the larger of the jittered backoff and ``Retry-After``, and a call whose own
failures (the endpoint delivered other calls meanwhile) reach ``MAX_OWN_FAILURES`` is given up.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from otel_bucket._backlog import Pending
from otel_bucket._clock import Clock
from otel_bucket._gate import Admission, Gate
from otel_bucket._pool import WorkerPool
from otel_bucket._retry import Verdict, backoff, retry_after_seconds, verdict
from otel_bucket._transport import Answer, Transport

__all__ = ["MAX_OWN_FAILURES", "Outcomes", "Pace", "Phase", "interleave"]

_log = logging.getLogger(__name__)

MAX_OWN_FAILURES = 16  # a call failing this often while others get through is given up
_LATENCY_PER_SENDER = 0.001  # seconds of endpoint latency that one more call in flight hides
_SMOOTHING = 0.2  # weight of the newest latency in the moving average


class Pace:
    """How many calls to keep in flight: enough to hide the endpoint's latency, no more.

    Every call in flight is a thread, and threads that take turns at the GIL cost CPU: against
    an endpoint that answers in a fraction of a millisecond one sender is as fast as eight at a
    third less CPU. So the senders follow a moving average of the time an answer takes: one more
    for every millisecond of it, up to ``maximum`` (``max_concurrency``). It starts at the
    maximum and settles within a few calls.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._latency: float | None = None

    def observe(self, seconds: float) -> None:
        """One answer took ``seconds``."""
        latency = self._latency
        self._latency = seconds if latency is None else latency + _SMOOTHING * (seconds - latency)

    def senders(self) -> int:
        """How many calls to keep in flight now."""
        if self._latency is None:
            return self.maximum
        return max(1, min(self.maximum, math.ceil(self._latency / _LATENCY_PER_SENDER)))


@dataclass
class Outcomes:
    """How the calls of a phase ended."""

    delivered: list[Pending] = field(default_factory=list)
    rejected: list[Pending] = field(default_factory=list)  # a permanent 4xx
    misdirected: list[Pending] = field(default_factory=list)  # a redirect: misconfigured
    given_up: list[Pending] = field(default_factory=list)  # failed too often on their own
    unsendable: list[Pending] = field(default_factory=list)  # no valid JSON body
    kept: list[Pending] = field(default_factory=list)  # not delivered yet: for a later try
    retries: int = 0


def interleave(old: Sequence[Pending], fresh: Sequence[Pending]) -> list[Pending]:
    """Fresh and waiting calls alternately, fresh first: neither kind waits for the other."""
    out: list[Pending] = []
    for pair in itertools.zip_longest(fresh, old):
        out.extend(item for item in pair if item is not None)
    return out


class Phase:
    """One phase's calls, sent by every thread that runs ``work``, until all are settled."""

    def __init__(
        self,
        items: Sequence[Pending],
        *,
        deadline: float,
        transport: Transport,
        gate: Gate,
        pace: Pace,
        clock: Clock,
        stop: threading.Event,
        rng: random.Random,
        last_chance: bool = False,
    ) -> None:
        now = clock.monotonic()
        self._order = itertools.count()
        self._ready: deque[Pending] = deque(item for item in items if item.not_before <= now)
        self._later = [  # (not_before, order, call): still in their own backoff
            (item.not_before, next(self._order), item) for item in items if item.not_before > now
        ]
        heapq.heapify(self._later)
        self._open = len(items)  # calls not settled yet
        self._probe: Pending | None = None
        self._cond = threading.Condition()
        self._wake = threading.Event()  # ends a sleep early: the phase is over, or shutdown
        self._deadline = deadline
        self._transport = transport
        self._gate = gate
        self._pace = pace
        self._pool: WorkerPool | None = None
        self._senders = 0  # threads in ``work`` now
        self._clock = clock
        self._stop = stop
        self._rng = rng
        self._last_chance = last_chance
        self.outcomes = Outcomes()

    def run(self, pool: WorkerPool) -> Outcomes:
        """Send every call (the caller's thread helps); return when all are settled."""
        if self._open:
            self._pool = pool
            with self._cond:
                self._senders += 1  # this thread
            self._add_senders(min(self._open, self._pace.senders()))
            self._work()
            with self._cond:
                self._cond.wait_for(lambda: self._open == 0)
        self._wake.set()
        return self.outcomes

    def wake(self) -> None:
        """Cut every sleep short (shutdown began)."""
        self._wake.set()
        with self._cond:
            self._cond.notify_all()

    def _add_senders(self, wanted: int) -> None:
        """Start helper senders until ``wanted`` threads send."""
        assert self._pool is not None
        with self._cond:
            more = wanted - self._senders
            if more <= 0:
                return
            self._senders += more  # counted now, so that no one else adds them too
        started = self._pool.spread(self.work, more)
        if started < more:  # the pool is smaller, or closed: this thread and the others do it
            with self._cond:
                self._senders -= more - started

    def work(self) -> None:
        """A helper's share: take calls and send them until none is left to take (or fewer
        senders are wanted)."""
        self._work()

    def _work(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            try:
                body = item.body
            except ValueError as exc:  # the mapping should make this impossible
                _log.warning("dropped a %s call that is not valid JSON: %s", item.method, exc)
                self._settle_unsendable(item)
                continue
            seconds = max(self._deadline - self._clock.monotonic(), 0.001)
            started = time.monotonic()
            answer = self._transport.post(item.method, body, seconds)
            if answer.status is not None:  # how long the endpoint takes to answer
                self._pace.observe(time.monotonic() - started)
            self._settle(item, answer)
            if self._ready and self._senders < self._pace.senders():
                self._add_senders(min(self._pace.senders(), self._senders + len(self._ready)))

    # -- taking the next call ---------------------------------------------------------------------

    def _next(self) -> Pending | None:
        while True:
            with self._cond:
                if self._senders > self._pace.senders() and self._senders > 1:
                    self._senders -= 1  # more senders than the endpoint's latency needs
                    return None
                item, sleep_until = self._take()
                if item is None and sleep_until is None:
                    self._senders -= 1
                if item is not None or sleep_until is None:
                    return item
            if self._clock.wait(sleep_until - self._clock.monotonic(), self._wake):
                if self._stop.is_set() or self._open == 0:
                    continue  # _take sees why and ends
                self._wake.clear()

    def _take(self) -> tuple[Pending | None, float | None]:
        """A call to send now, or else the time to sleep until (None: nothing left to take).
        Called with the lock held."""
        now = self._clock.monotonic()
        if (self._stop.is_set() and not self._last_chance) or now >= self._deadline:
            self._keep_rest()
            return None, None
        if self._ready:
            candidate_due = now
        elif self._later:
            candidate_due = self._later[0][0]
        else:
            return None, None
        admission, until = self._gate.admit(take_probe=candidate_due <= now)
        if admission is Admission.CLOSED:
            self._keep_rest()
            return None, None
        if admission is Admission.WAIT_PROBE:
            self._cond.wait(max(self._deadline - now, 0.001))
            return None, now  # look again at once
        if admission is Admission.WAIT:
            candidate_due = max(candidate_due, until)
        if candidate_due >= self._deadline or (self._last_chance and candidate_due > now):
            self._keep_rest()
            return None, None
        if candidate_due > now:
            return None, candidate_due
        item = self._ready.popleft() if self._ready else heapq.heappop(self._later)[2]
        if admission is Admission.PROBE:
            self._probe = item
        return item, None

    def _keep_rest(self) -> None:
        kept = list(self._ready) + [entry[2] for entry in self._later]
        self._ready.clear()
        self._later.clear()
        self.outcomes.kept.extend(kept)
        self._close(len(kept))

    def _close(self, count: int) -> None:
        self._open -= count
        if self._open == 0:
            self._wake.set()
        self._cond.notify_all()

    # -- settling a call --------------------------------------------------------------------------

    def _settle_unsendable(self, item: Pending) -> None:
        with self._cond:
            if item is self._probe:
                self._probe = None
            self.outcomes.unsendable.append(item)
            self._close(1)

    def _settle(self, item: Pending, answer: Answer) -> None:
        kind = verdict(answer)
        own_fault = self._gate.observe(answer, probe=item is self._probe)
        with self._cond:
            if item is self._probe:
                self._probe = None
            if item.attempts:
                self.outcomes.retries += 1
            item.attempts += 1
            if kind is Verdict.DELIVERED:
                self.outcomes.delivered.append(item)
            elif kind is Verdict.REJECTED:
                item.last = answer
                self.outcomes.rejected.append(item)
            elif kind is Verdict.MISDIRECTED:
                item.last = answer
                self.outcomes.misdirected.append(item)
            else:
                self._retry_later(item, answer, own_fault)
                return
            self._close(1)

    def _retry_later(self, item: Pending, answer: Answer, own_fault: bool) -> None:
        item.last = answer
        if own_fault:
            item.charged += 1
            if item.charged >= MAX_OWN_FAILURES:
                self.outcomes.given_up.append(item)
                self._close(1)
                return
        now = self._clock.monotonic()
        asked = retry_after_seconds(answer.retry_after) or 0.0
        wait = max(backoff(item.attempts - 1, self._rng), asked)
        item.not_before = now + wait
        if (
            self._last_chance
            or self._stop.is_set()
            or item.not_before >= self._deadline
            or self._gate.is_down()
        ):
            self.outcomes.kept.append(item)
            self._close(1)
            return
        heapq.heappush(self._later, (item.not_before, next(self._order), item))
        self._cond.notify_all()
