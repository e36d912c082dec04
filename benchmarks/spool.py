"""The durable spool's throughput: calls/s written to it, and calls/s drained from it.

Run: ``python benchmarks/spool.py`` (a few seconds). Writes 20,000 calls shaped like real ones
(a user call with attributes, a company call, events) into a spool in a temporary directory, in
batches of 1, 100 and 1,000 calls (one transaction per batch), then drains them as an exporter
would: claim 500, ack 500, until empty; also by two processes at once on one file.

No target is asserted: what matters is that writing takes far less than the ``timeout`` a
shutdown spends on a dead endpoint (10,000 undelivered calls must go in well under a second),
and that draining is faster than the Tracking API can take the calls (~1,000 calls/s on
loopback, see ``delivery.py``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

from otel_bucket._mapping import Call
from otel_bucket._spool import Spool

CALLS = 20_000
CLAIM = 500


def calls(n: int) -> list[Call]:
    """``n`` calls, one in ten a user call, one in ten a company call, the rest events."""
    out = []
    for i in range(n):
        stamp = {"timestamp": "2026-11-27T14:03:05.123Z"}
        if i % 10 == 0:
            attrs = {"name": f"User {i}", "email": f"user{i}@example.com", "plan": "pro"}
            out.append(Call("user", {"userId": str(i), "attributes": attrs, **stamp}))
        elif i % 10 == 1:
            attrs = {"name": "Acme", "seats": 42}
            out.append(Call("company", {"companyId": "c1", "userId": str(i), "attributes": attrs}))
        else:
            attrs = {"position": "popover", "format": "csv"}
            out.append(Call("event", {"event": "Export", "userId": str(i), "attributes": attrs}))
    return out


def write(path: Path, batch: int, data: list[Call]) -> float:
    """Seconds to put ``data`` in batches of ``batch``."""
    spool = Spool(path)
    started = time.perf_counter()
    for start in range(0, len(data), batch):
        spool.put(data[start : start + batch])
    elapsed = time.perf_counter() - started
    spool.close()
    return elapsed


def drain(path: str) -> int:
    """Claim and ack until the spool is empty; return how many calls this process took."""
    spool = Spool(path)
    taken = 0
    while batch := spool.claim(CLAIM):
        spool.ack([c.id for c in batch])
        taken += len(batch)
    spool.close()
    return taken


def main() -> int:
    logging.disable(logging.WARNING)
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    data = calls(CALLS)
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (1, 100, 1000):
            path = Path(tmp) / f"w{batch}.db"
            n = CALLS if batch > 1 else CALLS // 10  # one transaction per call is the slow case
            seconds = write(path, batch, data[:n])
            size = path.stat().st_size
            print(
                f"  write, {batch:>5} call(s) per put: {n / seconds:>9,.0f} calls/s "
                f"({n:,} calls, file {size / 1024 / 1024:.1f} MiB)"
            )
        path = Path(tmp) / "w1000.db"
        started = time.perf_counter()
        drained = drain(str(path))
        seconds = time.perf_counter() - started
        print(f"  drain, 1 process, claim+ack {CLAIM}: {drained / seconds:>9,.0f} calls/s")
        write(path, 1000, data)
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            shares = pool.map(drain, [str(path), str(path)])
        seconds = time.perf_counter() - started
        print(
            f"  drain, 2 processes at once:       {sum(shares) / seconds:>9,.0f} calls/s "
            f"(shares {shares[0]:,} + {shares[1]:,}; includes starting them)"
        )
        ok = sum(shares) == CALLS and drained == CALLS
    print("every call drained exactly once" if ok else "MISSING CALLS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
