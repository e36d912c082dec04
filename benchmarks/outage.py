"""Outage: what an idle process costs while its endpoint is down, beside one whose endpoint is up.

Run: ``python benchmarks/outage.py`` (about a minute). Each row is a child process that runs
``install()`` with the spool on, makes 20 feature calls (or none, with 5 calls waiting in its
spool from an earlier process), then does nothing: its CPU time is read from the child itself
over ``--seconds`` of idleness, after a 2 s settling time. Endpoints:

- up: the local devserver (the baseline);
- refused: a port nobody listens on;
- silent: a port that accepts connections and never answers (``timeout=1``);
- 503: a server answering 503 to every call;
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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from otel_bucket.devserver import DevServer
from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool
from otel_bucket.spool._spool_paths import spool_path

KEY = "bench-outage"
TARGET_MS = 5.0

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@contextmanager
def unavailable() -> Iterator[str]:
    """A server answering 503 to every call."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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
    with DevServer(port=0, db_path=":memory:", on_call=lambda call: None) as server:
        rows.append(("up (devserver)", *measure(server.url, 20, args.seconds, 0)))
    refused = f"http://127.0.0.1:{free_port()}"
    rows.append(("refused", *measure(refused, 20, args.seconds, 0)))
    with silent() as url:
        rows.append(("silent (timeout=1)", *measure(url, 20, args.seconds, 0)))
    with unavailable() as url:
        rows.append(("503 to every call", *measure(url, 20, args.seconds, 0)))
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
