"""Configuration: argument > BUCKET_* environment variable > default (contract section 4)."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

import pytest

from otel_bucket import BucketSpanExporter
from otel_bucket.ground._config import resolve_settings
from tests._capture import CaptureServer
from tests._spans import make_spans


@pytest.mark.parametrize(
    ("field", "argument", "env_name", "env_value", "expected"),
    [
        ("endpoint", None, None, None, "https://tracking.bucket.co"),
        ("endpoint", None, "BUCKET_ENDPOINT", "http://127.0.0.1:9/", "http://127.0.0.1:9"),
        ("endpoint", "http://a:1", "BUCKET_ENDPOINT", "http://b:2", "http://a:1"),
        ("timeout", None, None, None, 10.0),
        ("timeout", None, "BUCKET_TIMEOUT", "2.5", 2.5),
        ("timeout", 3, "BUCKET_TIMEOUT", "2.5", 3.0),
        ("max_concurrency", None, None, None, 128),
        ("max_concurrency", None, "BUCKET_MAX_CONCURRENCY", "3", 3),
        ("max_concurrency", 2, "BUCKET_MAX_CONCURRENCY", "3", 2),
        ("dedupe_window", None, None, None, 60.0),
        ("dedupe_window", None, "BUCKET_DEDUPE_WINDOW", "0", 0.0),
        ("dedupe_window", 5, "BUCKET_DEDUPE_WINDOW", "0", 5.0),
        ("dedupe_size", None, None, None, 10_000),
        ("dedupe_size", 10, None, None, 10),
        ("offline", None, None, None, False),
        ("offline", None, "BUCKET_OFFLINE", "true", True),
        ("offline", None, "BUCKET_OFFLINE", "1", True),
        ("offline", None, "BUCKET_OFFLINE", "0", False),
        ("offline", False, "BUCKET_OFFLINE", "true", False),
        ("tracking_key", None, "BUCKET_TRACKING_KEY", "envkey", "envkey"),
        ("tracking_key", "argkey", "BUCKET_TRACKING_KEY", "envkey", "argkey"),
    ],
)
def test_precedence(
    monkeypatch: pytest.MonkeyPatch,
    field: str,
    argument: Any,
    env_name: str | None,
    env_value: str | None,
    expected: Any,
) -> None:
    """Each setting resolves argument first, then its environment variable, then the default."""
    if env_name:
        monkeypatch.setenv(env_name, env_value or "")
    if field != "tracking_key":
        monkeypatch.setenv("BUCKET_TRACKING_KEY", "k")
    settings = resolve_settings(**{field: argument})
    assert getattr(settings, field) == expected


@pytest.mark.parametrize(
    ("env_name", "bad", "field", "default"),
    [
        ("BUCKET_TIMEOUT", "ten", "timeout", 10.0),
        ("BUCKET_TIMEOUT", "-1", "timeout", 10.0),
        ("BUCKET_MAX_CONCURRENCY", "0", "max_concurrency", 128),
        ("BUCKET_MAX_CONCURRENCY", "2.5", "max_concurrency", 128),
        ("BUCKET_DEDUPE_WINDOW", "nan", "dedupe_window", 60.0),
        ("BUCKET_OFFLINE", "maybe", "offline", False),
        ("BUCKET_TIMEOUT", "1e10", "timeout", 10.0),
    ],
)
def test_malformed_environment_warns_and_uses_default(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    env_name: str,
    bad: str,
    field: str,
    default: Any,
) -> None:
    """A malformed environment value logs a warning naming the variable and uses the default."""
    monkeypatch.setenv(env_name, bad)
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        settings = resolve_settings(tracking_key="k")
    assert getattr(settings, field) == default
    assert env_name in caplog.text


@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [
        ("timeout", -1, ValueError),
        ("timeout", 0, ValueError),
        ("timeout", float("inf"), ValueError),
        ("timeout", "soon", ValueError),
        ("timeout", [1], TypeError),
        ("max_concurrency", 0, ValueError),
        ("max_concurrency", 1.5, TypeError),
        ("max_concurrency", True, TypeError),
        ("dedupe_window", -5, ValueError),
        ("dedupe_size", 0, ValueError),
        ("timeout", 1e10, ValueError),
        ("endpoint", "tracking.bucket.co", ValueError),
        ("endpoint", "127.0.0.1:8787", ValueError),
        ("endpoint", "http://user:password@example.com", ValueError),
        ("endpoint", "https://example.com/#frag", ValueError),
        ("endpoint", "https://example.com/?q=1", ValueError),
        ("endpoint", "http://example.com:99999", ValueError),
        ("endpoint", 5, TypeError),
        ("endpoint", "http://127.0.0.1:9/a b", ValueError),
        ("endpoint", "http://127.0.0.1:9/caf\u00e9", ValueError),
        ("endpoint", "http://caf\u00e9.example", ValueError),
        ("endpoint", "http://127.0.0.1:9/a%zz", ValueError),
        ("endpoint", "http://token@127.0.0.1:9", ValueError),
        ("offline", "perhaps", ValueError),
        ("tracking_key", "", ValueError),
        ("tracking_key", "a/b", ValueError),
        ("tracking_key", ".", ValueError),
        ("tracking_key", "..", ValueError),
        ("tracking_key", "tr\u00e91", ValueError),
        ("tracking_key", 'a"<>\\|{}^[]', ValueError),
        ("tracking_key", "a%2Fb", ValueError),
        ("tracking_key", 123, TypeError),
    ],
)
def test_malformed_argument_raises_naming_it(argument: str, value: Any, error: type) -> None:
    """A malformed argument raises TypeError/ValueError whose message names the argument."""
    kwargs: dict[str, Any] = {"tracking_key": "k", argument: value}
    with pytest.raises(error, match=argument):
        BucketSpanExporter(**kwargs)


def test_missing_key_names_the_environment_variable() -> None:
    """No key by argument or environment: a ValueError naming BUCKET_TRACKING_KEY."""
    with pytest.raises(ValueError, match="BUCKET_TRACKING_KEY"):
        BucketSpanExporter()


def test_no_arguments_works_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """BucketSpanExporter() reads everything from BUCKET_* variables."""
    monkeypatch.setenv("BUCKET_TRACKING_KEY", "envkey")
    monkeypatch.setenv("BUCKET_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("BUCKET_OFFLINE", "true")
    exporter = BucketSpanExporter()
    assert exporter.settings.endpoint == "http://127.0.0.1:1"
    assert exporter.settings.offline is True
    exporter.shutdown()


def test_session_must_be_a_requests_session() -> None:
    """A session that is not a requests.Session is a TypeError naming session."""
    with pytest.raises(TypeError, match="session"):
        BucketSpanExporter("k", session=object())  # type: ignore[arg-type]


def test_entry_point_is_registered() -> None:
    """The configurator finds the exporter as 'bucket' in opentelemetry_traces_exporter."""
    [ep] = [e for e in entry_points(group="opentelemetry_traces_exporter") if e.name == "bucket"]
    assert ep.load() is BucketSpanExporter


def test_key_is_hidden_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the exporter's nor the settings' repr shows the tracking key."""
    exporter = BucketSpanExporter("sekrit-key-123", endpoint="http://127.0.0.1:1")
    assert "sekrit-key-123" not in repr(exporter)
    assert "sekrit-key-123" not in repr(exporter.settings)
    exporter.shutdown()


