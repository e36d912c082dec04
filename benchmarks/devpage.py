"""Devserver page: how long each page takes with 50 companies and 2,000 users over 30 days.

Run: ``python benchmarks/devpage.py`` (about half a minute). A devserver on a temporary SQLite
file holds the generated data set (``otel_bucket.devserver._dataset``: about 27,000 calls);
each page is fetched over HTTP on loopback (keep-alive) 20 times after 2 warm-up fetches, and
the median and the slowest are printed beside the 200 ms target for the overview page. Every
fetch renders from the database: nothing is cached between requests.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from otel_bucket.devserver import DevServer
from otel_bucket.devserver._dataset import fill

TARGET_MS = 200.0
ROUNDS = 20
PAGES = (
    ("overview", "/"),
    ("overview, sorted by a feature", "/?sort=f:Sent%20message&dir=asc"),
    ("overview, page 2", "/?page=2"),
    ("company (254 users)", "/company?id=c001"),
    ("user", "/user?id=u00001"),
    ("calls, page 1", "/calls"),
    ("calls filtered by company", "/calls?company=c001"),
    ("/api/calls", "/api/calls"),
)


def timed(session: requests.Session, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    reply = session.get(url, timeout=30)
    elapsed = (time.perf_counter() - started) * 1000
    reply.raise_for_status()
    return elapsed, len(reply.content)


def main() -> int:
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="otel-bucket-devpage-") as folder:
        server = DevServer(port=0, db_path=Path(folder) / "dev.sqlite3", on_call=lambda c: None)
        with server, requests.Session() as session:
            session.trust_env = False  # loopback only
            started = time.perf_counter()
            calls = fill(server.app.store, now)
            print(f"stored {calls:,} generated calls in {time.perf_counter() - started:.2f}s")
            print(f"{'page':<32}{'median':>10}{'slowest':>10}{'size':>10}")
            results = {}
            for name, path in PAGES:
                for _ in range(2):
                    timed(session, server.url + path)
                samples = [timed(session, server.url + path) for _ in range(ROUNDS)]
                times = [ms for ms, _ in samples]
                median = statistics.median(times)
                results[name] = median
                size = samples[-1][1] / 1024
                print(f"{name:<32}{median:>8.1f}ms{max(times):>8.1f}ms{size:>8.0f}KB")
    overview = results["overview"]
    ok = overview < TARGET_MS
    print(
        f"overview page median {overview:.1f} ms = {overview / TARGET_MS:.2f} x the "
        f"{TARGET_MS:.0f} ms target: {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
