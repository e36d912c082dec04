"""The exporter's one queue of calls in memory, in the order they may go out.

Every call waits here from the moment its span is exported until the API answered it: ready to
send, in its own backoff, or (an event) blocked until the user and company calls of that event
that wait beside it are delivered or given up. No call waits for any other: there are no phases.
Ready calls are kept per method (each method has its own concurrency limit) in two lanes, fresh
and retried, taken in turn, so neither old failing calls nor a burst of fresh ones starve the
other. A newer user or company call for the same ids merges into one still waiting.

The queue is a data structure only: the dispatcher calls it with its lock held.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable

from otel_bucket.delivery._pending import ABANDONED, BLOCKED, DELAYED, DONE, FLIGHT, READY, Pending
from otel_bucket.ground._call import merge_calls

__all__ = ["FRESH", "METHODS", "PATIENCE", "PATIENCE_SECONDS", "RETRIED", "CallQueue"]

METHODS = ("user", "company", "event")
FRESH, RETRIED = 0, 1
PATIENCE = 3  # failed attempts of a user/company call after which its events stop waiting
PATIENCE_SECONDS = 10.0  # ... or the seconds after which they stop waiting all the same


def _blocker_keys(item: Pending) -> list[tuple[str, ...]]:
    """The identities of the user and company calls an event waits for."""
    call = item.call
    user = call.payload.get("userId", "")
    keys: list[tuple[str, ...]] = [("user", user)]
    if call.span_company_id is not None:
        keys.append(("company", call.span_company_id, user))
    return keys


def _adds_nothing(item: Pending, sending: Pending) -> bool:
    """Whether ``item`` (a user or company call) says nothing that ``sending``, the call for
    the same ids being sent, does not (its attributes are the same, or it has none)."""
    attributes = item.call.payload.get("attributes")
    return not attributes or attributes == sending.call.payload.get("attributes")


def _block(item: Pending, blocker: Pending) -> None:
    """``item`` waits until ``blocker`` is settled (or has failed ``PATIENCE`` times)."""
    if blocker.dependents is None:
        blocker.dependents = []
    blocker.dependents.append(item)
    item.blockers += 1


class CallQueue:
    """Calls in memory: ready (per method and lane), delayed, blocked or in flight."""

    def __init__(self) -> None:
        self._items: dict[int, Pending] = {}  # by seq: arrival order, oldest first
        self._lanes: dict[str, tuple[deque[Pending], deque[Pending]]] = {
            method: (deque(), deque()) for method in METHODS
        }
        self._delayed: list[tuple[float, int, Pending]] = []
        self._blocked: list[tuple[float, int, Pending]] = []  # when each stops waiting
        self._latest: dict[tuple[str, ...], Pending] = {}  # unsettled user/company calls
        self._seq = itertools.count(1)
        self._turn = 0
        self.ready = 0  # calls that may be sent now
        self.in_flight: dict[str, int] = dict.fromkeys(METHODS, 0)
        self.flying = 0

    def __len__(self) -> int:
        """Calls in memory, in flight included."""
        return len(self._items)

    # -- adding ---------------------------------------------------------------------------------

    def add(
        self,
        items: Iterable[Pending],
        lane: int = FRESH,
        now: float = 0.0,
        duplicate: Callable[[Pending], bool] | None = None,
        failing: Callable[[str], bool] | None = None,
    ) -> list[Pending]:
        """Queue ``items`` (user and company calls before the events that need them) at ``now``
        (on the clock); return those merged into a waiting call for the same ids, or that
        ``duplicate`` says were delivered meanwhile (they are settled: deduplicated). An event
        does not wait for calls of a method ``failing`` says fails."""
        merged: list[Pending] = []
        for item in items:
            if item.method != "event":
                identity = item.call.identity
                waiting = self._latest.get(identity)
                if waiting is not None and waiting.state not in (DONE, ABANDONED):
                    if waiting.state != FLIGHT:
                        waiting.replace_call(merge_calls([waiting.call, item.call])[0])
                    if waiting.state != FLIGHT or _adds_nothing(item, waiting):
                        if item.tickets:  # the exports that wait for it wait for that call
                            waiting.tickets = (waiting.tickets or []) + item.tickets
                            item.tickets = None
                        item.state = DONE
                        merged.append(item)
                        continue
                    _block(item, waiting)  # news about one being sent: after it, in order
                elif duplicate is not None and duplicate(item):  # delivered since its export
                    item.state = DONE
                    merged.append(item)
                    continue
                self._latest[identity] = item
            item.seq = next(self._seq)
            self._items[item.seq] = item
            if item.method == "event":
                self._block_on_its_calls(item, failing)
            if item.blockers:
                item.state = BLOCKED
                heapq.heappush(self._blocked, (now + PATIENCE_SECONDS, item.seq, item))
            else:
                self._push(item, lane)
        return merged

    def _block_on_its_calls(
        self, item: Pending, failing: Callable[[str], bool] | None = None
    ) -> None:
        for key in _blocker_keys(item):
            blocker = self._latest.get(key)
            if blocker is None or blocker.state == DONE or blocker.attempts >= PATIENCE:
                continue
            if failing is not None and failing(blocker.method):
                continue
            _block(item, blocker)

    def _push(self, item: Pending, lane: int) -> None:
        item.state = READY
        self._lanes[item.method][lane].append(item)
        self.ready += 1

    # -- taking ---------------------------------------------------------------------------------

    def promote(self, now: float) -> None:
        """Calls whose backoff has ended become ready (in the retried lane); calls that waited
        ``PATIENCE_SECONDS`` for others go on their own."""
        blocked = self._blocked
        while blocked and blocked[0][0] <= now:
            item = heapq.heappop(blocked)[2]
            if item.state == BLOCKED:
                item.blockers = 0
                self._push(item, FRESH)
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            not_before, _, item = heapq.heappop(delayed)
            if item.state == DELAYED and item.not_before == not_before:
                self._push(item, RETRIED)

    def has_ready(self, method: str) -> bool:
        """Whether calls of ``method`` are ready."""
        return any(self._end(lane, 0) is not None for lane in self._lanes[method])

    def next_due(self) -> float | None:
        """When the earliest call in backoff, or waiting for another, may go (None: none)."""
        blocked = self._blocked
        while blocked and blocked[0][2].state != BLOCKED:
            heapq.heappop(blocked)
        delayed = self._delayed
        while delayed:
            not_before, _, item = delayed[0]
            if item.state == DELAYED and item.not_before == not_before:
                return min(not_before, blocked[0][0]) if blocked else not_before
            heapq.heappop(delayed)
        return blocked[0][0] if blocked else None

    def take(
        self,
        may_send: Callable[[str], bool],
        probe: str | None = None,
        *,
        newest_first: bool = False,
    ) -> Pending | None:
        """The next call to send, among the methods ``may_send`` allows: oldest first, fresh
        and retried lanes in turn. With ``probe``, a call of that method if there is one. With
        ``probe`` or ``newest_first`` (the endpoint has been failing), the newest call never
        tried goes first: it tells most about the endpoint now, where old calls may fail for
        reasons of their own (and waited through the trouble anyway)."""
        if not self.ready:
            return None
        self._turn ^= 1
        best: Pending | None = None
        newest = bool(probe) or newest_first
        for method in (probe, *METHODS) if probe else METHODS:
            if method is None or not may_send(method):
                continue
            lanes = self._lanes[method]
            order = (FRESH, RETRIED) if newest else (self._turn, self._turn ^ 1)
            for lane in order:
                end = -1 if newest and lane == FRESH else 0
                found = self._end(lanes[lane], end)
                if found is not None:
                    if best is None or (found.seq > best.seq if end else found.seq < best.seq):
                        best, best_lane, best_end = found, lane, end
                    break
            if probe and best is not None:
                break
        if best is None:
            return None
        lane_of = self._lanes[best.method][best_lane]
        if best_end:
            lane_of.pop()
        else:
            lane_of.popleft()
        self.ready -= 1
        best.state = FLIGHT
        self.in_flight[best.method] += 1
        self.flying += 1
        return best

    @staticmethod
    def _end(lane: deque[Pending], end: int) -> Pending | None:
        """The ready call at the head (``end`` 0) or the tail (-1) of ``lane``."""
        while lane:
            item = lane[end]
            if item.state == READY:
                return item
            if end:
                lane.pop()  # taken out of memory meanwhile
            else:
                lane.popleft()
        return None

    # -- after an attempt -----------------------------------------------------------------------

    def landed(self, item: Pending) -> None:
        """``item``'s attempt is over (call once per attempt, before settle or retry)."""
        self.in_flight[item.method] -= 1
        self.flying -= 1

    def settle(self, item: Pending) -> list[Pending]:
        """``item`` is done (delivered, rejected, given up); return the events it freed."""
        self._forget(item)
        return self.release(item)

    def merge_into_newer(self, item: Pending) -> list[Pending] | None:
        """``item`` (a user or company call back from a failed attempt) merges into a newer
        call for the same ids that waits meanwhile, if there is one (then it is settled:
        deduplicated); return the calls that may go now, or None when it did not merge."""
        if item.method == "event":
            return None
        newer = self._latest.get(item.call.identity)
        if newer is None or newer is item or newer.state in (FLIGHT, DONE, ABANDONED):
            return None
        newer.replace_call(merge_calls([item.call, newer.call])[0])
        if item.tickets:
            newer.tickets = (newer.tickets or []) + item.tickets
            item.tickets = None
        freed: list[Pending] = []
        for waiting in item.dependents or ():
            if waiting is not newer:  # its events wait for the merged call now
                _block(waiting, newer)
                waiting.blockers -= 1
            elif newer.blockers == 1 and newer.state == BLOCKED:  # it waited for this one
                newer.blockers = 0
                self._push(newer, FRESH)
                freed.append(newer)
            else:
                newer.blockers -= 1
        item.dependents = None
        item.state = DONE
        self._items.pop(item.seq, None)
        return freed

    def retry_at(self, item: Pending, not_before: float) -> list[Pending]:
        """``item`` waits for its backoff; return the events that stop waiting for it."""
        item.not_before = not_before
        item.state = DELAYED
        heapq.heappush(self._delayed, (not_before, item.seq, item))
        return self.release(item) if item.attempts >= PATIENCE else []

    def release(self, item: Pending) -> list[Pending]:
        """The events waiting for ``item`` stop waiting; return those now ready."""
        freed: list[Pending] = []
        for event in item.dependents or ():
            event.blockers -= 1
            if event.blockers == 0 and event.state == BLOCKED:
                self._push(event, FRESH)
                freed.append(event)
        item.dependents = None
        return freed

    def _forget(self, item: Pending) -> None:
        if item.state == READY:
            self.ready -= 1
        item.state = DONE
        self._items.pop(item.seq, None)
        if item.method != "event" and self._latest.get(item.call.identity) is item:
            del self._latest[item.call.identity]

    # -- taking calls out of memory -------------------------------------------------------------

    def overflow(self, limit: int) -> list[Pending]:
        """The oldest calls not in flight beyond ``limit``, taken out (for the spool)."""
        excess = len(self._items) - limit
        if excess <= 0:
            return []
        waiting = (item for item in self._items.values() if item.state != FLIGHT)
        out = list(itertools.islice(waiting, excess))
        for item in out:
            self._forget(item)
            self.release(item)
        return out

    def take_waiting(self) -> list[Pending]:
        """Every call not in flight, taken out, oldest first."""
        out = [item for item in self._items.values() if item.state != FLIGHT]
        for item in out:
            self._forget(item)
            item.dependents = None
        self._delayed.clear()
        self._blocked.clear()
        return out

    def take_flying(self) -> list[Pending]:
        """Every call still in flight, abandoned (its answer will be ignored)."""
        out = [item for item in self._items.values() if item.state == FLIGHT]
        for item in out:
            item.state = ABANDONED
            self._items.pop(item.seq, None)
            item.dependents = None
        self.flying = 0
        self.in_flight = dict.fromkeys(METHODS, 0)
        return out

    def unblock(self, method: str | None = None) -> list[Pending]:
        """The endpoint (None), or ``method``, was found failing: events stop waiting for user
        and company calls of what fails (they could wait for long, and an event may be what
        gets through). Return the events freed."""
        freed: list[Pending] = []
        for item in list(self._latest.values()):
            if item.dependents and method in (None, item.method):
                freed += self.release(item)
        return freed

    def retry_all_now(self) -> None:
        """Every call in backoff becomes ready at once (the last chance at shutdown)."""
        for _, _, item in self._delayed:
            if item.state == DELAYED:
                self._push(item, RETRIED)
        self._delayed.clear()
