"""The senders: threads that take calls from the queue and post them, each as soon as it may go.

Sending never waits for an export: calls go out from the moment they are queued, as many at
once as the limits allow (``_limiter``), each retried after its own backoff. A sender thread is
started when calls are ready and every sender is busy, up to the limit; a sender idle for a
while ends. One idle sender keeps time: it wakes when the next backoff ends, a ``Retry-After``
expires, a probe of a down endpoint is due, or the spool should be looked at again. Whoever
waits for calls (``export``, ``force_flush``, the drain at shutdown) sends too, so nothing
depends on a thread being startable (at interpreter exit it may not be).

With an injected clock (tests) no sender sleeps: threads end when nothing is ready, and only
the thread that waits for calls moves time forward, so a retry test runs without real waits.

Near a drain's deadline only calls that can be answered before it are started (the latency is
measured), and a call in flight is given until the deadline plus ``GRACE``, so an answer that is
due is not cut (a cut call may have been processed: sending it again would duplicate it).
"""

from __future__ import annotations

import enum
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from opentelemetry import context

from otel_bucket.delivery._gate import Admission, Gate
from otel_bucket.delivery._limiter import Latency, Limiter, is_overload
from otel_bucket.delivery._pending import ABANDONED, Pending, Ticket
from otel_bucket.delivery._queue import METHODS, RETRIED, CallQueue
from otel_bucket.delivery._retry import Verdict, backoff, retry_after_seconds, verdict
from otel_bucket.delivery._transport import Answer, Transport
from otel_bucket.ground._clock import Clock
from otel_bucket.ground._threads import refuse_process_signals, suppressing

__all__ = ["GRACE", "MAX_OWN_FAILURES", "Books", "Dispatcher", "Outcome"]

_log = logging.getLogger(__name__)

MAX_OWN_FAILURES = 16  # a call failing this often while others get through is given up
GRACE = 0.2  # seconds past a drain's deadline that a call in flight may still be answered
_RETIRE = 30.0  # seconds an idle sender waits for work before it ends
_REFILL_BELOW = 64  # ready calls below which the spool is asked for more


class Outcome(enum.Enum):
    """What became of a call after an attempt."""

    DELIVERED = "delivered"
    REJECTED = "rejected"  # a permanent 4xx
    MISDIRECTED = "misdirected"  # a redirect: the endpoint is misconfigured
    GIVEN_UP = "given up"  # failed too often while others got through
    UNSENDABLE = "unsendable"  # no valid JSON body
    FAILED = "failed"  # the attempt failed; the call waits for its backoff
    RETURNED = "returned"  # a call from the spool failed: back to the spool
    LEFT = "left"  # failed, or never sent, when sending had ended: for the spool
    MERGED = "merged"  # failed, and merged into a newer call for the same ids (deduplicated)

    @property
    def settles(self) -> bool:
        return self is not Outcome.FAILED

    @property
    def ok(self) -> bool:
        return self in (Outcome.DELIVERED, Outcome.REJECTED)

    @property
    def resolves(self) -> bool:
        """Whether the exports waiting for the call learn its fate now (a merged call's
        exports wait for the call it merged into)."""
        return self.settles and self is not Outcome.MERGED


class Books(Protocol):
    """The exporter's side: it counts, logs and spools what the senders report."""

    def settled(self, item: Pending, outcome: Outcome) -> None: ...

    def delivered(self, item: Pending) -> None: ...

    def is_duplicate(self, item: Pending) -> bool: ...

    def merged(self, items: Sequence[Pending]) -> None: ...

    def spill(self, items: Sequence[Pending]) -> None: ...

    def refill(self) -> list[Pending]: ...

    def may_refill(self) -> float | None:
        """When the spool may be looked at again (None: never; now or earlier: now)."""

    def idle(self) -> None: ...

    def tidy(self) -> None: ...


class _Attempt:
    __slots__ = ("item", "probe", "spawn", "ticket", "took")

    def __init__(self, item: Pending, probe: bool, ticket: int, spawn: int) -> None:
        self.item = item
        self.probe = probe
        self.ticket = ticket
        self.spawn = spawn  # more senders to start: calls are ready and no sender is idle
        self.took = 0.0  # seconds the answer took


_REFILL = object()  # the next thing to do is to take calls from the spool


