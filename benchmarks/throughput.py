"""Sustained events/s through ``install()`` against an endpoint 0, 20, 50 and 150 ms away.

Run: ``python benchmarks/throughput.py``: about 3 minutes per column when the exporter keeps
up; a row that falls behind adds its shutdown drain (up to the processor's 30 s), so the whole
run took 8 minutes on the pre-rewrite core, where both columns are 8 in flight. Options:
``--latencies 0,20,50,150`` (ms), ``--rates 500,1000,2000`` (events/s), ``--duration 5`` (s of
load per row), ``--configs default,fixed8``, ``--floor-seconds 2``.

Each row is one fresh load process: a real ``TracerProvider`` with ``install()`` (default
settings, the spool in a temporary directory), and one thread making feature events at the
offered rate on a monotonic schedule, each ``@feature`` call inside ``identify`` for one of 200
users in 40 companies (so user and company calls are mostly deduplicated), each event carrying a
unique ``seq`` attribute. After the load it waits 2 s, then shuts the provider down as an exit
would. The endpoint is ``tests/_remote.py``'s server in its own process, which records every call.

Columns, for the default settings and side by side for ``max_concurrency=8`` ("fixed 8"):

- ``≤2 s``: events delivered (answered 2xx) within 2 s of the load's end, of those made;
- ``exit``: events delivered once the load process has shut down, and duplicates (by ``seq``);
- ``in flight``: the most calls in flight at once, as the server saw them;
- ``µs/call``: the load process's CPU (``time.process_time``, all threads, from the first event
  to the end of shutdown) per delivered call (user + company + event), then otel-bucket's own
  share: the same minus a baseline run with the same load and ``offline=True`` (spans, identify
  and mapping, nothing sent);
- ``÷ floor``: that own share over the CPU per call of plain ``http.client`` persistent
  connections, N threads posting the same bodies in a loop at the same latency (N: the in-flight
  count the exporter reached in that row), the cheapest way Python sends these calls. With 0 ms
  the floor's threads post flat out, so there it is the cheapest cost per call there is; above
  0 ms N threads post about as fast as the exporter delivers (N / latency), as Little's law says.
  ``—``: fewer than 95 % of the events were delivered by exit, so most of the CPU went on calls
  kept in the spool or given up, and a cost per delivered call would mean nothing.

Before the table: the baselines (CPU per event of the application alone, and with otel-bucket
offline); after it, per row, the rate the load really reached, how long the shutdown took, the
exporter's own counters after shutdown (``pending``: calls neither settled nor kept) and the
spans still in the processor's queue (never exported), and the server's CPU (to show it was not
the bottleneck).

The machine's cores are shared with the server process (and, here, with other work): figures are
one run each, not a best of several.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests._remote; this folder is first on sys.path

from tests._remote import RemoteCall, RemoteServer, copies, max_in_flight  # noqa: E402
from tests._running import child_env  # noqa: E402

KEY = "benchmark-key"
USERS, COMPANIES = 200, 40
CONFIGS: dict[str, dict[str, Any]] = {"default": {}, "fixed8": {"max_concurrency": 8}}
GRACE = 2.0  # seconds after the load's end for the "≤2 s" column
MOSTLY = 0.95  # below this share of events delivered at exit, "own" CPU per call is not shown


# -- the load process -------------------------------------------------------------------------


def load(url: str, rate: float, duration: float, options: dict[str, Any]) -> dict[str, Any]:
    """Make ``rate`` feature events/s for ``duration`` s through ``install()``, then shut down."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from otel_bucket import feature, identify, install, set_event_attributes

    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    with tempfile.TemporaryDirectory() as spool:
        # "app": the same spans with no otel-bucket at all, for the application's own cost
        app_only = options.pop("app_only", False)
        processor = (
            None
            if app_only
            else install(provider, tracking_key=KEY, endpoint=url, spool_dir=spool, **options)
        )

        @feature("Load event", attributes={"source": "benchmark"})
        def use(seq: int) -> None:
            set_event_attributes({"seq": seq})

        people = [
            (
                f"user-{u}",
                f"company-{u % COMPANIES}",
                {"name": f"User {u}", "email": f"user{u}@example.com"},
                {"name": f"Company {u % COMPANIES}", "plan": "enterprise"},
            )
            for u in range(USERS)
        ]
        total = round(rate * duration)
        with identify("user-0", "company-0"):  # the first call's lazy imports: not the load's
            use(-1)
        cpu, start = time.process_time(), time.monotonic()
        for seq in range(total):
            due = start + seq / rate
            now = time.monotonic()
            if due > now:
                time.sleep(max(due - now, 0.001))
            user, company, user_attributes, company_attributes = people[seq % USERS]
            with identify(
                user,
                company,
                user_attributes=user_attributes,
                company_attributes=company_attributes,
            ):
                use(seq)
        load_end = time.monotonic()
        time.sleep(GRACE)
        provider.shutdown()
        ended = time.monotonic()
        stats = None if processor is None else processor.exporter.stats  # type: ignore[attr-defined]
    return {
        "made": total,
        "start": start,
        "load_end": load_end,
        "shutdown": ended - load_end - GRACE,
        "cpu": time.process_time() - cpu,
        "stats": {
            k: getattr(stats, k, 0)
            for k in ("calls", "delivered", "spooled", "undelivered", "pending")
        },
        "queued": 0 if processor is None else processor.queued,  # spans never exported
    }


