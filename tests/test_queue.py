"""The one queue of calls and the in-flight limits, as data structures (no threads, no HTTP)."""

from __future__ import annotations

from otel_bucket.delivery._limiter import Latency, Limiter, is_overload
from otel_bucket.delivery._pending import BLOCKED, DONE, READY, Pending, Ticket
from otel_bucket.delivery._queue import PATIENCE, CallQueue
from otel_bucket.ground._call import Call


def user(uid: str, **attributes: object) -> Pending:
    payload: dict[str, object] = {"userId": uid}
    if attributes:
        payload["attributes"] = attributes
    return Pending(Call("user", payload))


def company(cid: str, uid: str) -> Pending:
    return Pending(Call("company", {"companyId": cid, "userId": uid}))


def event(name: str, uid: str, company_id: str | None = None) -> Pending:
    return Pending(Call("event", {"event": name, "userId": uid}, span_company_id=company_id))


def anything(method: str) -> bool:
    return True


def take_all(queue: CallQueue) -> list[Pending]:
    taken = []
    while (item := queue.take(anything)) is not None:
        taken.append(item)
    return taken


def test_an_event_waits_for_its_own_user_and_company_only() -> None:
    """An event is blocked by the user and company calls of its span that wait beside it,
    never by other users' calls."""
    queue = CallQueue()
    u1, c1, u2 = user("u1"), company("c1", "u1"), user("u2")
    e1, e2 = event("E", "u1", "c1"), event("E", "u2")
    queue.add([u1, c1, u2, e1, e2])
    assert e1.state == BLOCKED and e1.blockers == 2
    assert e2.state == BLOCKED and e2.blockers == 1
    assert take_all(queue) == [u1, c1, u2]
    for item in (u1, c1, u2):
        queue.landed(item)
    assert queue.settle(u2) == [e2]  # u1's event still waits for u1 and c1
    assert queue.settle(u1) == []
    assert queue.settle(c1) == [e1]
    assert take_all(queue) == [e2, e1]


def test_an_event_stops_waiting_for_a_call_that_keeps_failing() -> None:
    """After PATIENCE failed attempts of its user call, an event goes on its own."""
    queue = CallQueue()
    u, e = user("u"), event("E", "u")
    queue.add([u, e])
    for attempt in range(1, PATIENCE + 1):
        assert queue.take(anything) is u
        queue.landed(u)
        u.attempts = attempt
        freed = queue.retry_at(u, not_before=float(attempt))
        queue.promote(float(attempt))
    assert freed == [e]
    assert e.state == READY


def test_an_event_does_not_wait_for_a_user_call_already_failing() -> None:
    """A user call that has failed PATIENCE times blocks no new event."""
    queue = CallQueue()
    u = user("u")
    queue.add([u])
    assert queue.take(anything) is u
    queue.landed(u)
    u.attempts = PATIENCE
    queue.retry_at(u, not_before=100.0)
    late = event("E", "u")
    queue.add([late])
    assert late.state == READY


def test_a_newer_call_merges_into_one_still_waiting() -> None:
    """A user call for the same id merges into the waiting one (later attributes win); the
    export waiting for the newer call waits for the merged one."""
    queue = CallQueue()
    old = user("u", plan="free", seats=1)
    queue.add([old])
    ticket = Ticket()
    new = user("u", plan="pro")
    new.hold(ticket)
    assert queue.add([new]) == [new]
    assert new.state == DONE
    assert old.call.payload["attributes"] == {"plan": "pro", "seats": 1}
    assert old.tickets == [ticket] and ticket.open == 1
    assert len(queue) == 1


def test_news_for_a_call_in_flight_waits_for_it() -> None:
    """A call for the ids of one being sent is not merged into it (its body is fixed): it waits
    until that one is answered, so the API sees them in order; one that adds nothing is
    absorbed."""
    queue = CallQueue()
    first = user("u", plan="free")
    queue.add([first])
    assert queue.take(anything) is first
    assert queue.add([user("u", plan="free")]) != []  # the same: nothing to send again
    second = user("u", plan="pro")
    assert queue.add([second]) == []
    assert len(queue) == 2 and second.state == BLOCKED
    queue.landed(first)
    assert queue.settle(first) == [second]


def test_fresh_and_retried_calls_take_turns() -> None:
    """Calls back from a backoff and fresh calls alternate: neither kind starves the other."""
    queue = CallQueue()
    old = [event(f"old{i}", "u") for i in range(4)]
    queue.add(old)
    for item in take_all(queue):
        queue.landed(item)
        item.attempts = 1
        queue.retry_at(item, not_before=1.0)
    fresh = [event(f"new{i}", "u") for i in range(4)]
    queue.add(fresh)
    queue.promote(1.0)
    names = [item.call.payload["event"] for item in take_all(queue)]
    assert names[:4] in (["old0", "new0", "old1", "new1"], ["new0", "old0", "new1", "old1"])
    assert sorted(names) == sorted(f"{k}{i}" for k in ("old", "new") for i in range(4))


