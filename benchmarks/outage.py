"""Outage: what an idle process costs while its endpoint is down, beside one whose endpoint is up.

Run: ``python benchmarks/outage.py`` (about a minute). Each row is a child process that runs
``install()`` with the spool on, makes 20 feature calls (or none, with 5 calls waiting in its
spool from an earlier process), then does nothing: its CPU time is read from the child itself
over ``--seconds`` of idleness, after a 2 s settling time. Endpoints:

- up: ``tests/_remote.py``'s remote-like server in its own process, answering after 50 ms (the
  baseline);
- refused: a port nobody listens on;
- silent: a port that accepts connections and never answers (``timeout=1``);
- 503: the remote-like server answering 503 to every call after 50 ms;
- refused, spool only: no call in memory, 5 in the spool (the process that starts during an
  outage after another one spooled its calls; its probes come from the spool).

Target: every row at most 5 ms of CPU per second idle (half a percent of a core). Before the
timekeeper took the spool's look only when it could be taken (CHANGELOG, Unreleased), the
refused, silent and spool-only rows spun at 270-320 ms per second once the look was due.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests._remote; this folder is first on sys.path

from otel_bucket.ground._call import Call  # noqa: E402
from otel_bucket.spool._spool import Spool  # noqa: E402
from otel_bucket.spool._spool_paths import spool_path  # noqa: E402
from tests._remote import RemoteServer, Rule  # noqa: E402
from tests._running import free_port  # noqa: E402

KEY = "bench-outage"
TARGET_MS = 5.0
LATENCY = 0.05  # seconds the remote-like server takes to answer

CHILD = """
import resource, sys, threading
from otel_bucket import feature, identify, install

install(tracking_key=sys.argv[1], endpoint=sys.argv[2], timeout=1)

@feature("Outage")
def work():
    pass

for user in range(int(sys.argv[3])):
    with identify(user_id=f"u{user}", company_id="acme"):
        work()
pause = threading.Event()
pause.wait(2.0)  # the first attempts, the endpoint found down
start = resource.getrusage(resource.RUSAGE_SELF)
pause.wait(float(sys.argv[4]))
end = resource.getrusage(resource.RUSAGE_SELF)
used = (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime)
print(f"{used * 1000 / float(sys.argv[4]):.2f} {threading.active_count()}", flush=True)
"""


def measure(endpoint: str, calls: int, seconds: float, spooled: int) -> tuple[float, int]:
    """The child's CPU per second idle (ms) and its thread count."""
    with tempfile.TemporaryDirectory() as folder:
        if spooled:
            spool = Spool(spool_path(Path(folder), endpoint, KEY), endpoint=endpoint)
            event = {"event": "Outage", "userId": "s"}
            spool.put([Call("event", {**event, "attributes": {"n": n}}) for n in range(spooled)])
            spool.close()
        env = {**os.environ, "BUCKET_SPOOL_DIR": folder, "NO_PROXY": "127.0.0.1"}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, KEY, endpoint, str(calls), str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    used, threads = done.stdout.split()
    return float(used), int(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="idle seconds measured")
    args = parser.parse_args()
    rows: list[tuple[str, float, int]] = []
    with RemoteServer(latency=LATENCY) as remote:
        rows.append(("up (50 ms away)", *measure(remote.url, 20, args.seconds, 0)))
    refused = f"http://127.0.0.1:{free_port()}"
    rows.append(("refused", *measure(refused, 20, args.seconds, 0)))
    with socket.socket() as silent:  # the kernel accepts connections; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(128)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        rows.append(("silent (timeout=1)", *measure(url, 20, args.seconds, 0)))
    with RemoteServer(latency=LATENCY, rules=[Rule(503)]) as remote:
        rows.append(("503 to every call", *measure(remote.url, 20, args.seconds, 0)))
    rows.append(("refused, spool only", *measure(refused, 0, args.seconds, 5)))
    base = max(rows[0][1], 0.01)
    print(f"Idle CPU over {args.seconds:g} s after 2 s (target <= {TARGET_MS:g} ms/s)\n")
    print("| endpoint | CPU ms/s idle | vs up | threads | target |")
    print("|---|---|---|---|---|")
    for name, used, threads in rows:
        verdict = "ok" if used <= TARGET_MS else "MISSED"
        print(f"| {name} | {used:.2f} | {used / base:.1f}x | {threads} | {verdict} |")


if __name__ == "__main__":
    main()
