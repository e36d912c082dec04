"""What becomes of a call after an attempt (``Outcome``, decided from the answer by
``outcome_of`` and ``after_failure``, and when a failed call is tried again, ``next_try``), and
who counts it (``Books``).

The senders report every outcome to the exporter's books through ``Books``; the books (in
``export._exporter_books``) count, log and spool what they are told.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from otel_bucket.delivery._pending import Pending
from otel_bucket.delivery._retry import Verdict, backoff, retry_after_seconds, verdict
from otel_bucket.delivery._transport import Answer
from otel_bucket.ground._clock import Clock

__all__ = ["MAX_OWN_FAILURES", "Books", "Outcome", "after_failure", "next_try", "outcome_of"]

MAX_OWN_FAILURES = 16  # a call failing this often while others get through is given up


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


def outcome_of(answer: Answer, item: Pending, delivers: Callable[[], bool]) -> Outcome:
    """What one answer makes of ``item``; a failure while the endpoint ``delivers()`` other
    calls is charged to the call itself (unless the endpoint asked to slow down)."""
    kind = verdict(answer)
    if kind is Verdict.DELIVERED:
        return Outcome.DELIVERED
    if kind is Verdict.REJECTED:
        return Outcome.REJECTED
    if kind is Verdict.MISDIRECTED:
        return Outcome.MISDIRECTED
    asked = retry_after_seconds(answer.retry_after)
    if answer.status != 429 and asked is None and delivers():
        item.charged += 1  # others get through: this failure is its own
    return Outcome.FAILED


def after_failure(item: Pending, answer: Answer, closed: bool, draining: bool) -> Outcome:
    """A failed call: given up, left for the spool, back to the spool, or tried again
    (``FAILED``)."""
    if item.charged >= MAX_OWN_FAILURES:
        return Outcome.GIVEN_UP
    if closed:
        return Outcome.LEFT
    if draining:  # one chance, no backoff waited for...
        hiccup = answer.status is None and not answer.unreachable
        if not hiccup:  # ... but a connection reset or closed mid-way is tried again now
            return Outcome.LEFT
    if item.spool_id is not None:
        return Outcome.RETURNED
    return Outcome.FAILED


def next_try(item: Pending, answer: Answer, clock: Clock, rng: random.Random) -> float:
    """When a failed call may go again: its backoff, or the ``Retry-After``, the later."""
    asked = retry_after_seconds(answer.retry_after) or 0.0
    return clock.monotonic() + max(backoff(item.attempts - 1, rng), asked)
