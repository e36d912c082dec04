"""The bridge over real HTTP on 127.0.0.1: OTLP in, the exporter's calls out to a capture server."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_bucket import BucketSpanExporter
from otel_bucket.bridge import Bridge, BridgeError
from tests._capture import CaptureServer, Reply
from tests._running import free_port
from tests._spans import make_spans, payloads

KEY = "bridge-test-key"
PROTO = "application/x-protobuf"
USER = {"enduser.id": "u1", "bucket.user.name": "Ada"}
EVENT = {"enduser.id": "u1", "bucket.event": "Clicked", "bucket.attributes.n": 3}


def exporter_for(server: CaptureServer, **options: Any) -> BucketSpanExporter:
    return BucketSpanExporter(KEY, endpoint=server.url, **{"timeout": 5.0, **options})


@pytest.fixture
def bridge(server: CaptureServer) -> Iterator[Bridge]:
    with Bridge(exporter_for(server), port=0) as running:
        yield running


def otlp(*attribute_sets: dict[str, Any], start: int | None = None) -> bytes:
    """A protobuf request made by the SDK's own OTLP encoder from real spans."""
    return encode_spans(make_spans(*attribute_sets, start=start)).SerializeToString()


def post(
    bridge: Bridge,
    body: bytes,
    content_type: str = PROTO,
    session: requests.Session | None = None,
    **headers: str,
) -> requests.Response:
    sender = session or requests
    return sender.post(
        f"{bridge.url}/v1/traces",
        data=body,
        headers={
            "Content-Type": content_type,
            **{k.replace("_", "-"): v for k, v in headers.items()},
        },
        timeout=10,
    )


def status_of(response: requests.Response) -> status_pb2.Status:
    """The google.rpc.Status body of an error answer, in the request's encoding."""
    answer = status_pb2.Status()
    if response.headers["Content-Type"] == "application/json":
        from google.protobuf import json_format

        json_format.Parse(response.text, answer)
    else:
        answer.ParseFromString(response.content)
    return answer


def test_protobuf_spans_become_the_exporters_calls(bridge: Bridge, server: CaptureServer) -> None:
    """Spans sent over OTLP make exactly the calls the exporter makes of them in-process."""
    spans = make_spans(
        {**USER, "bucket.company.id": 7, "bucket.company.plan": "pro"},
        {**EVENT, "bucket.attributes.tags": ("a", "b")},
        {"http.route": "/"},
        start=1_764_000_000_000_000_000,
    )
    response = post(bridge, encode_spans(spans).SerializeToString())
    assert response.status_code == 200
    assert response.headers["Content-Type"] == PROTO
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")  # OTLP: left unset on a full success
    assert bridge.flush(10)
    sent = [(r.api_method, r.json) for r in server.wait_for(3)]
    assert sorted(sent[:2], key=str) == sorted(payloads(spans)[:2], key=str)  # concurrently
    assert sent[2] == payloads(spans)[2]  # the event after its user and company
    assert sent[2] == (
        "event",
        {
            "event": "Clicked",
            "userId": "u1",
            "attributes": {"n": 3, "tags": "a,b"},
            "timestamp": "2025-11-24T16:00:00.001Z",
        },
    )
    assert all(r.key == KEY for r in server.requests)


