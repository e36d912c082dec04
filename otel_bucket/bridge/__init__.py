"""``otel-bucket bridge``: an OTLP/HTTP traces receiver that feeds Bucket.

Any service that emits OTLP (any language, directly or through the OpenTelemetry Collector)
sends its spans to ``POST /v1/traces``; spans carrying otel-bucket's attribute conventions become
Bucket calls through ``BucketSpanExporter`` itself: the same mapping, merging, deduplication,
phases, retries and backlog as in a Python process.

```python
from otel_bucket.bridge import Bridge

with Bridge(port=0) as bridge:  # exporter from BUCKET_TRACKING_KEY / BUCKET_ENDPOINT
    endpoint = bridge.url       # point OTLP clients at it
```

Needs the ``bridge`` extra: ``pip install "otel-bucket[bridge]"``.

In the layers (ARCHITECTURE.md) the bridge sits on top, beside ``devserver``: it imports
``export`` (the exporter and the mapping), ``instrument`` (the relevance test) and ``ground``;
only ``cli`` (``otel-bucket bridge``) imports it. Inside, the server takes the bridge as an
interface (``_server.Fed``) and never imports it.
"""

from __future__ import annotations

try:
    import google.protobuf
    import google.rpc.status_pb2  # noqa: F401
    import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f'otel-bucket bridge needs the "bridge" extra: pip install "otel-bucket[bridge]" ({exc})'
    ) from exc

from otel_bucket.bridge._bridge import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_SPANS,
    DEFAULT_PORT,
    Bridge,
    BridgeError,
)

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_MAX_SPANS", "DEFAULT_PORT", "Bridge", "BridgeError"]
