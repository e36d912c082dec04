"""What becomes of a call after an attempt (``Outcome``), and who counts it (``Books``).

The senders report every outcome to the exporter's books through ``Books``; the books (in
``export._exporter_books``) count, log and spool what they are told.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

from otel_bucket.delivery._pending import Pending

__all__ = ["Books", "Outcome"]


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
