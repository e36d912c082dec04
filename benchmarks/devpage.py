"""Devserver pages: server time of every page with 100,000 stored calls, and what it costs.

Run: ``python benchmarks/devpage.py`` (about a minute). A devserver on a temporary SQLite file
holds the generated data set (``otel_bucket.devserver._dataset``: 100 companies, 2,300 users,
20 features with long and non-Latin names, 13 weeks: about 102,000 calls). Each page is
rendered 20 times after 2 warm-up renders, twice over:

- server time: the page's handler (``answer_get``) called in-process, no HTTP: what the
  100 ms target is about;
- over HTTP on loopback (keep-alive), as a browser would get it.

Nothing is cached between requests: each render reads the aggregate tables SQLite keeps as
calls arrive. Two side-by-side measurements justify keeping them:

- reading every feature's use per user from the aggregates, against grouping it from the
  calls table (the query every page ran before);
- the cost of storing one call with the aggregates' triggers, against without them.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

from otel_bucket.devserver import DevServer
from otel_bucket.devserver._dataset import MORE_FEATURES, fill
from otel_bucket.devserver._routes import answer_get
from otel_bucket.devserver._store import Store

TARGET_MS = 100.0
ROUNDS = 20
DATA = {"companies": 100, "users": 2300, "days": 91, "features": 20, "shared": 30}
LONG = quote(MORE_FEATURES[0][0])
PAGES = (
    ("overview", "/"),
    ("overview, 26 weeks", "/?weeks=26"),
    ("overview, sorted by a feature", f"/?sort=f:{LONG}&dir=desc"),
    ("overview, page 4 of companies", "/?page=4"),
    ("trends, 12 weeks", "/trends"),
    ("trends, 26 weeks", "/trends?weeks=26"),
    ("feature (1,900 users)", "/feature?name=Viewed%20dashboard"),
    ("feature, one company's users", "/feature?name=Viewed%20dashboard&company=c001"),
    ("feature, dropped, 30 days", "/feature?name=Sent%20message&stage=dropped&idle=30"),
    ("company (largest)", "/company?id=c001"),
    ("user", "/user?id=u00001"),
    ("calls, page 1", "/calls"),
    ("calls of a company", "/calls?company=c001"),
    ("/api/calls", "/api/calls"),
)


def median_ms(action: Callable[[], object]) -> tuple[float, float]:
    """Median and slowest of `ROUNDS` runs (after 2 warm-ups), in milliseconds."""
    for _ in range(2):
        action()
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def pages(server: DevServer) -> dict[str, float]:
    print(f"\n{'page':<34}{'server':>9}{'slowest':>9}{'HTTP':>9}{'size':>8}")
    results = {}
    with requests.Session() as session:
        session.trust_env = False  # loopback only
        for name, path in PAGES:
            parts = urlsplit(path)
            reply = answer_get(server.app, parts.path, parts.query, server.url)
            assert reply.status == 200, (path, reply.status)
            server_ms, slowest = median_ms(
                lambda parts=parts: answer_get(server.app, parts.path, parts.query, server.url)
            )
            http_ms, _ = median_ms(lambda path=path: session.get(server.url + path, timeout=30))
            results[name] = server_ms
            size = len(reply.body) / 1024
            print(f"{name:<34}{server_ms:>7.1f}ms{slowest:>7.1f}ms{http_ms:>7.1f}ms{size:>6.0f}KB")
    return results


def aggregates_against_calls(store: Store) -> None:
    """Every feature's use per user: read from the aggregates, or grouped from the calls (the
    query every page ran before the aggregates, before its pass in Python)."""
    from_uses = median_ms(
        lambda: store.query(
            "SELECT event, user_id, events, days, first_ts, last_ts, adopted_at FROM uses"
        )
    )[0]
    from_calls = median_ms(
        lambda: store.query(
            "SELECT event, user_id, substr(ts, 1, 10), COUNT(*), MIN(ts), MAX(ts) FROM calls"
            " WHERE status = 200 AND method = 'event' GROUP BY event, user_id, substr(ts, 1, 10)"
        )
    )[0]
    print(
        f"\nevery feature's use per user: {from_uses:.1f} ms from the aggregates, "
        f"{from_calls:.1f} ms grouped from the calls ({from_calls / from_uses:.0f}x)"
    )


def cost_of_storing(folder: Path) -> None:
    """Storing one call with the aggregates' triggers and without them."""
    body = {"event": "Sent message", "userId": "u00042"}
    costs = {}
    for name, drop in (("with the aggregates", False), ("without them", True)):
        store = Store(folder / f"cost-{drop}.sqlite3")
        if drop:
            for (trigger,) in store.query("SELECT name FROM sqlite_master WHERE type='trigger'"):
                store.query(f"DROP TRIGGER {trigger}")
        costs[name] = median_ms(
            lambda store=store: store.add(tracking_key="dev", method="event", status=200, body=body)
        )[0]
        store.close()
    with_, without = costs.values()
    print(
        f"storing one call: {with_:.3f} ms with the aggregates, {without:.3f} ms without "
        f"({with_ / without:.2f}x)"
    )


def main() -> int:
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="otel-bucket-devpage-") as folder:
        server = DevServer(port=0, db_path=Path(folder) / "dev.sqlite3", on_call=lambda c: None)
        with server:
            started = time.perf_counter()
            calls = fill(server.app.store, now, long_names=True, **DATA)
            took = time.perf_counter() - started
            print(f"stored {calls:,} generated calls in {took:.1f}s (triggers included)")
            results = pages(server)
            aggregates_against_calls(server.app.store)
        cost_of_storing(Path(folder))
    slowest = max(results, key=lambda name: results[name])
    worst = results[slowest]
    ok = worst < TARGET_MS
    print(
        f"slowest page ({slowest}): {worst:.1f} ms server time = {worst / TARGET_MS:.2f} x the "
        f"{TARGET_MS:.0f} ms target: {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
