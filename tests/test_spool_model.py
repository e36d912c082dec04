"""The spool against a simple model, over interleavings hypothesis picks: put, claim, ack, release,
close and reopen, a holder dying with its leases, time passing beyond the lease."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool

LEASE = 60.0
HOLDERS = 3

scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
attributes = st.dictionaries(st.text(max_size=10), scalars, max_size=4)
methods = st.sampled_from(["user", "company", "event"])


@dataclass
class Holder:
    """One process's view: its Spool object and the calls it believes it holds."""

    spool: Spool
    generation: int
    held: dict[int, int] = field(default_factory=dict)  # id -> seq


class SpoolMachine(RuleBasedStateMachine):
    """Several holders share one spool file and one clock; the model says what must be there."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.path = self.dir / "spool.db"
        self.now = 1_000_000.0
        self.generations = 0
        self.abandoned: list[Spool] = []
        self.holders: list[Holder] = []
        self.order: list[int] = []  # seqs in the spool, oldest first
        self.payloads: dict[int, Call] = {}
        self.leases: dict[int, tuple[tuple[int, int], float]] = {}  # seq -> (owner, until)
        self.next_seq = 0

    def _open(self) -> Holder:
        self.generations += 1
        spool = Spool(self.path, clock=lambda: self.now, lease_seconds=LEASE, max_bytes=1 << 40)
        return Holder(spool, self.generations)

    def _owner(self, index: int) -> tuple[int, int]:
        return (index, self.holders[index].generation)

    def _leased(self, seq: int) -> bool:
        lease = self.leases.get(seq)
        return lease is not None and lease[1] > self.now

    @initialize()
    def start(self) -> None:
        self.holders = [self._open() for _ in range(HOLDERS)]

    @rule(
        h=st.integers(0, HOLDERS - 1),
        calls=st.lists(st.tuples(methods, attributes), min_size=1, max_size=5),
    )
    def put(self, h: int, calls: list[tuple[str, dict[str, object]]]) -> None:
        batch = []
        for method, attrs in calls:
            seq = self.next_seq
            self.next_seq += 1
            call = Call(method, {"userId": f"u{seq}", "seq": seq, "attributes": attrs})
            self.payloads[seq] = call
            self.order.append(seq)
            batch.append(call)
        assert self.holders[h].spool.put(batch) == len(batch)

    @rule(h=st.integers(0, HOLDERS - 1), limit=st.integers(1, 6))
    def claim(self, h: int, limit: int) -> None:
        holder = self.holders[h]
        expected = [s for s in self.order if not self._leased(s)][:limit]
        taken = holder.spool.claim(limit)
        got = [c.call.payload["seq"] for c in taken]
        assert got == expected, "a claim must give the oldest calls nobody holds"
        for c, seq in zip(taken, got, strict=True):
            assert c.call == self.payloads[seq]
            assert c.spooled_at <= self.now
            self.leases[seq] = (self._owner(h), self.now + LEASE)
            holder.held[c.id] = seq

    @precondition(lambda self: any(h.held for h in self.holders))
    @rule(h=st.integers(0, HOLDERS - 1), data=st.data())
    def ack(self, h: int, data: st.DataObject) -> None:
        holder = self.holders[h]
        if not holder.held:
            return
        ids = data.draw(st.lists(st.sampled_from(sorted(holder.held)), unique=True, min_size=1))
        present = [holder.held[i] for i in ids if holder.held[i] in self.payloads]
        assert holder.spool.ack(ids) == len(present)
        for i in ids:
            seq = holder.held.pop(i)
            if seq in self.payloads:
                del self.payloads[seq]
                self.order.remove(seq)
                self.leases.pop(seq, None)

    @precondition(lambda self: any(h.held for h in self.holders))
    @rule(h=st.integers(0, HOLDERS - 1), data=st.data())
    def release(self, h: int, data: st.DataObject) -> None:
        holder = self.holders[h]
        if not holder.held:
            return
        ids = data.draw(st.lists(st.sampled_from(sorted(holder.held)), unique=True, min_size=1))
        mine = [
            holder.held[i]
            for i in ids
            if holder.held[i] in self.leases and self.leases[holder.held[i]][0] == self._owner(h)
        ]
        # Its own lease, even expired, until someone else takes the call.
        assert holder.spool.release(ids) == len(mine)
        for seq in mine:
            del self.leases[seq]
        for i in ids:
            del holder.held[i]

    @rule(h=st.integers(0, HOLDERS - 1))
    def reopen(self, h: int) -> None:
        """close() gives the holder's leases back; a new object takes its place."""
        self.holders[h].spool.close()
        owner = self._owner(h)
        for seq in [s for s, (o, _) in self.leases.items() if o == owner]:
            del self.leases[seq]
        self.holders[h] = self._open()

    @rule(h=st.integers(0, HOLDERS - 1))
    def die(self, h: int) -> None:
        """The holder vanishes without closing: its leases stay until they expire."""
        self.abandoned.append(self.holders[h].spool)
        self.holders[h] = self._open()

    @rule(seconds=st.sampled_from([1.0, LEASE / 2, LEASE, LEASE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def nothing_lost_nothing_extra(self) -> None:
        if not self.holders:
            return
        info = self.holders[0].spool.info()
        assert info.total == len(self.order)
        assert info.leased == sum(1 for s in self.order if self._leased(s))

    def teardown(self) -> None:
        for holder in self.holders:
            holder.spool.close()
        for spool in self.abandoned:
            spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSpoolModel = SpoolMachine.TestCase
