"""What otel-bucket's own metrics and a ``before_send`` hook cost, side by side in one run.

Run: ``python benchmarks/metrics.py`` (about 30 s). Two measurements, each variant interleaved
with the others round after round, medians printed with their ratios:

1. The hot path: a ``@feature`` call in a tight loop with ``install()`` on its own provider,
   its exporter reporting to no ``MeterProvider`` (the API's no-op) or to an SDK one with an
   in-memory reader. Nothing is recorded in ``on_end``, so the target is 1.0x.
2. The exporter's thread: ``export()`` of 512 feature spans (512 user calls, 512 events) in
   offline mode (mapping, ``before_send``, dedupe, counting; no HTTP), per span: no provider,
   an SDK provider, and an SDK provider plus a hook that returns each call unchanged, or
   rewrites each (``call.replace``). Target: metrics within a few percent of none.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_bucket import (
    BUCKET_EVENT,
    ENDUSER_ID,
    BucketCall,
    BucketSpanExporter,
    feature,
    identify,
    install,
)

ROUNDS = 15
CALLS = 5_000
SPANS = 512


def sdk_meter_provider() -> MeterProvider:
    return MeterProvider(metric_readers=[InMemoryMetricReader()])


def hot_variant(meter_provider: MeterProvider | None) -> Callable[[], None]:
    provider = TracerProvider()
    options = {"meter_provider": meter_provider} if meter_provider else {}
    install(provider, tracking_key="bench", offline=True, handle_signals=False, **options)

    @feature("Export CSV", tracer_provider=provider)
    def export_csv() -> None:
        pass

    def run() -> None:
        with identify(user_id="u-42", company_id="c-7"):
            for _ in range(CALLS):
                export_csv()

    return run


def spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(SPANS):
        attributes = {ENDUSER_ID: f"u{i}", BUCKET_EVENT: "Export CSV", "bucket.user.plan": "pro"}
        tracer.start_span("Export CSV", attributes=attributes).end()
    return list(memory.get_finished_spans())


def same(call: BucketCall) -> BucketCall:
    return call


def rewrite(call: BucketCall) -> BucketCall:
    return call.replace(attributes={**call.attributes, "source": "benchmark"})


def export_variant(**options: object) -> Callable[[], None]:
    batch = spans()
    exporter = BucketSpanExporter(
        "bench",
        offline=True,
        dedupe_window=0,
        spool_dir=False,
        **options,  # type: ignore[arg-type]
    )

    def run() -> None:
        exporter.export(batch)

    return run


def measure(variants: dict[str, Callable[[], None]], per: int) -> dict[str, list[float]]:
    """Seconds per unit (``per`` units a run) of each variant, one sample per round."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for run in variants.values():
        run()  # warm up
    gc.disable()
    try:
        for round_ in range(ROUNDS):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                start = time.perf_counter()
                variants[name]()
                samples[name].append((time.perf_counter() - start) / per)
    finally:
        gc.enable()
    return samples


def report(title: str, samples: dict[str, list[float]]) -> None:
    base_name = next(iter(samples))
    print(title)
    for name, values in samples.items():
        ratios = [v / b for v, b in zip(values, samples[base_name], strict=True)]
        print(
            f"  {name:<42} {statistics.median(values) * 1e6:8.2f} us"
            f"   {statistics.median(ratios):5.2f}x"
        )


def main() -> None:
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    print(f"median of {ROUNDS} rounds, variants interleaved; ratios against the first line")
    hot = measure(
        {
            "no MeterProvider": hot_variant(None),
            "SDK MeterProvider": hot_variant(sdk_meter_provider()),
        },
        CALLS,
    )
    report(f"1. @feature call with install(), {CALLS:,} calls a round (per call)", hot)
    exporting = measure(
        {
            "no MeterProvider": export_variant(),
            "SDK MeterProvider": export_variant(meter_provider=sdk_meter_provider()),
            "SDK MeterProvider + before_send (same)": export_variant(
                meter_provider=sdk_meter_provider(), before_send=same
            ),
            "SDK MeterProvider + before_send (replace)": export_variant(
                meter_provider=sdk_meter_provider(), before_send=rewrite
            ),
        },
        SPANS,
    )
    report(f"2. export() of {SPANS} spans, offline (per span)", exporting)


if __name__ == "__main__":
    main()
