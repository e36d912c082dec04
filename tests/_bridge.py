"""A real ``otel-bucket bridge`` process for end-to-end tests, and what tests send to it."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from tests._running import ROOT, Running, child_env, python
from tests._spans import make_spans

KEY = "bridge-process-key"
PROTO = {"Content-Type": "application/x-protobuf"}
CLIENTS = ROOT / "tests" / "clients"
NODE_CACHE = ROOT / ".cache" / "bridge-node"


@contextlib.contextmanager
def bridge_process(*args: str, **env: str) -> Iterator[tuple[Running, str]]:
    """``otel-bucket bridge --port 0 ARGS`` with ``env`` (a tracking key and the spool off unless
    given), and its base URL; stopped (SIGTERM, then killed) when the block ends."""
    variables = {"BUCKET_TRACKING_KEY": KEY, "BUCKET_SPOOL_DIR": "off", **env}
    proc = Running(
        python("-m", "otel_bucket", "bridge", "--port", "0", *args), env=child_env(**variables)
    )
    try:
        url = proc.expect(r"listening on (http://127\.0\.0\.1:\d+)/v1/traces").group(1)
        yield proc, url
        proc.terminate(30)
    finally:
        proc.kill()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux: VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) / 1024


def otlp_events(user: str, count: int, **extra: Any) -> bytes:
    """A protobuf request of ``count`` event spans of ``user`` (with ``extra`` attributes)."""
    spans = make_spans(
        *[{"enduser.id": user, "bucket.event": f"E{i}", **extra} for i in range(count)]
    )
    return encode_spans(spans).SerializeToString()


def stats(url: str) -> dict[str, Any]:
    answer = requests.get(f"{url}/stats", timeout=10)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


# -- real OTLP clients -----------------------------------------------------------------------------


def _node_version(node: str) -> tuple[int, ...]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    return tuple(int(part) for part in re.findall(r"\d+", out)[:2])


def node_clients() -> Path:
    """The pinned OpenTelemetry JS packages, installed once into .cache/bridge-node (the test
    is skipped without node and npm); for a session fixture."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed (.ci/run installs them with apt-get)")
    if _node_version(node) < (18, 19):
        pytest.skip(f"the pinned OpenTelemetry JS packages need Node 18.19+ ({node} is older)")
    wanted = (CLIENTS / "package.json").read_text()
    manifest = NODE_CACHE / "package.json"
    installed = NODE_CACHE / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-proto"
    if not (manifest.is_file() and manifest.read_text() == wanted and installed.is_dir()):
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        manifest.write_text(wanted)
        args = ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-package-lock"]
        cache = ["--cache", str(ROOT / ".cache" / "npm")]
        done = subprocess.run(
            [npm, *args, *cache], cwd=NODE_CACHE, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            manifest.unlink()
            pytest.fail(f"npm install failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return NODE_CACHE / "node_modules"