def floor(url: str, threads: int, seconds: float, bodies: list[list[str]]) -> dict[str, Any]:
    """``threads`` threads posting ``bodies`` over ``http.client`` persistent connections."""
    import http.client

    host, port = url.removeprefix("http://").split(":")
    headers = {"Content-Type": "application/json"}
    counts = [0] * threads
    ready = threading.Barrier(threads + 1)
    stop = threading.Event()

    def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> None:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"the floor's server answered {response.status}")

    def run(index: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine = [(p, b.encode()) for p, b in bodies[index::threads] or bodies[:1]]
        post(conn, *mine[0])  # connect before the clock starts
        ready.wait()
        n = 0
        while not stop.is_set():
            post(conn, *mine[n % len(mine)])
            n += 1
        counts[index] = n

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    cpu, start = time.process_time(), time.monotonic()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return {
        "calls": sum(counts),
        "cpu": time.process_time() - cpu,
        "wall": time.monotonic() - start,
    }


def _child(*args: str, timeout: float, stdin: str = "") -> dict[str, Any]:
    env = {k: v for k, v in child_env().items() if not k.startswith(("BUCKET_", "OTEL_"))}
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["log"] = proc.stderr.strip().splitlines()[-1:]  # otel-bucket's last word at exit
    return result


# -- the driver -------------------------------------------------------------------------------


def run_row(remote: RemoteServer, rate: float, duration: float, config: str) -> dict[str, Any]:
    """One load process against ``remote``, and what the server saw of it."""
    remote.reset()
    server_cpu = remote.stats().cpu
    options = json.dumps(CONFIGS[config])
    out = _child("load", remote.url, str(rate), str(duration), options, timeout=duration + 120)
    calls = remote.calls()
    server_cpu = remote.stats().cpu - server_cpu
    seqs = {seq: n for seq, n in copies(calls, "seq").items() if seq >= 0}  # -1: the warm-up
    on_time = {
        c.json["attributes"]["seq"]
        for c in calls
        if c.method == "event" and c.ok and c.answered <= out["load_end"] + GRACE
    } - {-1}
    delivered = [c for c in calls if c.ok]
    return {
        **out,
        "calls": calls,
        "on_time": len(on_time) / out["made"],
        "after": len(seqs) / out["made"],
        "dups": sum(n - 1 for n in seqs.values()),
        "in_flight": max_in_flight(calls),
        "delivered_calls": len(delivered),
        "server_cpu": server_cpu,
    }


def bodies_of(calls: list[RemoteCall], limit: int = 3000) -> list[list[str]]:
    return [[c.path, c.body] for c in calls if c.ok][:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latencies", default="0,20,50,150", help="ms per request")
    parser.add_argument("--rates", default="500,1000,2000", help="offered events/s")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per row")
    parser.add_argument("--configs", default="default,fixed8", help="default and/or fixed8")
    parser.add_argument("--floor-seconds", type=float, default=2.0)
    args = parser.parse_args()
    latencies = [float(x) / 1000 for x in args.latencies.split(",")]
    rates = [float(x) for x in args.rates.split(",")]
    configs = args.configs.split(",")
    began = time.monotonic()
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}", flush=True)

    baseline: dict[float, float] = {}
    with RemoteServer() as remote:
        for rate in rates:
            cpu = {}
            for name in ("app_only", "offline"):
                options = json.dumps({name: True})
                timeout = args.duration + 120
                out = _child(
                    "load", remote.url, str(rate), str(args.duration), options, timeout=timeout
                )
                cpu[name] = out["cpu"] / out["made"] * 1e6
            baseline[rate] = cpu["offline"] * out["made"] / 1e6
            print(
                f"baseline at {rate:,.0f}/s, CPU per event: the app alone (identify, feature "
                f"spans, no otel-bucket) {cpu['app_only']:.0f} µs; with otel-bucket offline "
                f"(its processor and mapping, nothing sent) {cpu['offline']:.0f} µs",
                flush=True,
            )

    rows: list[tuple[float, float, dict[str, dict[str, Any]]]] = []
    floors: dict[tuple[float, int], float] = {}
    for latency in latencies:
        with RemoteServer(latency=latency) as remote:
            for rate in rates:
                results: dict[str, dict[str, Any]] = {}
                for config in configs:
                    row = run_row(remote, rate, args.duration, config)
                    n = max(row["in_flight"], 1)
                    if (latency, n) not in floors and row["delivered_calls"]:
                        remote.reset()
                        got = _child(
                            "floor",
                            remote.url,
                            str(n),
                            str(args.floor_seconds),
                            stdin=json.dumps(bodies_of(row["calls"])),
                            timeout=120,
                        )
                        floors[latency, n] = got["cpu"] / max(got["calls"], 1)
                    row["floor"] = floors.get((latency, n), float("nan"))
                    row["baseline"] = baseline[rate]
                    del row["calls"]
                    results[config] = row
                    print(
                        f"  {latency * 1000:g} ms, {rate:,.0f}/s, {config}: {_cells(row)} "
                        f"{row['log']}",
                        flush=True,
                    )
                rows.append((latency, rate, results))
    print()
    print(table(rows, configs))
    print()
    print(details(rows, configs))
    print(f"\nwhole run: {time.monotonic() - began:.0f} s")
    return 0


def _cells(row: dict[str, Any]) -> list[str]:
    n = max(row["delivered_calls"], 1)
    total = row["cpu"] / n * 1e6
    own = (row["cpu"] - row["baseline"]) / n * 1e6
    ratio = own / (row["floor"] * 1e6) if row["floor"] == row["floor"] else float("nan")
    floor = f"of {row['floor'] * 1e6:,.0f}"
    if row["after"] < MOSTLY:  # its CPU went on calls kept or lost, not on calls delivered
        own_cell, ratio_cell = "—", f"— {floor}"
    else:
        own_cell, ratio_cell = f"{own:,.0f}", f"{ratio:.1f}x {floor}"
    return [
        f"{row['on_time']:.1%}",
        f"{row['after']:.1%}, {row['dups']} dup",
        f"{row['in_flight']}",
        f"{total:,.0f} / {own_cell}",
        ratio_cell,
    ]


def table(rows: list[tuple[float, float, dict[str, dict[str, Any]]]], configs: list[str]) -> str:
    names = {"default": "default", "fixed8": "fixed 8"}
    head = ["latency", "offered"]
    for config in configs:
        name = names.get(config, config)
        head += [f"{name}: ≤2 s", "exit", "in flight", "µs/call all / own", "own ÷ floor (µs)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for latency, rate, results in rows:
        cells = [f"{latency * 1000:g} ms", f"{rate:,.0f}/s"]
        for config in configs:
            cells += _cells(results[config])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(rows: list[tuple[float, float, dict[str, dict[str, Any]]]], configs: list[str]) -> str:
    head = [
        "latency",
        "offered",
        "config",
        "made/s",
        "shutdown s",
        "delivered",
        "spooled",
        "undelivered",
        "pending",
        "spans left",
        "server CPU µs/call",
        "server CPU % core",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for latency, rate, results in rows:
        for config in configs:
            r = results[config]
            wall = r["load_end"] - r["start"] + GRACE + r["shutdown"]
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{latency * 1000:g} ms",
                        f"{rate:,.0f}/s",
                        config,
                        f"{r['made'] / (r['load_end'] - r['start']):,.0f}",
                        f"{r['shutdown']:.1f}",
                        f"{r['stats']['delivered']:,}",
                        f"{r['stats']['spooled']:,}",
                        f"{r['stats']['undelivered']:,}",
                        f"{r['stats']['pending']:,}",
                        f"{r['queued']:,}",
                        f"{r['server_cpu'] / max(r['delivered_calls'], 1) * 1e6:.0f}",
                        f"{r['server_cpu'] / wall:.0%}",
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        url, rate, duration, options = sys.argv[2:6]
        print(json.dumps(load(url, float(rate), float(duration), json.loads(options))))
    elif len(sys.argv) > 1 and sys.argv[1] == "floor":
        url, threads, seconds = sys.argv[2:5]  # the bodies come on stdin (too long for argv)
        print(json.dumps(floor(url, int(threads), float(seconds), json.load(sys.stdin))))
    else:
        sys.exit(main())
