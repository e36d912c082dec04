"""Durable acceptance: what the bridge reads of the exporter to decide between accepting a request
into memory, accepting it with the spool as overflow, and refusing it (503)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_bucket import BucketSpanExporter
from tests._bridge import CLIENTS, PROTO, bridge_process, node_clients, stats
from tests._capture import CaptureServer, Reply
from tests._running import Running, child_env, free_port, python
from tests._spans import make_spans

KEY = "durable-test-key"


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_memory_pending_counts_the_backlog_but_not_the_spool(tmp_path: Path) -> None:
    """Calls kept for a retry are in memory; once spooled (at shutdown) they no longer are."""
    exporter = BucketSpanExporter(KEY, endpoint=dead_endpoint(), timeout=1, spool_dir=tmp_path)
    users = [{"enduser.id": f"u{i}", "bucket.event": "E"} for i in range(5)]
    exporter.export(make_spans(*users))
    assert exporter.memory_pending == 10  # 5 users and 5 events, waiting for a retry
    exporter.shutdown()
    assert exporter.stats.spooled == 10
    assert exporter.memory_pending == 0


def test_spool_has_room_until_its_files_reach_the_limit(tmp_path: Path) -> None:
    """No file yet: room. Files as large as spool_max_mb: no room."""
    exporter = BucketSpanExporter(
        KEY, endpoint=dead_endpoint(), timeout=1, spool_dir=tmp_path, spool_max_mb=0.05
    )
    assert exporter.spool_has_room()
    attributes = {f"bucket.attributes.a{i}": "x" * 40 for i in range(10)}
    for batch in range(3):
        events = [
            {"enduser.id": f"u{batch}-{i}", "bucket.event": "E", **attributes} for i in range(50)
        ]
        exporter.defer(make_spans(*events))
    exporter.shutdown()  # 300 calls of about 600 bytes go to a spool of 51 KiB
    assert exporter.stats.spooled == 300
    assert not exporter.spool_has_room()


def test_no_spool_no_room(tmp_path: Path) -> None:
    """With the spool off, or a spool that could not be created, there is no room."""
    off = BucketSpanExporter(KEY, endpoint=dead_endpoint(), spool_dir=False)
    assert not off.spool_has_room()
    off.shutdown()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    broken = BucketSpanExporter(KEY, endpoint=dead_endpoint(), timeout=1, spool_dir=blocked)
    assert broken.spool_has_room()  # nothing tried yet
    broken.export(make_spans({"enduser.id": "u"}))
    broken.shutdown()  # the spool cannot create its file: it turns itself off
    assert broken.stats.spooled == 0
    assert not broken.spool_has_room()


# -- a real bridge process whose Bucket is down, and real OTLP clients with default settings ------

FULL = 9_000  # calls in memory at which a bridge without spool room refuses (90 % of 10,000)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    return node_clients()


def until(
    condition: Callable[[], bool], timeout: float, what: str, why: Callable[[], object] = str
) -> None:
    """Poll a real condition of another process, with a bounded deadline; ``why()`` says more
    when it is not met."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} {why()}")
        time.sleep(0.1)


def differences(expected: Counter[str], server: CaptureServer) -> str:
    got = delivered(server)
    missing, extra = expected - got, got - expected
    return f"missing {sorted(missing)[:10]} ({sum(missing.values())}), extra {sorted(extra)[:10]}"


def fill(url: str, start: int, requests_: int, per_request: int = 400) -> list[str]:
    """POST event spans of 1,100 users (8,800 spans make 9,900 calls: a user call for each user
    and an event for each span); return the names of the events in requests answered 200 (the
    others got 503). The user calls go first when Bucket is back, so memory drains fast."""
    accepted = []
    for first in range(start, start + requests_ * per_request, per_request):
        numbers = range(first, first + per_request)
        spans = make_spans(
            *[{"enduser.id": f"u{i % 1100}", "bucket.event": f"fill {i}"} for i in numbers]
        )
        body = encode_spans(spans).SerializeToString()
        answer = requests.post(f"{url}/v1/traces", data=body, headers=PROTO, timeout=30)
        assert answer.status_code in (200, 503), answer.status_code
        if answer.status_code == 200:
            accepted += [f"fill {i}" for i in numbers]
    return accepted