def test_malformed_environment_key_is_not_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed BUCKET_TRACKING_KEY is reported without its value."""
    monkeypatch.setenv("BUCKET_TRACKING_KEY", "sekrit/123")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError):
        BucketSpanExporter()
    assert "sekrit" not in caplog.text
    assert "BUCKET_TRACKING_KEY" in caplog.text


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ("127.0.0.1:8787", "127.0.0.1:8787"),
        ("ftp://x", "ftp://x"),
        ("http://u:secret@127.0.0.1:9", "http://***@127.0.0.1:9"),
        ("http://secret@127.0.0.1:9/p", "http://***@127.0.0.1:9/p"),
        ("http://127.0.0.1:9/#secret", "http://127.0.0.1:9/#***"),
        ("https://127.0.0.1:9/api?token=secret", "https://127.0.0.1:9/api?***"),
        ("https://127.0.0.1:9/a b?token=secret", "https://127.0.0.1:9/a b?***"),
    ],
)
def test_malformed_environment_endpoint_sends_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, bad: str, shown: str
) -> None:
    """A malformed BUCKET_ENDPOINT never falls back to production: one ERROR naming the variable
    and the production endpoint, without a user, password, query or fragment; nothing sent."""
    monkeypatch.setenv("BUCKET_ENDPOINT", bad)
    with caplog.at_level(logging.ERROR, logger="otel_bucket"):
        exporter = BucketSpanExporter("k")
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "BUCKET_ENDPOINT" in error and "secret" not in error
    assert f"BUCKET_ENDPOINT={shown!r}" in error and "tracking.bucket.co" in error
    assert exporter.settings.endpoint == ""
    assert "tracking.bucket.co" not in repr(exporter)
    result = exporter.export(make_spans({"enduser.id": "u", "bucket.event": "E"}))
    assert result.name == "FAILURE"
    exporter.shutdown()
    stats = exporter.stats
    assert (stats.delivered, stats.undelivered, stats.calls) == (0, 2, 2)


def test_an_endpoint_with_a_space_or_accent_fails_at_construction_not_per_call(
    server: CaptureServer,
) -> None:
    """Issue 19: the message says what is wrong and how to write it; a %-escape is sent as is."""
    with pytest.raises(ValueError, match=r"endpoint .*ASCII.* %20.*it has ' '"):
        BucketSpanExporter("k", endpoint=f"{server.url}/my path")
    with pytest.raises(ValueError, match=r"endpoint .*xn--.*it has 'é'"):
        BucketSpanExporter("k", endpoint=f"{server.url}/café")
    exporter = BucketSpanExporter("k", endpoint=f"{server.url}/my%20path/", spool_dir=False)
    result = exporter.export(make_spans({"enduser.id": "u", "bucket.event": "E"}))
    exporter.shutdown()
    assert result.name == "SUCCESS"
    assert sorted(r.path for r in server.requests) == ["/my%20path/k/event", "/my%20path/k/user"]
