"""Real OTLP clients that no one here wrote, each in its own process, talking to the bridge.

- Python: the SDK's ``OTLPSpanExporter`` (opentelemetry-exporter-otlp-proto-http), HTTP/protobuf,
  plain and gzip. (That package has no JSON encoding; OTLP JSON comes from the Node client and
  from the spec-shaped requests of tests/test_bridge.py.)
- Node.js: ``@opentelemetry/sdk-trace-node`` with ``@opentelemetry/exporter-trace-otlp-http``
  (OTLP JSON) and ``@opentelemetry/exporter-trace-otlp-proto`` (protobuf), plain and gzip (which
  Node sends chunked). The npm packages (versions pinned in tests/clients/package.json) are
  installed into .cache/bridge-node on first use; without node and npm these tests are skipped.

Each emits spans with otel-bucket's attributes; the calls must arrive at the capture server
correct and complete.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_bucket import BucketSpanExporter
from otel_bucket.bridge import Bridge
from tests._bridge import CLIENTS, node_clients
from tests._capture import CaptureServer
from tests._running import child_env, python, run

pytestmark = pytest.mark.slow

KEY = "clients-test-key"
TOKEN = "client-token"


@pytest.fixture
def bridge(server: CaptureServer) -> Iterator[Bridge]:
    exporter = BucketSpanExporter(KEY, endpoint=server.url, timeout=5)
    with Bridge(exporter, port=0, listen_key=TOKEN) as running:
        yield running


_RANK = {"user": 0, "company": 1, "event": 2}


def in_order(calls: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Calls by method, then content: the order calls sent at once may arrive in."""
    return sorted(calls, key=lambda c: (_RANK[c[0]], json.dumps(c[1], sort_keys=True)))


def sent(server: CaptureServer) -> list[tuple[str, Any]]:
    return in_order([(r.api_method, r.json) for r in server.requests])


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_python_otlp_exporter(compression: str, bridge: Bridge, server: CaptureServer) -> None:
    """A Python service exporting only OTLP/HTTP gets the very calls otel-bucket's in-process
    mapping makes of the same spans; the event without a user is rejected."""
    result = run(
        python(str(CLIENTS / "python_service.py"), bridge.url, compression),
        env=child_env(BRIDGE_TOKEN=TOKEN),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["flushed"] is True
    assert bridge.flush(10)
    in_process = sorted(json.dumps(call, sort_keys=True) for call in report["calls"])
    over_otlp = sorted(json.dumps([m, p], sort_keys=True) for m, p in sent(server))
    assert over_otlp == in_process
    calls = {(m, p.get("userId"), p.get("event")): p for m, p in sent(server)}
    assert calls["user", "42", None]["attributes"] == {"name": "Ada", "roles": "admin,dev"}
    company = calls["company", "42", None]
    assert company["companyId"] == "acme"
    assert company["attributes"] == {"plan": "pro", "seats": 12}
    assert [m for m, p in sent(server)].count("event") == 3
    assert calls["event", "42", "Exported report"]["attributes"] == {
        "format": "csv",
        "rows": 1200,
        "ratio": 0.25,
        "beta": True,
    }
    assert calls["event", "u-7", "Checked out"]["attributes"] == {
        "items": "1,2,3",
        "total": 99.5,
        "big": 2**62,
    }
    assert ("user", "u-7", None) in calls
    stats = bridge.stats()
    assert (stats["received_spans"], stats["queued_spans"], stats["rejected_spans"]) == (6, 5, 1)
    assert stats["refused"] == {}


# -- Node.js -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_modules() -> Path:
    return node_clients()


# What the Node service's spans make (see tests/clients/node_service.js): the user call merges
# both of n-1's spans (the latest start time), the company call has the first span's.
NODE_CALLS = [
    (
        "user",
        {
            "userId": "n-1",
            "attributes": {"name": "Grace", "age": 36},
            "timestamp": "2026-11-27T14:03:05.133Z",
        },
    ),
    (
        "company",
        {
            "companyId": "globex",
            "userId": "n-1",
            "attributes": {"plan": "enterprise"},
            "timestamp": "2026-11-27T14:03:05.123Z",
        },
    ),
    (
        "event",
        {
            "event": "Added to cart",
            "userId": "n-1",
            "attributes": {
                "sku": "A-1",
                "quantity": 3,
                "price": 19.99,
                "gift": False,
                "tags": "red,xl",
                "big": 2**40,
            },
            "timestamp": "2026-11-27T14:03:05.133Z",
        },
    ),
]


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("protocol", ["json", "protobuf"])
def test_node_sdk(
    protocol: str, compression: str, node_modules: Path, bridge: Bridge, server: CaptureServer
) -> None:
    """A Node.js service's spans become the same calls a Python service's would; the JS
    exporter reads the bridge's partial-success answer in either encoding."""
    node = shutil.which("node")
    assert node is not None
    result = run(
        [node, str(CLIENTS / "node_service.js"), bridge.url, protocol, compression],
        env=child_env(NODE_PATH=str(node_modules), BRIDGE_TOKEN=TOKEN),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "node service flushed" in output
    partial = re.search(r"Partial Success.*", output)
    assert partial is not None, output
    assert re.search(r"rejectedSpans\W+1\b", partial.group(0)), partial.group(0)
    assert bridge.flush(10)
    assert sent(server) == in_order(NODE_CALLS)
    stats = bridge.stats()
    assert (stats["received_spans"], stats["queued_spans"], stats["rejected_spans"]) == (4, 3, 1)