def test_otlp_json_is_answered_in_json(bridge: Bridge, server: CaptureServer) -> None:
    """OTLP JSON (hex ids, camelCase, int64 strings) is accepted and answered in JSON."""
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "checkout",
                                "kind": 2,
                                "startTimeUnixNano": "1764000000123000000",
                                "attributes": [
                                    {"key": "user.id", "value": {"intValue": "77"}},
                                    {"key": "bucket.event", "value": {"stringValue": "Paid"}},
                                    {
                                        "key": "bucket.attributes.cents",
                                        "value": {"intValue": "12345678901"},
                                    },
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    response = post(bridge, json.dumps(document).encode(), "application/json; charset=utf-8")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {}
    assert bridge.flush(10)
    assert server.wait_for(2) and server.calls("event") == [
        {
            "event": "Paid",
            "userId": "77",
            "attributes": {"cents": 12345678901},
            "timestamp": "2025-11-24T16:00:00.123Z",
        }
    ]


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_requests(coding: str, bridge: Bridge, server: CaptureServer) -> None:
    """gzip and deflate bodies are decompressed."""
    body = otlp(EVENT)
    raw = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    assert post(bridge, raw, Content_Encoding=coding).status_code == 200
    assert bridge.flush(10)
    assert [r.api_method for r in server.wait_for(2)] == ["user", "event"]


def test_chunked_request(bridge: Bridge, server: CaptureServer) -> None:
    """A chunked body (no Content-Length) is reassembled."""
    body = gzip.compress(otlp(EVENT))
    pieces = iter([body[:10], body[10:]])
    response = requests.post(
        f"{bridge.url}/v1/traces",
        data=pieces,
        headers={"Content-Type": PROTO, "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 200
    assert bridge.flush(10)
    assert len(server.wait_for(2)) == 2


@pytest.mark.parametrize("content_type", [PROTO, "application/json"])
def test_empty_request_is_a_success(content_type: str, bridge: Bridge) -> None:
    """An empty request gets 200 and an empty response."""
    response = post(bridge, b"", content_type)
    assert response.status_code == 200
    assert response.content in (b"", b"{}")


def test_partial_success_for_events_without_a_user(bridge: Bridge, server: CaptureServer) -> None:
    """An event without a user is reported in partial_success (the client must not retry);
    the rest of the request is delivered."""
    response = post(bridge, otlp(USER, {"bucket.event": "Anonymous click"}))
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "bucket.event without enduser.id or user.id" in answer.partial_success.error_message
    assert bridge.flush(10)
    assert [r.api_method for r in server.wait_for(1)] == ["user"]
    assert bridge.stats()["rejected_spans"] == 1


def test_partial_success_in_json(bridge: Bridge) -> None:
    """The JSON answer uses OTLP's lowerCamelCase names."""
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "name": "x",
                                "attributes": [
                                    {"key": "bucket.event", "value": {"stringValue": "Lost"}}
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    response = post(bridge, json.dumps(document).encode(), "application/json")
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"  # int64 as a string, per protobuf's JSON mapping
    assert "needs a user for every event" in partial["errorMessage"]


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (PROTO, b"\xff\xff\xff\xff", "not a protobuf ExportTraceServiceRequest"),
        ("application/json", b'{"resourceSpans": [', "not JSON"),
        ("application/json", b'{"resourceSpans": [{"scopeSpans": 1}]}', "not an OTLP JSON"),
    ],
    ids=["protobuf", "json", "json-shape"],
)
def test_malformed_input_is_400_with_a_status(
    content_type: str, body: bytes, message: str, bridge: Bridge
) -> None:
    """Malformed bodies get 400 and a google.rpc.Status with a BadRequest detail."""
    with requests.Session() as session:
        response = post(bridge, body, content_type, session)
        assert response.status_code == 400
        assert response.headers["Content-Type"] == content_type
        answer = status_of(response)
        assert message in answer.message
        bad = error_details_pb2.BadRequest()
        assert answer.details[0].Unpack(bad)
        assert message in bad.field_violations[0].description
        assert post(bridge, otlp(USER), session=session).status_code == 200  # still usable


def test_gzip_bomb_is_413(bridge: Bridge) -> None:
    """A small gzip body that inflates beyond 16 MiB gets 413; the connection stays usable."""
    bomb = gzip.compress(bytes(17 * 1024 * 1024), 9)
    with requests.Session() as session:
        response = post(bridge, bomb, session=session, Content_Encoding="gzip")
        assert response.status_code == 413
        assert "larger than 16777216 bytes" in status_of(response).message
        assert post(bridge, otlp(USER), session=session).status_code == 200


def test_body_over_the_cap_is_413(server: CaptureServer) -> None:
    """A plain body over max_body gets 413 (read and dropped when small enough to, else the
    connection is closed after the answer)."""
    with Bridge(exporter_for(server), port=0, max_body=1000) as bridge:
        assert post(bridge, b"x" * 1500).status_code == 413
        response = post(bridge, b"x" * 5000)
        assert response.status_code == 413
        assert response.headers.get("Connection") == "close"


def test_unsupported_media_and_encoding_are_415(bridge: Bridge) -> None:
    """Other Content-Types and Content-Encodings get 415."""
    assert post(bridge, b"{}", "text/plain").status_code == 415
    response = post(bridge, b"{}", "application/json", Content_Encoding="br")
    assert response.status_code == 415
    assert "'br' is not supported" in status_of(response).message


def test_other_paths_and_methods(bridge: Bridge) -> None:
    """Unknown paths get 404; GET /v1/traces gets 405."""
    response = requests.post(f"{bridge.url}/v1/metrics", data=b"", timeout=5)
    assert response.status_code == 404
    assert "POST /v1/traces" in status_of(response).message
    assert requests.get(f"{bridge.url}/v1/traces", timeout=5).status_code == 405
    assert requests.get(f"{bridge.url}/nothing", timeout=5).status_code == 404


def test_full_memory_is_503_with_retry_after(server: CaptureServer) -> None:
    """While the exporter's memory is at its high-water mark (its calls wait on a slow
    endpoint, and there is no spool), requests get 503 + Retry-After; what was accepted is
    delivered, and the refused request succeeds when retried."""
    first_call = threading.Event()

    def hold(path: str, body: bytes) -> Reply | None:
        first_call.set()
        return Reply(delay=30)  # until server.release()

    server.route(hold)
    exporter = exporter_for(server, timeout=30)
    with Bridge(exporter, port=0, queue_size=2, backlog_limit=4) as bridge:
        assert post(bridge, otlp(EVENT)).status_code == 200  # taken by the worker ...
        assert first_call.wait(10)  # ... its calls wait on the endpoint: memory is full
        deadline = time.monotonic() + 10
        while (refused := post(bridge, otlp({"enduser.id": "u4"}))).status_code == 200:
            assert time.monotonic() < deadline, bridge.stats()  # the worker is another thread
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "2"
        assert "wait in memory" in status_of(refused).message
        health = requests.get(f"{bridge.url}/health", timeout=5)
        assert health.status_code == 503
        assert health.headers["Retry-After"] == "2"
        server.route(None)
        server.release()
        assert bridge.flush(20)
        assert post(bridge, otlp({"enduser.id": "u4"})).status_code == 200
        assert bridge.flush(20)
    users = sorted(set(call["userId"] for call in server.calls("user")))
    assert users == ["u1", "u4"]
    assert bridge.stats()["refused"]["503"] >= 1


def test_503_when_the_exporters_backlog_is_nearly_full() -> None:
    """With Bucket unreachable and no spool, undelivered calls fill the exporter's backlog up to
    90 % of it: the export thread stops taking spans there (they wait in the queue) and the
    bridge answers 503 (Retry-After 2), so that the backlog never overflows."""
    exporter = BucketSpanExporter(KEY, endpoint=f"http://127.0.0.1:{free_port()}", timeout=1)
    with Bridge(exporter, port=0, backlog_limit=20) as bridge:
        users = [{"enduser.id": f"u{i}", "bucket.event": "E"} for i in range(9)]
        assert post(bridge, otlp(*users)).status_code == 200
        # The worker takes smaller batches as the backlog fills, never beyond 18 calls, then
        # stops: the bridge turns unhealthy (polled: the worker is another thread).
        deadline = time.monotonic() + 10
        while requests.get(f"{bridge.url}/health", timeout=5).status_code != 503:
            assert time.monotonic() < deadline, bridge.stats()
            time.sleep(0.01)
        assert exporter.memory_pending == 16  # 8 user calls + 8 events, kept for a retry
        assert bridge.stats()["queue"]["depth"] == 1
        refused = post(bridge, otlp({"enduser.id": "later"}))
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "2"
        assert "16 call(s) wait in memory" in status_of(refused).message
        assert requests.get(f"{bridge.url}/health", timeout=5).status_code == 503
        assert bridge.stats()["accepting"] is False
        assert exporter.stats.undelivered == 0  # nothing was pushed out of the backlog


def test_bearer_token(server: CaptureServer) -> None:
    """With a listen key, requests need 'Authorization: Bearer <key>'; /health stays open."""
    with Bridge(exporter_for(server), port=0, listen_key="s3cret-token") as bridge:
        missing = post(bridge, otlp(USER))
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert status_of(missing).message == "missing or wrong bearer token"
        assert post(bridge, otlp(USER), Authorization="Bearer s3cret-tokeN").status_code == 401
        assert post(bridge, otlp(USER), Authorization="Basic s3cret-token").status_code == 401
        assert post(bridge, otlp(USER), Authorization="bearer s3cret-token").status_code == 200
        assert requests.get(f"{bridge.url}/health", timeout=5).status_code == 200
        assert requests.get(f"{bridge.url}/stats", timeout=5).status_code == 401
        stats = requests.get(
            f"{bridge.url}/stats", headers={"Authorization": "Bearer s3cret-token"}, timeout=5
        )
        assert stats.status_code == 200
        assert stats.json()["refused"]["401"] == 3
        assert bridge.flush(10)
    assert len(server.calls("user")) == 1


def test_listen_key_from_the_environment(
    server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BUCKET_BRIDGE_TOKEN sets the listen key."""
    monkeypatch.setenv("BUCKET_BRIDGE_TOKEN", "from-env")
    with Bridge(exporter_for(server), port=0) as bridge:
        assert post(bridge, otlp(USER)).status_code == 401
        assert post(bridge, otlp(USER), Authorization="Bearer from-env").status_code == 200


def test_stats_and_logs_never_show_the_tracking_key(
    bridge: Bridge, server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """/stats is JSON with the exporter's counters and the queue; neither it nor any log line
    (one per request at debug) carries the tracking key."""
    caplog.set_level(logging.DEBUG)
    server.script(Reply(status=500))
    post(bridge, otlp(EVENT))
    post(bridge, b"garbage")
    post(bridge, otlp({"bucket.event": "no user"}))
    assert bridge.flush(10)
    response = requests.get(f"{bridge.url}/stats", timeout=5)
    assert KEY not in response.text
    stats = response.json()
    assert stats["exporter"]["delivered"] == 2
    assert stats["exporter"]["retried"] == 1
    assert stats["queue"] == {"depth": 0, "capacity": 16384}
    assert stats["requests"] == 2
    assert stats["refused"] == {"400": 1}
    assert stats["endpoint"] == server.url
    lines = [r.getMessage() for r in caplog.records]
    assert not [line for line in lines if KEY in line]
    requests_logged = [line for line in lines if line.startswith("bridge: 127.0.0.1 POST")]
    assert len(requests_logged) == 3
    assert "1 span(s), 1 for Bucket, 0 rejected" in requests_logged[0]
    assert KEY not in repr(bridge)


def test_stop_drains_the_queue_and_stops_listening(server: CaptureServer) -> None:
    """stop() refuses new connections, exports what is queued, then shuts the exporter down."""
    first_call = threading.Event()

    def hold(path: str, body: bytes) -> Reply | None:
        first_call.set()
        return Reply(delay=30)

    server.route(hold)
    bridge = Bridge(exporter_for(server, timeout=30), port=0).start()
    url = bridge.url
    assert post(bridge, otlp(EVENT)).status_code == 200
    assert first_call.wait(10)
    assert post(bridge, otlp({"enduser.id": "u2"}, {"enduser.id": "u3"})).status_code == 200
    stopper = threading.Thread(target=bridge.stop)
    stopper.start()
    server.route(None)
    server.release()
    stopper.join(30)
    assert not stopper.is_alive()
    assert sorted(c["userId"] for c in server.calls("user")) == ["u1", "u2", "u3"]
    assert len(server.calls("event")) == 1
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/v1/traces", data=b"", timeout=5)
    assert bridge.exporter.stats.undelivered == 0


def test_idle_connections_do_not_hold_threads(server: CaptureServer) -> None:
    """With 2 decoding threads, 20 idle keep-alive connections do not block requests, and the
    bridge runs a bounded number of threads."""
    before = {t.ident for t in threading.enumerate()}
    with Bridge(exporter_for(server), port=0, threads=2) as bridge:
        host, port = bridge.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(20)]
        try:
            results: list[int] = []

            def client(index: int) -> None:
                with requests.Session() as session:
                    for _ in range(3):
                        body = otlp({"enduser.id": f"c{index}"})
                        results.append(post(bridge, body, session=session).status_code)

            clients = [threading.Thread(target=client, args=(i,)) for i in range(6)]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join(30)
            assert results == [200] * 18
            mine = [
                t
                for t in threading.enumerate()
                if t.ident not in before and t.name.startswith("otel-bucket-bridge")
            ]
            assert len(mine) <= 2 + 2  # decoding threads + the event loop's and the export's
        finally:
            for sock in idle:
                sock.close()
        assert bridge.flush(10)
    assert len({c["userId"] for c in server.calls("user")}) == 6


def test_port_in_use(server: CaptureServer) -> None:
    """A port that is taken is a BridgeError with one readable line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BridgeError, match=f"cannot listen on 127.0.0.1:{port}: address"):
            Bridge(exporter_for(server), port=port).start()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"port": 70000}, ValueError, "port must be"),
        ({"queue_size": 0}, ValueError, "queue_size must be >= 1"),
        ({"threads": "4"}, TypeError, "threads must be an integer"),
        ({"max_body": -1}, ValueError, "max_body must be >= 1"),
        ({"drain_timeout": float("nan")}, ValueError, "drain_timeout must be"),
        ({"request_timeout": 0}, ValueError, "request_timeout must be a finite number > 0"),
        ({"max_spans": 0}, ValueError, "max_spans must be >= 1"),
        ({"max_connections": 2.5}, TypeError, "max_connections must be an integer"),
        ({"listen_key": "two words"}, ValueError, "listen_key must be"),
        ({"listen_key": 5}, TypeError, "listen_key must be a string"),
        ({"exporter": object()}, TypeError, "exporter must be a BucketSpanExporter"),
    ],
)
def test_bad_arguments(
    options: dict[str, Any], error: type[Exception], message: str, server: CaptureServer
) -> None:
    """Bad arguments raise TypeError/ValueError naming the argument."""
    options.setdefault("exporter", exporter_for(server))
    with pytest.raises(error, match=message):
        Bridge(**options)


