"""examples/collector/: the Collector configuration and the deployment sketches parse and agree.

No Collector binary runs here (none is packaged for pip, npm or apt on this machine), so these
checks are structural: every component a pipeline names is defined, the Bucket pipeline filters
on the four attributes otel-bucket reads and exports to the bridges' Service, and the tracing
pipeline is left as it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from otel_bucket import BUCKET_COMPANY_ID, BUCKET_EVENT, ENDUSER_ID, USER_ID
from tests._running import ROOT

EXAMPLE = ROOT / "examples" / "collector"


def load(name: str) -> Any:
    return yaml.safe_load((EXAMPLE / name).read_text())


def load_all(name: str) -> list[Any]:
    return list(yaml.safe_load_all((EXAMPLE / name).read_text()))


def test_every_pipeline_component_is_defined() -> None:
    """Receivers, processors, exporters and extensions used by the service are all defined."""
    config = load("otelcol.yaml")
    service = config["service"]
    for extension in service["extensions"]:
        assert extension in config["extensions"]
    for name, pipeline in service["pipelines"].items():
        assert name.split("/")[0] == "traces"
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in config[kind], f"{name}: {component} is not defined"


def test_bucket_pipeline_keeps_only_bucket_spans() -> None:
    """The Bucket pipeline drops spans lacking all of otel-bucket's four attributes; the
    tracing pipeline has no filter."""
    config = load("otelcol.yaml")
    pipelines = config["service"]["pipelines"]
    bucket = pipelines["traces/bucket"]
    filters = [p for p in bucket["processors"] if p.split("/")[0] == "filter"]
    assert filters == ["filter/bucket"]
    (condition,) = config["processors"]["filter/bucket"]["traces"]["span"]
    clauses = [clause.strip() for clause in condition.split(" and ")]
    keys = [re.fullmatch(r'attributes\["([^"]+)"\] == nil', clause) for clause in clauses]
    assert all(keys), clauses
    assert sorted(m.group(1) for m in keys if m) == sorted(
        [BUCKET_EVENT, ENDUSER_ID, USER_ID, BUCKET_COMPANY_ID]
    )
    assert not [p for p in pipelines["traces"]["processors"] if p.startswith("filter")]
    assert pipelines["traces"]["receivers"] == bucket["receivers"]


def test_bucket_exporter_waits_out_outages() -> None:
    """otlp_http to the bridges' Service, gzip, bearer token, retries without a time limit
    and a persistent queue."""
    config = load("otelcol.yaml")
    (name,) = config["service"]["pipelines"]["traces/bucket"]["exporters"]
    assert name.split("/")[0] == "otlp_http"
    exporter = config["exporters"][name]
    assert exporter["endpoint"] == "http://otel-bucket-bridge:4318"
    assert exporter["compression"] == "gzip"
    assert exporter["headers"]["Authorization"] == "Bearer ${env:BUCKET_BRIDGE_TOKEN}"
    assert exporter["retry_on_failure"]["max_elapsed_time"] == 0
    assert exporter["sending_queue"]["storage"] in config["service"]["extensions"]


def test_kubernetes_sketch_matches_the_collector() -> None:
    """N bridge replicas behind a Service named as the Collector expects, the key from a
    Secret, readiness on /health, a grace period longer than the drain."""
    documents = {doc["kind"]: doc for doc in load_all("kubernetes.yaml")}
    deployment, service = documents["Deployment"], documents["Service"]
    assert service["metadata"]["name"] == "otel-bucket-bridge"
    assert service["spec"]["ports"][0]["port"] == 4318
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "bridge" and "0.0.0.0" in args
    drain = float(args[args.index("--drain-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain
    env = {item["name"]: item for item in container["env"]}
    for name in ("BUCKET_TRACKING_KEY", "BUCKET_BRIDGE_TOKEN"):
        assert "secretKeyRef" in env[name]["valueFrom"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_compose_sketch_matches_the_collector() -> None:
    """The compose sketch runs the Collector with this configuration and several bridges under
    the name the Collector exports to."""
    compose = load("compose.yaml")
    services = compose["services"]
    bridge = services["otel-bucket-bridge"]
    assert bridge["deploy"]["replicas"] >= 2
    assert bridge["command"][0] == "bridge"
    collector = services["otel-collector"]
    assert any(v.startswith("./otelcol.yaml:") for v in collector["volumes"])
    assert Path(EXAMPLE / "Dockerfile").read_text().count('"otel-bucket[bridge]"') == 1
