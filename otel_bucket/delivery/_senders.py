"""The senders: threads that take calls from the queue and post them, each as soon as it may go.

Sending never waits for an export: calls go out from the moment they are queued, as many at
once as the limits allow (``_limiter``), each retried after its own backoff. A sender thread is
started when calls are ready and every sender is busy, up to the limit; a sender idle for a
while ends. One idle sender keeps time: it wakes when the next backoff ends, a ``Retry-After``
expires, a probe of a down endpoint is due, or the spool should be looked at again.

``Senders`` holds the state the queue's users share, and the senders' side of it: starting and
ending threads, taking the next call, one attempt and its landing. ``_dispatch.Dispatcher``
adds what callers see (submit, drive, drain).
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time

from opentelemetry import context

from otel_bucket.delivery._gate import Admission, Gate
from otel_bucket.delivery._limiter import Latency, Limiter, is_overload
from otel_bucket.delivery._outcome import Books, Outcome, after_failure, next_try, outcome_of
from otel_bucket.delivery._pending import ABANDONED, Pending
from otel_bucket.delivery._queue import METHODS, RETRIED, CallQueue
from otel_bucket.delivery._transport import Answer, Transport
from otel_bucket.ground._clock import Clock
from otel_bucket.ground._threads import refuse_process_signals, suppressing

__all__ = ["GRACE", "Senders"]

_log = logging.getLogger(__name__)

GRACE = 0.2  # seconds past a drain's deadline that a call in flight may still be answered
_RETIRE = 30.0  # seconds an idle sender waits for work before it ends
_REFILL_BELOW = 64  # ready calls below which the spool is asked for more


class _Attempt:
    __slots__ = ("item", "probe", "spawn", "ticket", "took")

    def __init__(self, item: Pending, probe: bool, ticket: int, spawn: int) -> None:
        self.item = item
        self.probe = probe
        self.ticket = ticket
        self.spawn = spawn  # more senders to start: calls are ready and no sender is idle
        self.took = 0.0  # seconds the answer took


_REFILL = object()  # the next thing to do is to take calls from the spool


class Senders:
    """One exporter's queue of calls and the threads that send from it."""

    def __init__(
        self,
        *,
        transport: Transport,
        gate: Gate,
        clock: Clock,
        books: Books,
        ceiling: int,
        timeout: float,
        memory_limit: int,
        background: bool,
    ) -> None:
        self._transport = transport
        self._gate = gate
        self._clock = clock
        self._books = books
        self._ceiling = ceiling
        self._timeout = timeout
        self._memory_limit = memory_limit
        self._background = background
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # idle senders wait here
        self._tick = threading.Condition(self._lock)  # ... and the one that keeps time, here
        self._news = threading.Condition(self._lock)  # callers waiting for calls wait here
        self._stop = threading.Event()  # ends an injected clock's wait
        self.queue = CallQueue()
        self._limits = {method: Limiter(ceiling) for method in METHODS}
        self.latency = Latency()
        self._threads = 0
        self._starting = 0  # started threads that have not looked for a call yet
        self._idle = 0
        self._timekeeper = False
        self._keeper_wake = 0.0  # when the timekeeper wakes by itself (on the clock)
        self._callers = 0
        self._refilling = False
        self._probe_turn = itertools.cycle(METHODS)
        self._horizon: float | None = None  # draining: start only what ends before it
        self._closed = False  # sending has ended: what fails now is left for the spool
        self._settle_begun = 0  # calls taken out of the queue (the books count them after)
        self._settled = 0  # ... and counted by the books

    # -- threads --------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        """With the lock held: how many more calls the limits let go now."""
        in_flight = self.queue.in_flight
        free = sum(
            max(int(max(limit.limit, 1.0)) - in_flight[method], 0)
            for method, limit in self._limits.items()
        )
        overall = min(self._ceiling, self.latency.useful_in_flight()) - self.queue.flying
        return max(min(free, overall), 0)

    def _wake(self, ready: int) -> int:
        """With the lock held: wake idle senders for ``ready`` calls, as many as may go now;
        return how many more threads to start."""
        if self._timekeeper and self._sooner():
            self._tick.notify()  # something is due before it wakes: it looks again
        ready = min(ready, self._free_slots())
        waking = min(ready, self._idle - (1 if self._timekeeper else 0))
        if waking > 0:
            self._work.notify(waking)
        room = min(self._ceiling, self.latency.useful_in_flight()) - self._threads
        more = max(min(ready - waking - self._starting, room), 0)  # a starting one takes a call
        if not self._background and self._callers == 0:
            return 0  # an injected clock: senders run only while someone waits for calls
        self._threads += more
        self._starting += more
        return more

    def _start(self, count: int) -> None:
        for started in range(count):
            thread = threading.Thread(target=self._serve, name="otel-bucket-sender", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: the callers send
                with self._lock:
                    self._threads -= count - started
                    self._starting -= count - started
                return

    def _serve(self) -> None:
        refuse_process_signals()
        context.attach(suppressing())  # for this thread's whole life
        try:
            self._loop()
        except BaseException as exc:  # our own fault: never let a sender die silently
            if not isinstance(exc, ReferenceError):  # else: the exporter was dropped unshut
                _log.exception("otel-bucket sender failed")
            with self._lock:
                self._threads -= 1

    def _loop(self) -> None:
        idle_since: float | None = None
        told = False  # the books heard that this sender is idle
        starting = 1  # this thread counts among the starting ones until it looks for a call
        while True:
            with self._lock:
                self._starting -= starting
                starting = 0
                # With an injected clock, helpers send only while someone waits for calls.
                action = self._next() if self._background or self._callers else None
                if action is None:
                    if self._closed or not self._background:
                        self._threads -= 1
                        return
                    now = time.monotonic()
                    idle_since = idle_since or now
                    if now - idle_since >= _RETIRE and not self._needs_timekeeper():
                        self._threads -= 1
                        return
                    if told:
                        self._sleep()
                        continue
            if action is None:
                told = True
                self._books.idle()  # e.g. acknowledge spooled calls delivered meanwhile
                continue
            idle_since, told = None, False
            self._act(action)

    def _sooner(self) -> bool:
        """With the lock held: whether something may be due before the timekeeper wakes (a
        backoff, an event's wait, the spool; whenever the endpoint erred, it looks again)."""
        wake = self._keeper_wake
        if not self._gate.clear(self._clock.monotonic()):
            return True
        due, look = self.queue.next_due(), self._refill_at(self._clock.monotonic())
        return any(when is not None and when < wake for when in (due, look))

    def _needs_timekeeper(self) -> bool:
        return self._threads == 1 and (len(self.queue) > 0 or self._books.may_refill() is not None)

    def _sleep(self) -> None:
        """With the lock held: wait for work; the first idle sender keeps time."""
        keeper = not self._timekeeper
        timeout = _RETIRE
        if keeper:
            self._timekeeper = True
            now = self._clock.monotonic()
            wake_at = self._next_event()
            if wake_at is not None:
                timeout = min(max(wake_at - now, 0.0), _RETIRE)
            self._keeper_wake = now + timeout
        self._idle += 1
        try:
            (self._tick if keeper else self._work).wait(timeout)
        finally:
            self._idle -= 1
            if keeper:
                self._timekeeper = False

    # -- taking the next call -------------------------------------------------------------------

    def _admissions(self) -> dict[str, tuple[Admission, float]]:
        """With the lock held: what the gate says of each method now (asking only)."""
        return self._gate.admit_all(METHODS)

    def _next(self) -> _Attempt | object | None:
        """With the lock held: the next attempt to make, ``_REFILL``, or None."""
        if self._closed:
            return None
        now = self._clock.monotonic()
        queue = self.queue
        queue.promote(now)
        refill_at = self._refill_at(now) if queue.ready < _REFILL_BELOW else None
        if refill_at is not None and refill_at <= now:
            self._refilling = True
            return _REFILL
        if not queue.ready:
            return None
        if self._horizon is not None and now + self.latency.expected() > self._horizon:
            return None  # it could not be answered before the drain ends
        if queue.flying >= min(self._ceiling, self.latency.useful_in_flight()):
            return None
        limits = self._limits
        in_flight = queue.in_flight
        if self._gate.clear(now):  # every method open, none erring: no probe, oldest first
            item = queue.take(lambda method: limits[method].allows(in_flight[method]), None)
            if item is None:
                return None
            spawn = self._wake(queue.ready) if queue.ready else 0
            return _Attempt(item, False, limits[item.method].start(), spawn)
        admissions = self._admissions()
        open_ = {m for m, (a, _) in admissions.items() if a in (Admission.OPEN, Admission.PROBE)}
        if not open_:
            return None
        probing = [m for m in open_ if admissions[m][0] is Admission.PROBE]
        item = queue.take(
            lambda method: method in open_ and limits[method].allows(in_flight[method]),
            next(m for m in self._probe_order() if m in probing) if probing else None,
            newest_first=any(self._gate.erring(method) for method in open_),
        )
        if item is None:
            return None
        probe = admissions[item.method][0] is Admission.PROBE
        if probe:
            self._gate.admit(item.method, take_probe=True)
        spawn = self._wake(queue.ready) if queue.ready else 0
        return _Attempt(item, probe, limits[item.method].start(), spawn)

    def _probe_order(self) -> list[str]:
        """The methods, the next one to probe first (a down endpoint is probed with each in
        turn: one method may be what fails)."""
        first = next(self._probe_turn)
        start = METHODS.index(first)
        return [*METHODS[start:], *METHODS[:start]]

    def _refill_at(self, now: float) -> float | None:
        """With the lock held: when the spool may be asked for calls (None: not by time). Not
        while the endpoint is down, unless memory holds no call to probe it with: then a
        spooled call is the probe, once one is due."""
        if self._refilling or self._horizon is not None:
            return None
        look = self._books.may_refill()
        if look is None or len(self.queue) >= self._memory_limit // 2:
            return None
        if self._gate.is_down():
            if len(self.queue):
                return None  # its calls probe the endpoint; the spool waits until it answers
            admission, until = self._gate.admit(METHODS[0], take_probe=False)
            return max(look, until if admission in (Admission.CLOSED, Admission.WAIT) else now)
        return max(look, self._gate.not_before())

    def _next_event(self) -> float | None:
        """With the lock held: when a call may become sendable by time (None: no call waits
        for a time; a landing, which notifies, may still free a slot)."""
        now = self._clock.monotonic()
        times = []
        for method, (admission, until) in self._admissions().items():
            if admission in (Admission.WAIT, Admission.CLOSED) and self.queue.has_ready(method):
                times.append(until)  # its ready calls go when it opens (or is probed)
        due = self.queue.next_due()  # a backoff ends, or an event stops waiting
        if due is not None:
            times.append(max(due, self._gate.not_before()))  # none goes before a Retry-After
        look = self._refill_at(now)
        if look is not None:
            times.append(look)
        return max(min(times), now) if times else None

    # -- one attempt ----------------------------------------------------------------------------

    def _act(self, action: _Attempt | object) -> None:
        if isinstance(action, _Attempt):
            if action.spawn:
                self._start(action.spawn)
            self._attempt(action)
            return
        items: list[Pending] = []
        try:
            items = self._books.refill()
        finally:
            with self._lock:  # queued before the flag drops: never out of sight meanwhile
                self.queue.add(items, RETRIED, self._clock.monotonic())
                self._refilling = False
                start = self._wake(self.queue.ready)  # also: the timekeeper looks again
                if self._callers:
                    self._news.notify_all()
        self._start(start)

    def _attempt(self, attempt: _Attempt) -> None:
        item = attempt.item
        try:
            body = item.body
        except ValueError as exc:  # the mapping should make this impossible
            _log.warning("dropped a %s call that is not valid JSON: %s", item.method, exc)
            self._land(attempt, Answer(None), Outcome.UNSENDABLE)
            return
        seconds = self._timeout
        if self._horizon is not None:
            seconds = min(seconds, self._horizon + GRACE - self._clock.monotonic())
        started = time.monotonic()
        try:
            answer = self._transport.post(item.method, body, max(seconds, 0.001))
        except Exception as exc:  # a transport never raises; if it did, the call is kept
            _log.exception("otel-bucket transport failed")
            answer = Answer(None, error=type(exc).__name__)
        attempt.took = time.monotonic() - started
        in_flight = self.queue.in_flight[item.method]
        if self._gate.observe(answer, item.method, probe=attempt.probe, in_flight=in_flight):
            with self._lock:  # found failing: events stop waiting for what fails
                down = self._gate.is_down()
                freed = self.queue.unblock(None if down else item.method)
                start = self._wake(len(freed)) if freed else 0
            self._start(start)
        self._land(attempt, answer, outcome_of(answer, item, self._gate.delivers))

    def _land(self, attempt: _Attempt, answer: Answer, outcome: Outcome) -> None:
        """After an attempt: settle the call or set its backoff, tell the books."""
        item = attempt.item
        with self._lock:
            if item.state == ABANDONED:  # the drain counted it as left over
                return
            self.queue.landed(item)
            if answer.status is not None:
                self.latency.observe(attempt.took, delivered=outcome is Outcome.DELIVERED)
            overload = is_overload(answer.status, answer.timed_out)
            # The limit grows only while calls of the method wait for a slot (it holds them back).
            waiting = self.queue.has_ready(item.method)
            self._limits[item.method].answered(attempt.ticket, overload=overload, busy=waiting)
            item.attempts += 1
            if outcome is not Outcome.DELIVERED and outcome is not Outcome.UNSENDABLE:
                item.last = answer
            if outcome is Outcome.FAILED:
                outcome = after_failure(item, answer, self._closed, self._horizon is not None)
            merged = self.queue.merge_into_newer(item) if outcome is Outcome.FAILED else None
            if merged is not None:
                outcome, freed = Outcome.MERGED, merged
            elif outcome is Outcome.FAILED and self._horizon is not None:
                freed = self.queue.retry_at(item, self._clock.monotonic())  # at once
            elif outcome is Outcome.FAILED:
                freed = self.queue.retry_at(item, next_try(item, answer, self._clock, self._rng))
            else:
                if outcome is Outcome.DELIVERED:
                    self._books.delivered(item)  # remembered before the queue forgets it
                freed = self.queue.settle(item)
            # After a probe every sender may go; after a backoff began, the timekeeper looks.
            start = self._wake(self.queue.ready if attempt.probe else len(freed))
            try:  # counted at once: pending and the books never disagree
                self._books.settled(item, outcome)
            except ReferenceError:
                raise
            except Exception:  # our own fault: the call is settled all the same
                _log.exception("otel-bucket could not count a call")
            if item.tickets and outcome.resolves:
                item.resolve(outcome.ok)
            if self._callers:
                self._news.notify_all()
        self._start(start)
        self._books.tidy()

    # -- counting calls that leave memory -------------------------------------------------------

    def _begin_settling(self, count: int) -> None:
        self._settle_begun += count  # with the lock held

    def _end_settling(self, count: int) -> None:
        with self._lock:
            self._settled += count
            if self._callers:
                self._news.notify_all()
