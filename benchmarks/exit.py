"""Exit: how long a process takes to exit after a burst of feature calls, with no explicit flush.

Run: ``python benchmarks/exit.py`` (under a minute). A child process runs ``install()``, makes
10,000 ``@feature`` calls in a tight loop and returns. Measured from the parent:

- against the local devserver: the events that arrived and the time the exit took;
- against a silent endpoint (a port that accepts connections and never answers) and a refused
  one, with ``timeout=2``: the exit time, which must stay near ``timeout`` plus a few seconds
  however many batches are queued.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from otel_bucket.devserver import DevServer

CALLS = 10_000
TIMEOUT = 2.0

CHILD = """
import sys
from otel_bucket import feature, identify, install

install(tracking_key="bench", endpoint=sys.argv[1], timeout=float(sys.argv[2]))

@feature("Burst")
def burst():
    pass

with identify("u1", "c1"):
    for _ in range(int(sys.argv[3])):
        burst()
"""


def run_child(endpoint: str) -> tuple[float, str]:
    """Seconds from start to exit of the burst process, and its stderr."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, endpoint, str(TIMEOUT), str(CALLS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return time.perf_counter() - started, proc.stderr.strip()


def main() -> int:
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    print(f"{CALLS:,} @feature calls in a tight loop, then a normal exit (no flush)")
    with DevServer(port=0, db_path=":memory:", on_call=lambda call: None) as server:
        seconds, _ = run_child(server.url)
        events = server.snapshot().counts.get("event", 0)
    print(
        f"  devserver:        {events:>6,} of {CALLS:,} events arrived, process took {seconds:.1f}s"
    )
    ok = events == CALLS
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        seconds, stderr = run_child(f"http://127.0.0.1:{silent.getsockname()[1]}")
    print(f"  silent endpoint:  process took {seconds:.1f}s with timeout={TIMEOUT:g}s")
    print(f"                    stderr: {stderr.splitlines()[-1] if stderr else '(nothing)'}")
    ok = ok and seconds < TIMEOUT + 10
    with socket.socket() as refused:
        refused.bind(("127.0.0.1", 0))
        port = refused.getsockname()[1]
    seconds, stderr = run_child(f"http://127.0.0.1:{port}")
    print(f"  refused endpoint: process took {seconds:.1f}s with timeout={TIMEOUT:g}s")
    print(f"                    stderr: {stderr.splitlines()[-1] if stderr else '(nothing)'}")
    ok = ok and seconds < TIMEOUT + 10
    print(f"targets met (all events; exit within timeout + a few seconds): {'yes' if ok else 'no'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
