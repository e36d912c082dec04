"""A Python service that sends event spans over OTLP/HTTP with the SDK's exporter, all defaults.

Run by tests/test_bridge_durable.py: ``python burst.py BASE_URL USER COUNT``. Only the endpoint is
set: timeout, retries and the batch processor are the SDK's defaults, as in a service nobody
tuned. It prints one line when the provider has flushed and shut down.
"""

from __future__ import annotations

import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main(base_url: str, user: str, count: int) -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{base_url}/v1/traces")))
    tracer = provider.get_tracer("python-burst")
    for index in range(count):
        attributes = {"enduser.id": user, "bucket.event": f"{user} event {index}"}
        tracer.start_span("event", attributes=attributes).end()
    provider.force_flush()
    provider.shutdown()
    print(f"python burst of {count} flushed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
