"""Process exit: a dead endpoint costs one timeout, and the loss is reported with its count."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._running import free_port

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import sys
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from otel_bucket import BucketSpanExporter

    exporter = BucketSpanExporter("k", endpoint=sys.argv[1], timeout=2)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=20_000))
    tracer = provider.get_tracer("app")
    for i in range(3_000):
        attributes = {"enduser.id": f"u{i % 40}", "bucket.event": "Export"}
        tracer.start_span("export", attributes=attributes).end()
    print("spans made", flush=True)
    """
)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback port that accepts connections (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def refused_endpoint() -> str:
    """A loopback port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("kind", ["silent_endpoint", "refused_endpoint"])
def test_exit_with_a_dead_endpoint_is_bounded_and_reports_the_loss(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Exiting with 3,000 queued events and a dead endpoint ends promptly and logs the count."""
    endpoint = request.getfixturevalue(kind)
    # Without fail-fast this would take one 2 s timeout per batch of 512 and then some;
    # the subprocess timeout is a hang guard, not a performance target.
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, endpoint],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "spans made" in proc.stdout
    lost = [line for line in proc.stderr.splitlines() if "lost" in line]
    assert len(lost) == 1, proc.stderr
    assert "lost 3040 call(s)" in lost[0]
