"""One call on its way to the Tracking API: the call, its body, and its place in the queue."""

from __future__ import annotations

import json

from otel_bucket.delivery._transport import Answer
from otel_bucket.ground._call import Call

__all__ = ["ABANDONED", "BLOCKED", "DELAYED", "DONE", "FLIGHT", "READY", "Pending", "Ticket"]

# Where a call is (``Pending.state``).
BLOCKED = 0  # an event waiting for its own user or company call
READY = 1  # may be sent now
DELAYED = 2  # in its own backoff
FLIGHT = 3  # being sent
DONE = 4  # settled, or taken out of memory (to the spool, or lost)
ABANDONED = 5  # still in flight when sending ended: counted as left over, its answer ignored


class Ticket:
    """What one ``export`` waits for: its calls' fates."""

    __slots__ = ("failed", "open")

    def __init__(self) -> None:
        self.open = 0  # calls not settled yet
        self.failed = 0  # calls settled without being delivered or rejected


class Pending:
    """One call on its way: the call, its JSON body (encoded once), its retry state, and the
    calls that wait for it (the events of a user or company call)."""

    __slots__ = (
        "_body",
        "attempts",
        "blockers",
        "call",
        "charged",
        "dependents",
        "last",
        "not_before",
        "seq",
        "spool_id",
        "state",
        "tickets",
    )

    def __init__(self, call: Call) -> None:
        self.call = call
        self._body: bytes | None = None
        self.attempts = 0  # attempts made
        self.charged = 0  # failures that were this call's own (others got through meanwhile)
        self.not_before = 0.0  # monotonic time before which it must not be tried again
        self.last: Answer | None = None  # the answer of the last failed attempt
        self.spool_id: int | None = None  # its row, when it was taken from the spool
        self.state = READY
        self.seq = 0  # its place in arrival order (set by the queue)
        self.blockers = 0  # user/company calls it still waits for
        self.dependents: list[Pending] | None = None  # the events that wait for it
        self.tickets: list[Ticket] | None = None  # the exports that wait for its fate

    @property
    def method(self) -> str:
        return self.call.method

    @property
    def body(self) -> bytes:
        """The request body; raises ValueError for a payload JSON cannot carry."""
        if self._body is None:
            self._body = json.dumps(
                self.call.payload, allow_nan=False, separators=(",", ":")
            ).encode()
        return self._body

    def hold(self, ticket: Ticket) -> None:
        """``ticket`` waits for this call's fate."""
        if self.tickets is None:
            self.tickets = []
        self.tickets.append(ticket)
        ticket.open += 1

    def resolve(self, ok: bool) -> None:
        """Tell the exports waiting for this call its fate."""
        for ticket in self.tickets or ():
            ticket.open -= 1
            if not ok:
                ticket.failed += 1
        self.tickets = None

    def replace_call(self, call: Call) -> None:
        """Carry ``call`` instead (a newer call for the same ids was merged into this one)."""
        self.call = call
        self._body = None
