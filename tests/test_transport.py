"""How calls travel: TLS verification and the CA bundle, proxies, and the cause every delivery
warning names (connection refused, TLS error, HTTP status with the body)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_bucket import BucketSpanExporter
from tests._capture import CaptureServer, Reply
from tests._running import free_port
from tests._spans import make_spans

KEY = "trTRANSPORT-key"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[CaptureServer]:
    """A capture server on https://127.0.0.1 with a certificate from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    srv = CaptureServer(tls=context)
    yield srv
    srv.close()


@pytest.fixture
def bundle(ca: trustme.CA, tmp_path: Path) -> str:
    """``ca``'s certificate as a PEM file, for REQUESTS_CA_BUNDLE."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _export(exporter: BucketSpanExporter) -> SpanExportResult:
    try:
        return exporter.export(make_spans({"enduser.id": "u", "bucket.event": "E"}))
    finally:
        exporter.shutdown_within(0.5)


def test_tls_is_verified_against_the_default_bundle(
    tls_server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate no trusted CA signed is refused, and the warning says it is TLS."""
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        result = _export(BucketSpanExporter(KEY, endpoint=tls_server.url, timeout=2))
    assert result is SpanExportResult.FAILURE
    assert tls_server.requests == []
    assert "TLS error" in caplog.text and "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_requests_ca_bundle_is_honoured(
    tls_server: CaptureServer, bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE makes our own CA trusted, as it would for requests."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    result = _export(BucketSpanExporter(KEY, endpoint=tls_server.url, timeout=5))
    assert result is SpanExportResult.SUCCESS
    assert sorted(r.api_method for r in tls_server.requests) == ["event", "user"]


def test_tls_against_a_plain_http_port_names_the_cause(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """https:// to a plain-HTTP port is reported as a TLS error, not 'could not deliver'."""
    endpoint = server.url.replace("http://", "https://")
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert _export(BucketSpanExporter(KEY, endpoint=endpoint, timeout=2)).name == "FAILURE"
    assert "TLS error" in caplog.text


def test_connection_refused_names_the_cause(caplog: pytest.LogCaptureFixture) -> None:
    """A refused connection is reported as such."""
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        _export(BucketSpanExporter(KEY, endpoint=f"http://127.0.0.1:{free_port()}", timeout=2))
    assert "connection refused" in caplog.text


def test_a_server_error_names_its_status_and_body(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """HTTP 501 is reported with its status and the start of its body."""
    server.default = Reply(501, body="not implemented here")
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        _export(BucketSpanExporter(KEY, endpoint=server.url, timeout=0.3))
    assert "HTTP 501: not implemented here" in caplog.text


def test_a_stray_endpoint_path_is_reported_as_a_possible_wrong_path(
    server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """404 on an endpoint with a stray path says the key or the path may be wrong, names the
    endpoint, and shows no key."""
    server.default = Reply(404, body=f"no route /v1/{KEY}/user")
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        _export(BucketSpanExporter(KEY, endpoint=server.url + "/v1", timeout=2))
    assert server.requests[0].path.startswith("/v1/")
    assert "tracking key rejected or wrong endpoint path" in caplog.text
    assert server.url + "/v1" in caplog.text
    assert KEY not in caplog.text


def test_a_proxy_from_the_environment_carries_the_calls(
    server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY applies to the endpoint as requests would apply it: the proxy gets each call
    with its absolute URL."""
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "")
    exporter = BucketSpanExporter(KEY, endpoint="http://bucket.example", timeout=2)
    assert _export(exporter) is SpanExportResult.SUCCESS
    assert sorted(r.path for r in server.requests) == [
        f"http://bucket.example/{KEY}/event",
        f"http://bucket.example/{KEY}/user",
    ]
