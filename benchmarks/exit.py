"""Exit: how long a process takes to exit after a burst of feature calls, with no explicit flush.

Run: ``python benchmarks/exit.py`` (under a minute). A child process runs ``install()``, makes
10,000 ``@feature`` calls in a tight loop and returns. Measured from the parent:

- against the local devserver: the events that arrived before the process ended and the time
  the exit took (the drain at exit takes at most ``timeout``: what it could not send in that
  time is kept in the spool), then the events that ``otel-bucket spool flush`` (the next
  process) sends from the spool, and how many arrived twice;
- against a silent endpoint (a port that accepts connections and never answers) and a refused
  one, with ``timeout=2``: the exit time, which must stay near ``timeout`` plus a few seconds
  however many batches are queued.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

from otel_bucket.devserver import DevServer
from otel_bucket.devserver._store import Call

CALLS = 10_000
TIMEOUT = 2.0

CHILD = """
import sys
from otel_bucket import feature, identify, install, set_event_attributes

install(tracking_key="bench", endpoint=sys.argv[1], timeout=float(sys.argv[2]))

@feature("Burst")
def burst(seq):
    set_event_attributes({"seq": seq})

with identify("u1", "c1"):
    for i in range(int(sys.argv[3])):
        burst(i)
"""


def run_child(endpoint: str, spool: str) -> tuple[float, str]:
    """Seconds from start to exit of the burst process, and its stderr."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, endpoint, str(TIMEOUT), str(CALLS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BUCKET_SPOOL_DIR": spool},
    )
    return time.perf_counter() - started, proc.stderr.strip()


def flush(endpoint: str, spool: str) -> None:
    """What the next process does first: send the spool."""
    subprocess.run(
        [sys.executable, "-m", "otel_bucket", "spool", "flush"],
        capture_output=True,
        timeout=300,
        check=True,
        env={
            **os.environ,
            "BUCKET_SPOOL_DIR": spool,
            "BUCKET_ENDPOINT": endpoint,
            "BUCKET_TRACKING_KEY": "bench",
        },
    )


def main() -> int:
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    print(f"{CALLS:,} @feature calls in a tight loop, then a normal exit (no flush)")
    seqs: Counter[int] = Counter()

    def on_call(call: Call) -> None:
        if call.method == "event" and call.accepted:
            seqs[int(call.body["attributes"]["seq"])] += 1

    spool = tempfile.mkdtemp(prefix="otel-bucket-exit-")
    with DevServer(port=0, db_path=":memory:", on_call=on_call) as server:
        seconds, _ = run_child(server.url, spool)
        at_exit = len(seqs)
        flush(server.url, spool)
    twice = sum(n - 1 for n in seqs.values() if n > 1)
    print(
        f"  devserver:        {at_exit:>6,} of {CALLS:,} events arrived before the exit "
        f"(timeout={TIMEOUT:g}s), process took {seconds:.1f}s; the rest kept in the spool"
    )
    print(
        f"                    after `otel-bucket spool flush`: {len(seqs):,} of {CALLS:,} "
        f"arrived, {twice} twice"
    )
    ok = len(seqs) == CALLS and twice == 0 and seconds < TIMEOUT + 10
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        seconds, stderr = run_child(f"http://127.0.0.1:{silent.getsockname()[1]}", spool)
    print(f"  silent endpoint:  process took {seconds:.1f}s with timeout={TIMEOUT:g}s")
    print(f"                    stderr: {stderr.splitlines()[-1] if stderr else '(nothing)'}")
    ok = ok and seconds < TIMEOUT + 10
    with socket.socket() as refused:
        refused.bind(("127.0.0.1", 0))
        port = refused.getsockname()[1]
    seconds, stderr = run_child(f"http://127.0.0.1:{port}", spool)
    print(f"  refused endpoint: process took {seconds:.1f}s with timeout={TIMEOUT:g}s")
    print(f"                    stderr: {stderr.splitlines()[-1] if stderr else '(nothing)'}")
    ok = ok and seconds < TIMEOUT + 10
    shutil.rmtree(spool, ignore_errors=True)
    print(
        "targets met (every event once, at exit or from the spool; exit within timeout + a few"
        f" seconds): {'yes' if ok else 'no'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
