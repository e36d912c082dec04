"""A Python service that exports its spans only over OTLP/HTTP, with the SDK's own exporter.

Run by tests/test_bridge_clients.py: ``python python_service.py BASE_URL COMPRESSION``. It uses
otel-bucket's ``identify`` and ``@feature`` for the attribute conventions but no otel-bucket
exporter: the spans reach Bucket only through the bridge. At the end it prints, as JSON, the calls
that otel-bucket's own mapping makes of the very same spans in-process, for the test to compare.
"""

from __future__ import annotations

import json
import os
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_bucket import feature, identify
from otel_bucket.export._mapping import plan_calls


def main(base_url: str, compression: str) -> None:
    token = os.environ.get("BRIDGE_TOKEN")
    otlp = OTLPSpanExporter(
        endpoint=f"{base_url}/v1/traces",
        compression=Compression(compression),
        headers={"Authorization": f"Bearer {token}"} if token else None,
        timeout=10,
    )
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # One batch for the whole run, so the bridge exports the spans together, as in-process.
    provider.add_span_processor(BatchSpanProcessor(otlp, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("python-shop")

    @feature(
        "Exported report",
        attributes={"format": "csv", "rows": 1200, "ratio": 0.25, "beta": True},
        tracer_provider=provider,
    )
    def export_report() -> None:
        pass

    with (
        tracer.start_as_current_span("GET /reports"),
        identify(
            user_id=42,
            company_id="acme",
            user_attributes={"name": "Ada", "roles": ["admin", "dev"]},
            company_attributes={"plan": "pro", "seats": 12},
        ),
    ):
        export_report()
        export_report()
    checkout = {
        "user.id": "u-7",
        "bucket.event": "Checked out",
        "bucket.attributes.items": [1, 2, 3],
        "bucket.attributes.total": 99.5,
        "bucket.attributes.big": 2**62,
    }
    with tracer.start_as_current_span("checkout", attributes=checkout):
        pass
    with tracer.start_as_current_span("click", attributes={"bucket.event": "Anonymous click"}):
        pass  # no user: the bridge rejects it (partial success)
    with tracer.start_as_current_span("GET /health"):
        pass  # nothing for Bucket
    flushed = provider.force_flush(20_000)
    provider.shutdown()
    plan = plan_calls(memory.get_finished_spans())
    calls = [[call.method, call.payload] for phase in plan.phases for call in phase]
    print(json.dumps({"flushed": flushed, "calls": calls}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
