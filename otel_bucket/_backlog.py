"""Calls not delivered yet: each with its own retry state, kept (bounded) between exports.

The SDK's batch processor drops a batch whose export failed; keeping the undelivered calls here
means an outage shorter than the backlog loses nothing. Each call carries its own backoff
(``not_before``) and the failures counted against it, so an old call that keeps failing while
others get through is given up instead of blocking fresh ones.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable

from otel_bucket._mapping import Call, merge_calls
from otel_bucket._transport import Answer

__all__ = ["BACKLOG_LIMIT", "Backlog", "Pending", "merge_pending"]

BACKLOG_LIMIT = 10_000


class Pending:
    """One call on its way: the call, its JSON body (encoded once) and its retry state."""

    __slots__ = ("_body", "attempts", "call", "charged", "last", "not_before", "spool_id")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._body: bytes | None = None
        self.attempts = 0  # attempts made
        self.charged = 0  # failures that were this call's own (others got through meanwhile)
        self.not_before = 0.0  # monotonic time before which it must not be tried again
        self.last: Answer | None = None  # the answer of the last failed attempt
        self.spool_id: int | None = None  # its row, when it was taken from the spool

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


def merge_pending(items: Iterable[Pending]) -> tuple[list[Pending], int]:
    """Collapse waiting user/company calls with the same ids into the latest one, as within an
    export; return the items and how many calls were merged away. Events pass unchanged."""
    items = list(items)
    merged = merge_calls(item.call for item in items)
    if len(merged) == len(items):
        return items, 0
    latest = {item.call.identity: item for item in items if item.call.method != "event"}
    out: list[Pending] = []
    for call in merged:
        if call.method == "event":
            continue
        item = latest[call.identity]
        if item.call is not call:  # combined with an earlier call: a new call, fresh state
            item = Pending(call)
        out.append(item)
    out.extend(item for item in items if item.call.method == "event")
    return out, len(items) - len(out)


class Backlog:
    """A bounded, thread-safe queue of undelivered calls; the oldest go first when full."""

    def __init__(self, limit: int = BACKLOG_LIMIT) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._items: deque[Pending] = deque()

    def take(self) -> list[Pending]:
        """Remove and return every waiting call, oldest first."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def keep(self, items: Iterable[Pending]) -> list[Pending]:
        """Hold ``items`` for a later export; return the oldest calls a full backlog gave up."""
        with self._lock:
            self._items.extend(items)
            over = max(len(self._items) - self._limit, 0)
            return [self._items.popleft() for _ in range(over)]

    def __len__(self) -> int:
        return len(self._items)