@pytest.mark.parametrize(
    ("attributes", "rejected"),
    [
        ({"bucket.event": "E", "enduser.id": "u"}, 0),
        ({"bucket.event": "E", "enduser.id": 7}, 0),
        ({"bucket.event": "E", "enduser.id": 3.5}, 0),
        ({"bucket.event": "E", "enduser.id": "  ", "user.id": "u"}, 0),
        ({"bucket.event": "E", "enduser.id": "  "}, 1),
        ({"bucket.event": "E", "enduser.id": True}, 1),
        ({"bucket.event": "E", "user.id": float("nan")}, 1),
        ({"bucket.event": "E", "bucket.company.id": "c"}, 1),
        ({"bucket.event": ""}, 0),
        ({"enduser.id": "u"}, 0),
    ],
)
def test_rejected_spans_are_those_the_mapping_drops(
    attributes: dict[str, Any], rejected: int, bridge: Bridge
) -> None:
    """The partial-success count agrees with the exporter's own mapping, span by span."""
    from otel_bucket.export._mapping import plan_calls

    spans = make_spans(attributes)
    count, message = bridge.rejected(spans)
    assert count == rejected == plan_calls(spans).dropped_events
    assert bool(message) == bool(count)


def test_stop_without_start_shuts_the_exporter_down(server: CaptureServer) -> None:
    """A bridge that never started still shuts its exporter down, and stop() is idempotent."""
    exporter = exporter_for(server)
    bridge = Bridge(exporter, port=0)
    bridge.stop()
    bridge.stop()
    assert bridge.wait(0)
    assert exporter.export(make_spans(USER)).name == "FAILURE"  # refused after shutdown


