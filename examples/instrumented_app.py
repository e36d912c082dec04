"""Zero-code setup: ``opentelemetry-instrument`` builds the provider and both exporters.

This file never calls ``install()``: the OpenTelemetry distro reads ``OTEL_*`` variables, and
``OTEL_TRACES_EXPORTER=otlp,bucket`` sends every span to your OTLP collector and the
Bucket-relevant ones to Bucket (otel-bucket registers the ``bucket`` exporter entry point).

    otel-bucket devserver                                    # in another terminal
    export BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev
    OTEL_TRACES_EXPORTER=console,bucket OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \\
        opentelemetry-instrument python examples/instrumented_app.py

(``OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none``: otherwise the distro also starts OTLP
metrics and logs exporters over gRPC, which are not installed, and its whole setup fails.)

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
