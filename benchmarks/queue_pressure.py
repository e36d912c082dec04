"""Queue pressure: are analytics crowded out of a small queue by a service's other spans?

(Named ``queue_pressure.py``, not ``queue.py``: a script's folder comes first on ``sys.path``, so
``queue.py`` would shadow the standard library's ``queue`` module that urllib3 imports.)

Run: ``python benchmarks/queue_pressure.py`` (a few seconds). A burst of 20,000 spans in a
tight loop, one in 100 a ``@feature`` call (200 events), through a queue of 128 spans, exported
to the local devserver: the SDK's ``BatchSpanProcessor`` (which queues every sampled span) against
``BucketSpanProcessor`` (which queues only Bucket-relevant spans). Target: 0 events dropped by
``BucketSpanProcessor``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_bucket import BucketSpanExporter, BucketSpanProcessor, feature, identify
from otel_bucket.devserver import DevServer

SPANS = 20_000
EVERY = 100  # one feature call in EVERY spans
QUEUE = 128
BATCH = 64


def run(name: str, make: Callable[[BucketSpanExporter], SpanProcessor]) -> tuple[int, float]:
    """Events the devserver received after the burst, and the burst's duration."""
    with DevServer(port=0, db_path=":memory:", on_call=lambda call: None) as server:
        exporter = BucketSpanExporter("bench", endpoint=server.url, dedupe_window=0)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(make(exporter))
        tracer = provider.get_tracer("service")

        @feature("Export", tracer_provider=provider)
        def export_report() -> None:
            pass

        started = time.perf_counter()
        with identify("u1", "c1"):
            for i in range(SPANS):
                if i % EVERY == 0:
                    export_report()
                else:
                    tracer.start_span("db.query", attributes={"db.system": "sqlite"}).end()
        burst = time.perf_counter() - started
        provider.force_flush()
        provider.shutdown()
        received = server.snapshot().counts.get("event", 0)
    print(f"  {name:<28} {received:>5} of {SPANS // EVERY} events received, burst {burst:.2f}s")
    return received, burst


def main() -> int:
    logging.disable(logging.WARNING)  # "queue full" warnings are the point here
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    print(f"{SPANS:,} spans, 1 feature call in {EVERY}, queue {QUEUE}, batch {BATCH}")
    sdk, _ = run(
        "SDK BatchSpanProcessor",
        lambda e: BatchSpanProcessor(e, max_queue_size=QUEUE, max_export_batch_size=BATCH),
    )
    ours, _ = run(
        "BucketSpanProcessor",
        lambda e: BucketSpanProcessor(e, max_queue_size=QUEUE, max_export_batch_size=BATCH),
    )
    expected = SPANS // EVERY
    print(f"events dropped: SDK {expected - sdk}, BucketSpanProcessor {expected - ours} (target 0)")
    return 0 if ours == expected else 1


if __name__ == "__main__":
    sys.exit(main())