def exchange(bridge: Bridge, data: bytes) -> bytes:
    """Send raw bytes on one connection; everything the bridge answers until it closes."""
    host, port = bridge.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_pipelined_requests_keep_alive_and_http_1_0(bridge: Bridge) -> None:
    """Requests sent back to back on one connection are all answered, in order; an HTTP/1.0
    request without keep-alive ends the connection."""
    body = otlp(USER)
    post_ = b"POST /v1/traces HTTP/1.1\r\nHost: b\r\nContent-Type: application/x-protobuf\r\n"
    post_ += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    answer = exchange(bridge, post_ + post_ + b"GET /health HTTP/1.0\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert answer.endswith(b'Connection: close\r\n\r\n{"status": "ok"}')


def test_expect_100_continue(bridge: Bridge) -> None:
    """A client that waits for 100 Continue (curl does for large bodies) gets it, then the answer;
    a request refused before its body is read gets no 100 and the connection closes."""
    body = otlp(USER)
    head = b"POST /v1/traces HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: %d\r\n"
    host, port = bridge.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head % len(body) + b"Content-Type: application/x-protobuf\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK\r\n")
    refused = exchange(bridge, head % len(body) + b"Content-Type: text/plain\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 415 ") and b"Connection: close" in refused


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NOT HTTP\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n folded: value\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"x" * 70_000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", b"431"),
    ],
    ids=["request-line", "version", "folded", "too-large", "too-many"],
)
def test_malformed_heads_are_answered_then_closed(
    bridge: Bridge, data: bytes, status: bytes
) -> None:
    """A head that is not HTTP/1.x, or too large, gets 400 or 431 and the connection closes."""
    assert exchange(bridge, data).startswith(b"HTTP/1.1 " + status + b" ")


@pytest.mark.slow
def test_spans_left_when_the_drain_time_runs_out_go_to_the_spool(
    server: CaptureServer, tmp_path: Path
) -> None:
    """A 200 is kept: spans still queued when --drain-timeout runs out are mapped and written to
    the spool with the undelivered calls, for the next bridge to send; none is lost."""
    first_call = threading.Event()

    def hold(path: str, body: bytes) -> Reply | None:
        first_call.set()
        return Reply(delay=30)  # Bucket never answers while the bridge stops

    server.route(hold)
    exporter = exporter_for(server, timeout=2, spool_dir=tmp_path)
    bridge = Bridge(exporter, port=0, drain_timeout=0.5).start()
    try:
        assert post(bridge, otlp(EVENT)).status_code == 200  # taken by the export thread ...
        assert first_call.wait(10)
        users = [{"enduser.id": f"q{i}"} for i in range(5)]
        assert post(bridge, otlp(*users)).status_code == 200  # ... these wait in the queue
    finally:
        bridge.stop()
        server.release()
    assert exporter.stats.spooled == 2 + 5  # u1 and its event, and the five queued users
    assert exporter.stats.undelivered == 0
