"""A process that uses a spool, driven by tests/test_spool_processes.py: SIGUSR1 says "go", and
each line it prints is flushed at once, so what the test reads is what it had done by then.

``python -m tests._spool_worker COMMAND PATH [NUMBERS]``
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sqlite3
import sys

from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool


def _say(line: str) -> None:
    print(line, flush=True)


def _wait_for_go() -> None:
    # SIGUSR1 is blocked from the start (see main), so one sent early waits here, not lost.
    signal.sigwait({signal.SIGUSR1})


def _event(seq: int, pad: int = 0) -> Call:
    payload = {"event": "Work", "userId": f"u{seq}", "attributes": {"seq": seq, "pad": "x" * pad}}
    return Call("event", payload)


def claim(spool: Spool, batch: int) -> None:
    """Claim in batches and ack, until nothing is left; first one batch in step with the test."""
    _say("ready")
    _wait_for_go()
    first = spool.claim(batch)
    _say("claimed " + ",".join(str(c.id) for c in first))
    _wait_for_go()
    spool.ack([c.id for c in first])
    total = len(first)
    while taken := spool.claim(batch):
        _say("claimed " + ",".join(str(c.id) for c in taken))
        spool.ack([c.id for c in taken])
        total += len(taken)
    _say(f"done {total}")


def put(spool: Spool, batch: int) -> None:
    """Put batches of numbered events for ever, saying after each how many are committed."""
    seq = 0
    while True:
        stored = spool.put([_event(seq + i, pad=200) for i in range(batch)])
        if stored != batch:
            _say(f"failed {stored}")
            return
        seq += batch
        _say(f"committed {seq}")


def hold(spool: Spool, count: int) -> None:
    """Claim ``count`` calls, say which, then wait (to be killed while holding them)."""
    taken = spool.claim(count)
    _say("claimed " + ",".join(str(c.id) for c in taken))
    _wait_for_go()  # none comes: the test kills this process


def flood(spool: Spool, count: int) -> None:
    """Store ``count`` calls, then more until the file system refuses; say what the file holds."""
    _say(f"stored {spool.put([_event(i) for i in range(count)])}")
    _more(spool, count)


def fill(spool: Spool, count: int) -> None:
    """``flood``, with writes past the files' present size failing (EFBIG, not a signal)."""
    _say(f"stored {spool.put([_event(i) for i in range(count)])}")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    largest = max(os.path.getsize(p) for p in (spool.path, f"{spool.path}-wal"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 64 * 1024, resource.RLIM_INFINITY))
    _more(spool, count)


def _more(spool: Spool, stored: int) -> None:
    for _ in range(10_000):
        more = spool.put([_event(stored + i, pad=1000) for i in range(20)])
        if not more:
            break
        stored += more
    _say(f"stored {stored} disabled {spool.disabled}")
    # Read back with plain sqlite3: the spool itself is off now.
    conn = sqlite3.connect(spool.path)
    kept = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    _say(f"kept {kept} {conn.execute('PRAGMA integrity_check').fetchone()[0]}")
    conn.close()


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    command, path, *args = sys.argv[1:]
    numbers = [int(a) for a in args]
    lease = float(os.environ.get("SPOOL_LEASE", "120"))
    spool = Spool(path, lease_seconds=lease, max_bytes=1 << 40)
    {"claim": claim, "put": put, "hold": hold, "fill": fill, "flood": flood}[command](
        spool, *numbers
    )
    spool.close()


if __name__ == "__main__":
    main()
