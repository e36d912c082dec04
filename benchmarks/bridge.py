"""Spans through ``otel-bucket bridge`` versus the in-process exporter, side by side.

Run: ``python benchmarks/bridge.py`` (about 40 s; Linux, for the bridge process's CPU time).

The same 10,240 spans (each an event with a user and a company: 64 users in 64 companies) go
to Bucket two ways, against one loopback "Bucket" that answers every call at once:

(a) in-process: ``BucketSpanExporter.export`` in batches of 512, as the batch processor does;
(b) through the bridge: an ``otel-bucket bridge`` process (the real command) receives the same
    spans as 20 OTLP/HTTP requests of 512 spans, encoded by the SDK's own OTLP encoder and
    gzip-compressed, as a Collector sends them (the bodies are encoded before timing starts).

Reported for each: spans/s from the first span handed over to the last call answered, and CPU
time per span of the process doing the work (the exporter's process for (a), the bridge process
for (b), read from /proc), with the ratio (b)/(a). Both use the default settings (8 calls in
flight, deduplication on), so each run makes the same 10,368 calls. Then the same again with
``offline`` on (map and deduplicate, send nothing), which isolates what receiving costs: OTLP
decoding, the bridge's queue and its HTTP handling, against mapping alone. Rounds alternate;
the best of each is kept, as timeit does. The "Bucket" server runs in its own process.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests
from delivery import LoopbackServer  # this folder is first on sys.path
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_bucket import BucketSpanExporter

KEY = "benchmark-key"
SPANS = 10_240
BATCH = 512
USERS = 64
ROUNDS = 3
TICK = os.sysconf("SC_CLK_TCK")


def _calls(url: str) -> int:
    return sum(requests.get(url + "/counts", timeout=10).json().values())


def make_spans(round_: int) -> list[ReadableSpan]:
    """Event spans; users differ per round so that no round's calls are deduplicated away."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("benchmark")
    for index in range(SPANS):
        user = f"r{round_}-u{index % USERS}"
        attributes = {
            "enduser.id": user,
            "bucket.company.id": f"c-{user}",
            "bucket.event": "Exported report",
            "bucket.attributes.format": "csv",
            "bucket.attributes.rows": index,
        }
        tracer.start_span("export", attributes=attributes).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


def batches(spans: Sequence[ReadableSpan]) -> list[Sequence[ReadableSpan]]:
    return [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]


def in_process(spans: Sequence[ReadableSpan], url: str, offline: bool) -> tuple[float, float]:
    """(seconds, CPU seconds of this process) to export ``spans`` with the exporter."""
    exporter = BucketSpanExporter(KEY, endpoint=url, offline=offline)
    before = _calls(url) - (SPANS + 2 * USERS if offline else 0)
    cpu, start = time.process_time(), time.perf_counter()
    for batch in batches(spans):
        exporter.export(batch)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    exporter.shutdown()
    assert _calls(url) - before == SPANS + 2 * USERS, "not every call arrived"
    return elapsed, used


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _done(bridge: str, url: str, before: int, offline: bool) -> bool:
    if offline:
        stats = requests.get(f"{bridge}/stats", timeout=10).json()
        return int(stats["worker"]["exported_spans"]) >= SPANS
    return _calls(url) - before >= SPANS + 2 * USERS


def start_bridge(url: str, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    """An ``otel-bucket bridge`` process sending to ``url`` (spool off), and its base URL."""
    variables = {**os.environ, "BUCKET_ENDPOINT": url, "BUCKET_TRACKING_KEY": KEY, **env}
    variables.update(NO_PROXY="127.0.0.1", no_proxy="127.0.0.1", PYTHONUNBUFFERED="1")
    variables.setdefault("BUCKET_SPOOL_DIR", "off")
    command = [sys.executable, "-m", "otel_bucket", "bridge", "--port", "0", *args]
    proc = subprocess.Popen(command, env=variables, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    match = re.search(r"listening on (\S+)/v1/traces", proc.stdout.readline())
    assert match, "the bridge did not start"
    return proc, match.group(1)


def through_bridge(spans: Sequence[ReadableSpan], url: str, offline: bool) -> tuple[float, float]:
    """(seconds, CPU seconds of the bridge process) for ``spans`` sent over OTLP/HTTP."""
    bodies = [gzip.compress(encode_spans(batch).SerializeToString()) for batch in batches(spans)]
    proc, bridge = start_bridge(url, BUCKET_OFFLINE="true" if offline else "false")
    try:
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
        before = _calls(url)
        with requests.Session() as session:
            cpu, start = cpu_of(proc.pid), time.perf_counter()
            for body in bodies:
                answer = session.post(f"{bridge}/v1/traces", data=body, headers=headers)
                assert answer.status_code == 200, answer.status_code
            while not _done(bridge, url, before, offline):
                time.sleep(0.005)  # a benchmark may poll; the bridge's CPU is read after
            elapsed, used = time.perf_counter() - start, cpu_of(proc.pid) - cpu
    finally:
        proc.terminate()
        proc.wait(60)
    return elapsed, used


def compare(url: str, offline: bool) -> None:
    best_a = best_b = (float("inf"), float("inf"))
    for round_ in range(ROUNDS):
        spans = make_spans(round_)
        a = in_process(spans, url, offline)
        spans = make_spans(round_ + ROUNDS)
        b = through_bridge(spans, url, offline)
        best_a, best_b = min(best_a, a), min(best_b, b)
        print(
            f"  round {round_ + 1}: in-process {SPANS / a[0]:,.0f} spans/s, "
            f"bridge {SPANS / b[0]:,.0f} spans/s"
        )
    rate_a, rate_b = SPANS / best_a[0], SPANS / best_b[0]
    cpu_a, cpu_b = best_a[1] / SPANS * 1e6, best_b[1] / SPANS * 1e6
    print(f"  in-process exporter: {rate_a:,.0f} spans/s, {cpu_a:.0f} µs CPU per span")
    print(f"  bridge (OTLP/HTTP):  {rate_b:,.0f} spans/s, {cpu_b:.0f} µs CPU per span")
    print(
        f"  bridge/in-process: throughput {rate_b / rate_a:.2f}x, "
        f"CPU per span {cpu_b / cpu_a:.2f}x (+{cpu_b - cpu_a:.0f} µs)"
    )


def main() -> None:
    server = LoopbackServer(0.0)  # delivery.py's: a ThreadingHTTPServer in its own process
    url = server.url
    print(
        f"{os.cpu_count()} CPUs; {SPANS} event spans, {USERS} users and companies, batches of "
        f"{BATCH}; {SPANS + 2 * USERS} calls per run"
    )
    print("delivering to a loopback Bucket:")
    compare(url, offline=False)
    print("offline (mapping and deduplication only, nothing sent):")
    compare(url, offline=True)
    server.close()


if __name__ == "__main__":
    main()