@contextlib.contextmanager
def clients_sending(url: str, node_modules: Path, count: int) -> Iterator[None]:
    """The Python and the Node burst services, each sending ``count`` events while the block
    runs; at its end both must have flushed and exited 0."""
    node = shutil.which("node")
    assert node is not None
    clients = [
        Running(python(str(CLIENTS / "burst.py"), url, "py", str(count))),
        Running(
            [node, str(CLIENTS / "burst.js"), url, "node", str(count)],
            env=child_env(NODE_PATH=str(node_modules)),
        ),
    ]
    try:
        yield
        for client in clients:
            assert client.wait(40) == 0, client.lines
    finally:
        for client in clients:
            client.kill()


def delivered(server: CaptureServer) -> Counter[str]:
    return Counter(call["event"] for call in server.calls("event"))


def delivered_once(server: CaptureServer, url: str, expected: Counter[str], timeout: float) -> None:
    until(
        lambda: delivered(server) == expected,
        timeout,
        "every accepted event delivered once",
        lambda: (differences(expected, server), stats(url)),
    )


def down(path: str, body: bytes) -> Reply:
    return Reply(status=503)


CLIENT_EVENTS = Counter({f"{who} event {i}": 1 for who in ("py", "node") for i in range(50)})


@pytest.mark.slow
def test_default_clients_survive_a_full_bridge_until_bucket_is_back(
    server: CaptureServer, node_modules: Path
) -> None:
    """Without a spool, a bridge whose memory is full refuses with 503 and a Retry-After the
    Python and Node exporters' default 10 s export can wait out: when Bucket comes back, every
    event of both arrives, once."""
    server.route(down)
    with bridge_process(BUCKET_ENDPOINT=server.url) as (_, url):
        accepted = fill(url, 0, 24)  # 10,700 calls
        until(lambda: requests.get(f"{url}/health", timeout=5).status_code == 503, 30, "full")
        with clients_sending(url, node_modules, 50):
            until(lambda: stats(url)["refused"].get("503", 0) >= 1, 30, "a client refused")
            assert requests.get(f"{url}/health", timeout=5).headers["Retry-After"] == "2"
            server.route(None)  # Bucket is back
        delivered_once(server, url, CLIENT_EVENTS + Counter(accepted), 60)


@pytest.mark.slow
def test_a_full_memory_spills_to_the_spool_until_it_is_full_too(
    server: CaptureServer, node_modules: Path, tmp_path: Path
) -> None:
    """With a spool, a bridge whose memory is full still answers 200 (clients with default
    settings included) and spills the oldest calls to disk; only once the spool is full too
    does it answer 503. When Bucket comes back, every event answered 200 arrives, once."""
    server.route(down)
    spool = {"BUCKET_SPOOL_DIR": str(tmp_path), "BUCKET_SPOOL_MAX_MB": "0.25"}
    with bridge_process(BUCKET_ENDPOINT=server.url, **spool) as (_, url):
        accepted = fill(url, 0, 24)  # 10,700 calls: more than memory holds
        until(lambda: stats(url)["exporter"]["pending"] >= FULL, 30, "memory full")
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        with clients_sending(url, node_modules, 50):
            pass
        assert stats(url)["refused"] == {}
        assert stats(url)["exporter"]["spooled"] > 0
        # More, in small requests, until the spool is full too.
        for start in range(9600, 40_000, 100):
            accepted += fill(url, start, 1, per_request=100)
            if requests.get(f"{url}/health", timeout=5).status_code == 503:
                break
        refusal = requests.get(f"{url}/health", timeout=5)
        assert refusal.status_code == 503
        assert "no spool with room" in refusal.json()["reason"]
        server.route(None)  # Bucket is back
        delivered_once(server, url, CLIENT_EVENTS + Counter(accepted), 90)
        assert stats(url)["exporter"]["undelivered"] == 0