def test_the_limit_of_each_method_is_its_own() -> None:
    """A method at its limit does not hold the others back."""
    queue = CallQueue()
    queue.add([user("u1"), user("u2"), event("E", "x")])
    taken = queue.take(lambda method: method != "user")
    assert taken is not None and taken.method == "event"


def test_a_probe_takes_a_call_of_the_method_asked_for() -> None:
    """The probe of a down endpoint tries the method whose turn it is, when one waits."""
    queue = CallQueue()
    queue.add([user("u1"), company("c", "u1"), event("E", "x")])
    probe = queue.take(anything, probe="company")
    assert probe is not None and probe.method == "company"


def test_overflow_takes_the_oldest_waiting_calls_and_frees_their_events() -> None:
    """Beyond the limit the oldest calls not in flight leave memory; events they blocked go."""
    queue = CallQueue()
    sending = user("a")
    queue.add([sending])
    assert queue.take(anything) is sending
    waiting_user, its_event, other = user("b"), event("E", "b"), user("c")
    queue.add([waiting_user, its_event, other])
    out = queue.overflow(2)
    assert out == [waiting_user, its_event][: len(out)] and len(out) == 2
    assert len(queue) == 2 and sending.state != DONE


def test_take_waiting_leaves_calls_in_flight() -> None:
    """At the end of a drain every call not in flight is taken out, oldest first."""
    queue = CallQueue()
    items = [user("a"), user("b"), event("E", "c")]
    queue.add(items)
    flying = queue.take(anything)
    assert queue.take_waiting() == [item for item in items if item is not flying]
    assert len(queue) == 1


def test_limit_doubles_while_busy_then_halves_once_per_round_on_overload() -> None:
    """Slow start doubles the limit per round while every slot is taken; an overload halves it
    once for the calls that were in flight together, then it grows by one per round."""
    limit = Limiter(ceiling=100, initial=4)
    for _ in range(4):
        limit.answered(limit.start(), overload=False, busy=True)
    assert limit.limit == 8
    tickets = [limit.start() for _ in range(8)]
    for ticket in tickets:
        limit.answered(ticket, overload=True, busy=True)
    assert limit.limit == 4  # one cut for the whole round
    for _ in range(4):
        limit.answered(limit.start(), overload=False, busy=True)
    assert 4.9 < limit.limit < 5.1  # one per round now


def test_limit_grows_only_when_it_holds_calls_back_and_stays_under_the_ceiling() -> None:
    """A quiet method keeps its limit; a busy one never passes the ceiling."""
    limit = Limiter(ceiling=10, initial=4)
    for _ in range(50):
        limit.answered(limit.start(), overload=False, busy=False)
    assert limit.limit == 4
    for _ in range(50):
        limit.answered(limit.start(), overload=False, busy=True)
    assert limit.limit == 10
    assert limit.allows(9) and not limit.allows(10)


def test_overload_signs() -> None:
    """429, 503, 504 and a timeout say "send less"; 500 and a refused connection do not."""
    assert [is_overload(s, False) for s in (429, 503, 504, 500, 400, 200)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert is_overload(None, True) and not is_overload(None, False)


def test_latency_bounds_calls_in_flight_to_what_it_can_hide() -> None:
    """Against a sub-millisecond endpoint few calls in flight suffice; at 50 ms many do."""
    latency = Latency()
    assert latency.useful_in_flight() > 1000 and latency.expected() == 0.0
    for _ in range(50):
        latency.observe(0.0003)
    assert latency.useful_in_flight() == 2
    for _ in range(2 * Latency.WINDOW):  # the endpoint moved away: two windows later it shows
        latency.observe(0.050)
    assert latency.useful_in_flight() >= 100
    assert 0.05 <= latency.expected() < 0.2


def test_latency_bound_is_the_endpoints_own_not_the_queue_in_front_of_it() -> None:
    """Answers that slow down as calls pile up (a loopback server, the GIL) do not let more
    calls go: the bound follows the quickest recent answer, so it cannot feed itself. A quick
    error says nothing of the endpoint's latency."""
    latency = Latency()
    for took in (0.0004, 0.0003):
        latency.observe(took)
    for i in range(Latency.WINDOW):  # queueing: each answer slower than the last
        latency.observe(0.001 + i * 0.0005)
    assert latency.mean is not None and latency.mean > 0.05
    assert latency.useful_in_flight() == 2
    far = Latency()
    for _ in range(10):
        far.observe(0.050)
    for _ in range(3 * Latency.WINDOW):
        far.observe(0.0001, delivered=False)  # 503s at once
    assert far.useful_in_flight() >= 100
