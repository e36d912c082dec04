"""Zero-code setup: ``opentelemetry-instrument`` builds the provider and both exporters.

This file never calls ``install()``: the OpenTelemetry distro reads ``OTEL_*`` variables, and
``OTEL_TRACES_EXPORTER=otlp,bucket`` sends every span to your OTLP collector and the
Bucket-relevant ones to Bucket (otel-bucket registers the ``bucket`` exporter entry point).

    otel-bucket devserver                                    # in another terminal
    OTEL_TRACES_EXPORTER=otlp,bucket OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \\
    OTEL_SERVICE_NAME=reports BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev \\
        opentelemetry-instrument python examples/instrumented_app.py

See examples/README.md for what this entry-point route does not give you (sampling, a queue
of its own) and how ``install()`` does.
"""

from __future__ import annotations

from opentelemetry import trace

from otel_bucket import feature, identify

tracer = trace.get_tracer(__name__)

ACCOUNTS = [("42", "acme"), ("7", "globex"), ("8", "globex")]


@feature("Generated report", attributes={"schedule": "nightly"})
def generate_report(user_id: str) -> str:
    return f"report for {user_id}"


def main() -> None:
    for user_id, company_id in ACCOUNTS:
        with (
            tracer.start_as_current_span("nightly report"),
            identify(user_id=user_id, company_id=company_id),
        ):
            print(generate_report(user_id))


if __name__ == "__main__":
    main()
    # At exit the distro's provider flushes both exporters: OTLP and Bucket.
