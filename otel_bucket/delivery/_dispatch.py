"""The dispatcher: what an exporter sees of its queue of calls and its senders (``_senders``).

Whoever waits for calls (``export``, ``force_flush``, the drain at shutdown) sends too, so nothing
depends on a thread being startable (at interpreter exit it may not be).

With an injected clock (tests) no sender sleeps: threads end when nothing is ready, and only
the thread that waits for calls moves time forward, so a retry test runs without real waits.

Near a drain's deadline only calls that can be answered before it are started (the latency is
measured), and a call in flight is given until the deadline plus ``GRACE``, so an answer that is
due is not cut (a cut call may have been processed: sending it again would duplicate it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from otel_bucket.delivery._gate import Admission
from otel_bucket.delivery._pending import Pending, Ticket
from otel_bucket.delivery._senders import GRACE, Senders

__all__ = ["Dispatcher"]


class Dispatcher(Senders):
    """One exporter's queue and the threads that send from it: the callers' side."""

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
