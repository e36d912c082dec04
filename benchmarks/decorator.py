"""Per-call cost of a ``feature`` function against the span a user would write by hand.

Run: ``python benchmarks/decorator.py``. Every variant starts one span with the same three
attributes (``bucket.event``, ``enduser.id``, ``bucket.company.id``) on the same provider, with
a processor that does nothing, so the numbers measure span bookkeeping, not export. Prints the
median per-call time over several interleaved rounds and the median of the per-round ratios;
the target is ``feature`` <= 1.0 times the hand-written ``start_as_current_span``.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from otel_bucket import BUCKET_COMPANY_ID, BUCKET_EVENT, ENDUSER_ID, feature, identify

ROUNDS = 21
CALLS = 10_000

provider = TracerProvider()
provider.add_span_processor(SpanProcessor())  # the no-op base: isolate the span's own cost
tracer = provider.get_tracer("benchmark")
ATTRIBUTES = {BUCKET_EVENT: "Export CSV", ENDUSER_ID: "u-42", BUCKET_COMPANY_ID: "c-7"}


def work(x: int) -> int:
    return x + 1


@feature("Export CSV", tracer_provider=provider)
def with_feature(x: int) -> int:
    return x + 1


def by_hand(x: int) -> int:
    with tracer.start_as_current_span("Export CSV", attributes=ATTRIBUTES):
        return x + 1


@tracer.start_as_current_span("Export CSV", attributes=ATTRIBUTES)
def bare_decorator(x: int) -> int:
    return x + 1


def timed(func: Callable[[int], int]) -> float:
    """Seconds per call over one run of ``CALLS`` calls."""
    start = time.perf_counter()
    for i in range(CALLS):
        func(i)
    return (time.perf_counter() - start) / CALLS


def main() -> None:
    variants = {
        "plain function (no span)": work,
        "@feature": with_feature,
        "hand-written start_as_current_span": by_hand,
        "@tracer.start_as_current_span": bare_decorator,
    }
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {"hand": [], "bare": []}
    gc.disable()  # as timeit does: collections would land on whichever variant runs then
    try:
        with identify(user_id="u-42", company_id="c-7"):  # @feature's span: the same 3 attributes
            for func in variants.values():
                timed(func)  # warm up: caches, the tracer lookup
            for round_ in range(ROUNDS):
                # Rotate the order each round, so drift in machine load hits every variant alike.
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                this_round = {name: timed(variants[name]) for name in order}
                for name, seconds in this_round.items():
                    samples[name].append(seconds)
                ours = this_round["@feature"]
                ratios["hand"].append(ours / this_round["hand-written start_as_current_span"])
                ratios["bare"].append(ours / this_round["@tracer.start_as_current_span"])
    finally:
        gc.enable()
    print(f"python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}")
    print(f"median of {ROUNDS} rounds x {CALLS:,} calls, variants interleaved in each round")
    for name in names:
        print(f"  {name:<38} {statistics.median(samples[name]) * 1e6:8.2f} us/call")
    hand, bare = statistics.median(ratios["hand"]), statistics.median(ratios["bare"])
    print(f"ratio @feature / hand-written start_as_current_span: {hand:.2f} (target <= 1.0)")
    print(f"ratio @feature / @tracer.start_as_current_span:      {bare:.2f}")


if __name__ == "__main__":
    main()