class Dispatcher:
    """One exporter's queue and the threads that send from it."""

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
        self._idle = 0
        self._timekeeper = False
        self._callers = 0
        self._refilling = False
        self._probe_turn = itertools.cycle(METHODS)
        self._horizon: float | None = None  # draining: start only what ends before it
        self._closed = False  # sending has ended: what fails now is left for the spool
        self._settle_begun = 0  # calls taken out of the queue (the books count them after)
        self._settled = 0  # ... and counted by the books

    # -- what callers see -----------------------------------------------------------------------

    @property
    def memory_limit(self) -> int:
        return self._memory_limit

    @property
    def refilling(self) -> bool:
        """Whether calls are being taken from the spool right now."""
        return self._refilling

    @property
    def pending(self) -> int:
        """Calls in memory: waiting, blocked, in flight, or being counted."""
        return len(self.queue) + self._settle_begun - self._settled

    def submit(self, items: Sequence[Pending], ticket: Ticket | None = None) -> None:
        """Queue ``items`` (user and company calls first) and start sending them."""
        if ticket is not None:
            for item in items:
                item.hold(ticket)
        with self._lock:
            merged = self.queue.add(
                items,
                now=self._clock.monotonic(),
                duplicate=self._books.is_duplicate,
                failing=self._gate.is_failing,
            )
            over = self.queue.overflow(self._memory_limit)
            self._begin_settling(len(merged) + len(over))
            for item in over:
                item.resolve(False)
            start = self._wake(self.queue.ready)
        if merged:
            self._books.merged(merged)
            self._end_settling(len(merged))
        if over:
            self._books.spill(over)
            self._end_settling(len(over))
        self._start(start)

    def drive(self, done: Callable[[], bool], deadline: float, *, patient: bool = True) -> bool:
        """Send (on this thread too) until ``done()`` or ``deadline`` (on the clock), or until
        nothing can happen before it (not ``patient``: nothing now); return ``done()``."""
        with self._lock:
            self._callers += 1
        try:
            return self._drive(done, deadline, patient)
        finally:
            with self._lock:
                self._callers -= 1

    def drain(self, deadline: float, *, send: bool = True) -> list[Pending]:
        """At shutdown: every waiting call gets one chance now (``send``: the endpoint is not
        known to be down), then sending ends; return the calls left (taken out of memory: for
        the spool)."""
        with self._lock:
            self._callers += 1  # told of every landing from now on
            if send:
                self._horizon = deadline
                self.queue.retry_all_now()
            else:
                self._closed = True
            start = self._wake(self.queue.ready) if send else 0
            self._news.notify_all()  # an export waiting for a backoff sends now, or ends
        self._start(start)
        self._stop.set()  # cut an injected clock's waits: no backoff is waited for now
        try:
            if send:  # the last chance: a backoff or a Retry-After is not waited for
                self.drive(lambda: self.pending == 0, deadline, patient=False)
            return self._end(deadline)
        finally:
            with self._lock:
                self._callers -= 1

    def _end(self, deadline: float) -> list[Pending]:
        """Sending ends: calls in flight may still be answered until the deadline and GRACE
        (in real time: they are), then are cut; return every call left."""
        with self._lock:
            self._closed = True
            self._work.notify_all()
            self._tick.notify_all()
            end = time.monotonic() + max(deadline - self._clock.monotonic(), 0.0) + GRACE
            self._wait_for_flights(end)
        if self.queue.flying:  # started before the drain, with a longer deadline
            self._transport.cut()
            with self._lock:
                self._wait_for_flights(time.monotonic() + 0.2)
        with self._lock:
            left = self.queue.take_waiting() + self.queue.take_flying()
            self._begin_settling(len(left))
            for item in left:
                item.resolve(False)
        return left

    def _wait_for_flights(self, end: float) -> None:
        """With the lock held: until the calls in flight have landed and been counted."""
        while (self.queue.flying or self._settle_begun != self._settled) and (
            time.monotonic() < end
        ):
            self._news.wait(max(end - time.monotonic(), 0.001))

    def withdraw(self) -> list[Pending]:
        """Every call not in flight, taken out of memory (to be kept elsewhere); the books
        count them, then ``settled_left``."""
        with self._lock:
            left = self.queue.take_waiting()
            self._begin_settling(len(left))
            for item in left:
                item.resolve(False)
        return left

    def settled_left(self, count: int) -> None:
        """The books have counted ``count`` calls that ``drain`` returned."""
        self._end_settling(count)

    def close(self) -> None:
        """Sending has ended (also without a drain): threads end, nothing is taken."""
        with self._lock:
            self._closed = True
            self._work.notify_all()
            self._tick.notify_all()
        self._stop.set()

    def wake(self) -> None:
        """Look again (the spool has calls, the clock moved): a timekeeper recomputes."""
        with self._lock:
            self._tick.notify()
            start = self._wake(1) if self._threads == 0 else 0
        self._start(start)

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
        self._tick.notify()  # times may have changed: the timekeeper looks again
        ready = min(ready, self._free_slots())
        waking = min(ready, self._idle - (1 if self._timekeeper else 0))
        if waking > 0:
            self._work.notify(waking)
        room = min(self._ceiling, self.latency.useful_in_flight()) - self._threads
        more = max(min(ready - waking, room), 0)
        if not self._background and self._callers == 0:
            return 0  # an injected clock: senders run only while someone waits for calls
        self._threads += more
        return more

    def _start(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._serve, name="otel-bucket-sender", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: the callers send
                with self._lock:
                    self._threads -= 1
                return

    def _serve(self) -> None:
        refuse_process_signals()
        context.attach(suppressing())  # for this thread's whole life
        try:
            self._loop()
        except ReferenceError:  # the exporter was dropped without a shutdown: end quietly
            with self._lock:
                self._threads -= 1
        except BaseException:  # our own fault: never let a sender die silently
            _log.exception("otel-bucket sender failed")
            with self._lock:
                self._threads -= 1

    def _loop(self) -> None:
        idle_since: float | None = None
        told = False  # the books heard that this sender is idle
        while True:
            with self._lock:
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

    def _needs_timekeeper(self) -> bool:
        return self._threads == 1 and (len(self.queue) > 0 or self._books.may_refill() is not None)

    def _sleep(self) -> None:
        """With the lock held: wait for work; the first idle sender keeps time."""
        keeper = not self._timekeeper
        timeout = _RETIRE
        if keeper:
            self._timekeeper = True
            wake_at = self._next_event()
            if wake_at is not None:
                timeout = min(max(wake_at - self._clock.monotonic(), 0.0), _RETIRE)
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
        if queue.ready < _REFILL_BELOW and self._may_refill(now):
            self._refilling = True
            return _REFILL
        if not queue.ready:
            return None
        if self._horizon is not None and now + self.latency.expected() > self._horizon:
            return None  # it could not be answered before the drain ends
        if queue.flying >= min(self._ceiling, self.latency.useful_in_flight()):
            return None
        admissions = self._admissions()
        open_ = {m for m, (a, _) in admissions.items() if a in (Admission.OPEN, Admission.PROBE)}
        if not open_:
            return None
        probing = [m for m in open_ if admissions[m][0] is Admission.PROBE]
        limits = self._limits
        in_flight = queue.in_flight
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

    def _may_refill(self, now: float) -> bool:
        if self._refilling or self._horizon is not None:
            return False
        when = self._books.may_refill()
        if when is None or when > now or len(self.queue) >= self._memory_limit // 2:
            return False
        return not self._gate.is_down() and now >= self._gate.not_before()

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
        look = self._books.may_refill() if self._horizon is None else None
        if look is not None and len(self.queue) < self._memory_limit // 2:
            times.append(max(look, self._gate.not_before()))
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
                start = self._wake(self.queue.ready) if items else 0
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
        kind = verdict(answer)
        if kind is Verdict.DELIVERED:
            outcome = Outcome.DELIVERED
        elif kind is Verdict.REJECTED:
            outcome = Outcome.REJECTED
        elif kind is Verdict.MISDIRECTED:
            outcome = Outcome.MISDIRECTED
        else:
            asked = retry_after_seconds(answer.retry_after)
            if answer.status != 429 and asked is None and self._gate.delivers():
                item.charged += 1  # others get through: this failure is its own
            outcome = Outcome.FAILED
        self._land(attempt, answer, outcome)

    def _land(self, attempt: _Attempt, answer: Answer, outcome: Outcome) -> None:
        """After an attempt: settle the call or set its backoff, tell the books."""
        item = attempt.item
        with self._lock:
            if item.state == ABANDONED:  # the drain counted it as left over
                return
            self.queue.landed(item)
            if answer.status is not None:
                self.latency.observe(attempt.took)
            overload = is_overload(answer.status, answer.timed_out)
            # The limit grows only while calls of the method wait for a slot (it holds them back).
            waiting = self.queue.has_ready(item.method)
            self._limits[item.method].answered(attempt.ticket, overload=overload, busy=waiting)
            item.attempts += 1
            if outcome is not Outcome.DELIVERED and outcome is not Outcome.UNSENDABLE:
                item.last = answer
            if outcome is Outcome.FAILED:
                outcome = self._retry_or_settle(item, answer)
            merged = self.queue.merge_into_newer(item) if outcome is Outcome.FAILED else None
            if merged is not None:
                outcome, freed = Outcome.MERGED, merged
            elif outcome is Outcome.FAILED and self._horizon is not None:
                freed = self.queue.retry_at(item, self._clock.monotonic())  # at once
            elif outcome is Outcome.FAILED:
                freed = self.queue.retry_at(item, self._next_try(item, answer))
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

    def _retry_or_settle(self, item: Pending, answer: Answer) -> Outcome:
        if item.charged >= MAX_OWN_FAILURES:
            return Outcome.GIVEN_UP
        if self._closed:
            return Outcome.LEFT
        if self._horizon is not None:  # draining: one chance, no backoff waited for...
            hiccup = answer.status is None and not answer.unreachable
            if not hiccup:  # ... but a connection reset or closed mid-way is tried again now
                return Outcome.LEFT
        if item.spool_id is not None:
            return Outcome.RETURNED
        return Outcome.FAILED

    def _next_try(self, item: Pending, answer: Answer) -> float:
        asked = retry_after_seconds(answer.retry_after) or 0.0
        return self._clock.monotonic() + max(backoff(item.attempts - 1, self._rng), asked)

    # -- counting calls that leave memory -------------------------------------------------------

    def _begin_settling(self, count: int) -> None:
        self._settle_begun += count  # with the lock held

    def _end_settling(self, count: int) -> None:
        with self._lock:
            self._settled += count
            if self._callers:
                self._news.notify_all()

    # -- a caller's loop ------------------------------------------------------------------------

    def quiet(self) -> bool:
        """With the lock held: whether no call is in flight, being counted, or could be sent
        now."""
        if self.queue.flying or self._settle_begun != self._settled:
            return False
        self.queue.promote(self._clock.monotonic())
        if not self.queue.ready:
            return True
        return not any(
            admission in (Admission.OPEN, Admission.PROBE)
            for admission, _ in self._admissions().values()
        )

    def _drive(self, done: Callable[[], bool], deadline: float, patient: bool) -> bool:
        grace_end: float | None = None  # past the deadline, answers due are waited for
        while True:
            with self._lock:
                if done():
                    return True
                now = self._clock.monotonic()
                if now >= deadline:
                    grace_end = grace_end or time.monotonic() + GRACE
                    if self.queue.flying and time.monotonic() < grace_end:
                        self._news.wait(grace_end - time.monotonic())  # an answer is due
                        continue
                    return False
                action = self._next()
                if action is None:
                    wake_at = self._next_event() if patient else None
                    until = deadline if wake_at is None else min(wake_at, deadline)
                    busy = (
                        self.queue.flying or self._refilling or self._settle_begun != self._settled
                    )
                    closed = all(
                        admission is Admission.CLOSED
                        for admission, _ in self._admissions().values()
                    )
                    # A down endpoint costs one wait, not one per export: its probe is the
                    # senders' business (without them, the next export's).
                    if not busy and (until >= deadline or not patient or closed):
                        return done()  # nothing can happen before the deadline
                    if busy or self._background:  # news from another thread, or the time
                        self._news.wait(min(until - now, 1.0) if self._background else 1.0)
                        continue
            if action is None:  # an injected clock, nothing in flight: move time on
                if self._clock.wait(until - now, self._stop):
                    return done()  # shutdown: no backoff is waited for any more
                continue
            self._act(action)
